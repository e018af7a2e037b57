"""`llamacert certify` both ways: exit 0 PASS on the reference, 1 FAIL on a broken endpoint, 2 INCOMPLETE on one
whose suite cannot complete, 3 when it cannot run. Each is a real command over real HTTP, kept cheap: the
quick suite on the simulated backend and a few seconds of load.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launch import project_environment
from llamacert.certify import certify_main
from tests.conformance.catalogue import KEY, Json, Liberty, Variant, serve
from tests.conformance.test_catalogue import DEFECTS

ROOT = Path(__file__).resolve().parents[2]


def _at_capacity(
    path: str, request: Json, status: int, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes, dict[str, str]]:
    """A deployment at capacity: it validates and authenticates, then every generation is 503."""
    if status != 200 or not path.endswith("completions"):
        return status, body, headers
    envelope = {"error": {"code": "overloaded", "message": "at capacity", "param": None, "type": "unavailable"}}
    return 503, json.dumps(envelope).encode(), {"content-type": "application/json", "retry-after": "0"}


def _certify(
    liberty: Liberty, out: Path, profile: str = "managed-compute", routes: str = "llama", *extra: str
) -> subprocess.CompletedProcess[str]:
    with serve(liberty) as url:
        command = [
            sys.executable,
            "-m",
            "llamacert.cli",
            "certify",
            "--endpoint",
            url,
            f"--api-key={KEY}",
            "--profile",
            profile,
            "--routes",
            routes,
            "--quick",
            "--load-duration",
            "3s",
            "--out",
            str(out),
            *extra,
        ]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=400, cwd=ROOT, env=project_environment(), check=False
        )


@pytest.mark.slow
def test_the_quick_suite_passes_a_serverless_profile_that_requires_every_rule(tmp_path: Path) -> None:
    """--quick sends fewer cases, not fewer routes: the Azure rules a serverless profile requires still run."""
    serverless = Variant("unbroken", profile="serverless-llama31", routes="both")
    run = _certify(serverless, tmp_path, "serverless-llama31", "both", "--rate-limit-test", "on")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "verdict for serverless-llama31: PASS" in run.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    rules = {rule["rule_id"]: rule["outcome"] for rule in report["conformance"]["rules"]}
    azure_rules = ("azure.api_version", "azure.extra_parameters", "azure.sse_framing")
    assert all(rules[rule_id] == "pass" for rule_id in azure_rules)


@pytest.mark.slow
def test_certify_passes_the_reference_with_exit_0(tmp_path: Path) -> None:
    run = _certify(Variant("unbroken"), tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "verdict for managed-compute: PASS" in run.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdicts"][0]["status"] == "PASS"
    assert (tmp_path / "exchanges.jsonl").stat().st_size > 0
    check = subprocess.run(
        [sys.executable, "-m", "llamacert.cli", "check", str(tmp_path / "exchanges.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=project_environment(),
        check=False,
    )
    assert check.returncode == 0, check.stdout[-2000:]
    assert " 0 failed" in check.stdout


@pytest.mark.slow
def test_certify_fails_a_broken_endpoint_with_exit_1(tmp_path: Path) -> None:
    defect = next(d for d in DEFECTS if d.name == "usage-arithmetic")
    run = _certify(defect, tmp_path)
    assert run.returncode == 1, run.stdout[-3000:]
    assert "verdict for managed-compute: FAIL" in run.stdout
    assert "rule usage.total_is_sum failed" in run.stdout
    # the throughput load test checked its answers too, and found the same defect under load
    report = json.loads((tmp_path / "report.json").read_text())
    assert any(
        "sampled responses broke rule usage.total_is_sum under load" in r for r in report["verdicts"][0]["reasons"]
    )
    # the saved exchanges fail the same rule offline
    check = subprocess.run(
        [sys.executable, "-m", "llamacert.cli", "check", str(tmp_path / "exchanges.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=project_environment(),
        check=False,
    )
    assert check.returncode == 1 and "usage.total_is_sum" in check.stdout


@pytest.mark.slow
def test_certify_is_incomplete_with_exit_2_when_the_suite_cannot_complete(tmp_path: Path) -> None:
    run = _certify(Variant("at-capacity", change_response=_at_capacity), tmp_path)
    assert run.returncode == 2, run.stdout[-3000:]
    assert "verdict for managed-compute: INCOMPLETE" in run.stdout
    assert "did not run" in run.stdout
    assert "PASS" not in run.stdout.split("verdict for")[-1]


def test_certify_cannot_run_against_an_unreachable_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = certify_main(["--endpoint", "http://127.0.0.1:9", "--out", str(tmp_path), "--no-load"])
    assert status == 3
    assert "unreachable" in capsys.readouterr().err


def test_certify_cannot_run_with_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        certify_main(["--no-such-flag"])
    assert exited.value.code == 3
    with pytest.raises(SystemExit):
        certify_main(["--help"])
    assert "2  INCOMPLETE" in capsys.readouterr().out
    assert certify_main(["--profile", "no-such-profile", "--endpoint", "http://127.0.0.1:9"]) == 3
