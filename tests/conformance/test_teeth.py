"""The plugin end to end: `llamacert conform` in a subprocess, over real HTTP, as a user runs it.

The in-process catalogue (test_catalogue.py) proves every rule; these few runs prove that the same
verdict reaches a user through the command line, the exit status and the results file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from launch import project_environment
from tests.conformance.catalogue import KEY, Liberty, Variant, serve
from tests.conformance.test_catalogue import DEFECTS

ROOT = Path(__file__).resolve().parents[2]
END_TO_END = ["usage-arithmetic", "no-done", "key-not-checked"]


def _conform(url: str, liberty: Liberty, results: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "llamacert.cli",
        "conform",
        "--endpoint",
        url,
        "--api-key",
        KEY,
        "--routes",
        liberty.routes,
        "--model-kind",
        liberty.kind,
        "-k",
        liberty.tests,
        "--results-json",
        str(results),
        "-q",
        "-p",
        "no:randomly",
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=ROOT, env=project_environment(), check=False
    )


@pytest.fixture(scope="module")
def unbroken_url() -> Iterator[str]:
    with serve(Variant("unbroken")) as url:
        yield url


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["completion", "chat"])
def test_the_unbroken_reference_passes_the_whole_suite(unbroken_url: str, kind: str, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    run = _conform(unbroken_url, Variant("unbroken", kind=kind), results)
    assert run.returncode == 0, run.stdout[-3000:]
    outcomes = {r["rule_id"]: r["outcome"] for r in json.loads(results.read_text())["rules"]}
    assert "fail" not in outcomes.values()


@pytest.mark.slow
@pytest.mark.parametrize("name", END_TO_END)
def test_the_command_fails_on_a_defect(name: str, tmp_path: Path) -> None:
    defect = next(d for d in DEFECTS if d.name == name)
    with serve(defect) as url:
        results = tmp_path / "results.json"
        run = _conform(url, defect, results)
    assert run.returncode == 1, f"the suite passed an endpoint with defect {name}:\n{run.stdout[-2000:]}"
    caught = next(r for r in json.loads(results.read_text())["rules"] if r["rule_id"] == defect.rule)
    assert caught["outcome"] == "fail"
    assert caught["evidence"] and caught["evidence"][0]["request"] is not None
