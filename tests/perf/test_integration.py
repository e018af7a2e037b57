"""Locust runs end to end through `llamacert load`: our records agree with Locust's statistics and the server's.

Against benchmarks/trivial_server.py (known answers: chunked events, no usage, 429s) and against the reference server
with the simulated backend, rate-limited; one run with a Locust master and two local workers.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.harness_capacity import main as harness_capacity_main
from benchmarks.harness_capacity import measure, reference_simulated_endpoint
from conformance.exchange import load_exchanges
from launch import free_loopback_port
from perf.baseline import compare, load_baseline, save_baseline
from perf.cli import main
from perf.records import RequestRecord, read_records
from perf.runner import subprocess_environment
from spec.load_summary import LoadSummary
from spec.profiles import TOKEN_LIMIT_HEADERS
from tests.perf.conftest import API_KEY, ROOT, ReferenceFactory, TrivialFactory, locust_counts
from tests.perf.test_baseline import summary as baseline_summary

pytestmark = pytest.mark.slow


def _load(out: Path, endpoint: str, *arguments: str) -> tuple[int, dict[str, Any], list[RequestRecord]]:
    status = main(
        ["--endpoint", endpoint, "--api-key", API_KEY, "--out", str(out), "--request-timeout", "20", *arguments]
    )
    summary = json.loads((out / "load-summary.json").read_text())
    return status, summary, read_records(out / "records.jsonl")


def _scenario(tmp_path: Path, **fields: Any) -> str:
    path = tmp_path / f"{fields['name']}.yaml"
    path.write_text(yaml.safe_dump(fields))
    return str(path)


def _metric_counts(out: Path) -> dict[str, int]:
    lines = (out / "locust_stats.csv").read_text().splitlines()[1:]
    return {line.split(",")[1]: int(line.split(",")[2]) for line in lines if line.startswith("METRIC,")}


def test_every_request_kind_against_a_known_endpoint(tmp_path: Path, start_trivial: TrivialFactory) -> None:
    endpoint = start_trivial("--reject-every", "5", "--tokens-per-event", "4", "--limit-rpm", "600")
    status, summary, records = _load(
        tmp_path, endpoint, "--scenario", "smoke", "--duration", "4s", "--no-honour-retry-after", "--users", "4"
    )
    assert status == 0
    requests, rejected = locust_counts(tmp_path)
    assert len(records) == summary["requests"] == requests > 50
    assert sum(record.rejected for record in records) == summary["rejected_429"] == rejected > 0
    assert {(record.route, record.stream) for record in records} == {
        ("/v1/chat/completions", True), ("/chat/completions", False), ("/completions", True), ("/v1/completions", False)
    }  # fmt: skip
    streamed = [record for record in records if record.ok and record.stream]
    # 16 tokens in events of 4: the token count is usage's, not the number of events
    assert all(len(record.token_event_times) == 4 and record.completion_tokens == 16 for record in streamed)
    assert _metric_counts(tmp_path) == {"ITL": len(streamed), "TTFT": len(streamed)}
    assert all(record.limit_requests == 600 for record in records)
    assert all(record.retry_after == 1.0 and record.retry_after_ms == 1000 for record in records if record.rejected)
    assert summary["errors"] == 0 and summary["ttft_ms"] is not None and summary["itl_ms"] is not None


def test_a_server_without_usage_gets_no_token_counts(
    tmp_path: Path, start_trivial: TrivialFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = start_trivial("--no-usage")
    status, summary, records = _load(tmp_path, endpoint, "--scenario", "smoke", "--duration", "3s")
    assert status == 0 and records
    assert all(record.completion_tokens is None for record in records)
    assert summary["output_tokens_per_s"] == 0 and summary["itl_ms"] is None and summary["ttft_ms"] is not None
    assert "came without usage" in capsys.readouterr().out


def test_honouring_retry_after(tmp_path: Path, start_trivial: TrivialFactory) -> None:
    endpoint = start_trivial("--reject-every", "2")
    scenario = _scenario(tmp_path, name="polite", users=1, duration="4s", requests=[{"api": "completion"}])
    status, _, records = _load(tmp_path, endpoint, "--scenario", scenario, "--honour-retry-after")
    assert status == 0
    after_429 = [later.t_send - earlier.t_end for earlier, later in itertools.pairwise(records) if earlier.rejected]
    # Every 429 says one second; without honouring it, one user would send hundreds of requests.
    assert after_429 and min(after_429) >= 1.0 and len(records) < 12


def test_poisson_arrivals_reach_the_offered_rate(tmp_path: Path, start_trivial: TrivialFactory) -> None:
    endpoint = start_trivial()
    status, summary, records = _load(
        tmp_path, endpoint, "--scenario", "poisson", "--rate", "40", "--users", "20", "--duration", "5s"
    )
    assert status == 0
    sends = [record.t_send for record in records]
    rate = (len(sends) - 1) / (max(sends) - min(sends))
    assert 30 < rate < 50, rate
    gaps = sorted(later - earlier for earlier, later in itertools.pairwise(sends))
    # Exponential gaps: their median is ln 2 of their mean (a constant rate's would equal it).
    assert 0.45 < gaps[len(gaps) // 2] * rate < 0.95
    assert summary["users"] == 20


def test_a_stepped_sweep(tmp_path: Path, start_trivial: TrivialFactory) -> None:
    endpoint = start_trivial("--token-delay", "0.01")
    scenario = _scenario(
        tmp_path,
        name="mini-sweep",
        shape="steps",
        steps=[{"users": 1}, {"users": 3}],
        step_duration="3s",
        requests=[{"api": "chat", "stream": True}],
        output_tokens=10,
    )
    status, summary, records = _load(tmp_path, endpoint, "--scenario", scenario)
    assert status == 0 and summary["users"] == 3
    start = min(record.t_send for record in records)
    per_step = Counter(int((record.t_send - start) // 3) for record in records)
    # about 10 requests/s per user (10 events of 10 ms each): the second step has three users
    assert per_step[1] > 2 * per_step[0] > 20, per_step


def test_rate_limit_against_the_reference_server(tmp_path: Path, start_reference: ReferenceFactory) -> None:
    server = start_reference("--rpm", "120")
    status, summary, records = _load(
        tmp_path,
        server.url,
        "--scenario", "rate-limit", "--duration", "10s", "--rate", "8", "--users", "16", "--rpm", "120",
    )  # fmt: skip
    rejected_records = [record for record in records if record.rejected]
    requests, rejected = locust_counts(tmp_path)
    seen = server.seen()
    assert len(records) == requests == seen["requests"] == summary["requests"]
    assert len(rejected_records) == rejected == seen["429"] == summary["rejected_429"] > 0
    assert all(
        record.retry_after is not None and record.retry_after >= 1 and record.retry_after_ms is not None
        for record in rejected_records
    )
    assert all(record.limit_requests == 120 for record in records)
    # --rpm alone: a requests limit and no token limit, so a 429 carries the requests pair only (D26)
    assert all(record.missing_rate_limit_headers == list(TOKEN_LIMIT_HEADERS) for record in rejected_records)
    limit = summary["rate_limit"]
    assert limit["verdict"] == "pass", limit["reasons"]
    assert limit["rule_id"] == "rate_limit.enforced" and "D26" in limit["source"]
    assert status == 0
    # The bucket holds 20 requests and refills 2 a second: about 20 + 2 x 10 accepted of about 80 offered.
    assert 30 <= summary["ok"] <= 42


def test_under_the_limit_nothing_is_rejected(tmp_path: Path, start_reference: ReferenceFactory) -> None:
    server = start_reference("--rpm", "600")
    status, summary, records = _load(
        tmp_path, server.url, "--scenario", "rate-limit-under", "--duration", "5s", "--users", "8", "--rpm", "600"
    )
    assert status == 0 and summary["rate_limit"]["verdict"] == "pass"
    assert summary["rejected_429"] == 0 and len(records) == server.seen()["requests"] > 10


def test_master_and_two_workers(
    tmp_path: Path, start_reference: ReferenceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_reference()
    status, summary, records = _load(
        tmp_path, server.url, "--scenario", "smoke", "--duration", "6s", "--users", "4", "--workers", "2"
    )
    assert status == 0
    requests, _ = locust_counts(tmp_path)
    assert len(records) == requests == server.seen()["requests"] == summary["requests"] > 20
    assert summary["errors"] == 0
    log = (tmp_path / "locust.log").read_text()
    assert "Traceback" not in log
    # Both workers sent their records to the master, which wrote the one file that was merged (and removed).
    assert "records.jsonl (from 1 Locust processes)" in capsys.readouterr().out
    assert not (tmp_path / ".records").exists()


def test_harness_capacity_is_measured(start_trivial: TrivialFactory) -> None:
    report = measure(start_trivial(), seconds=3, users=8, stream=False)
    assert report["errors"] == 0 and report["requests_per_s"] > 200, report


def test_harness_capacity_against_the_reference_simulated_backend() -> None:
    with reference_simulated_endpoint() as started:
        report = measure(started.url, seconds=3, users=8, stream=False, api_key=started.api_key, server_pid=started.pid)
    assert report["errors"] == 0 and report["ok"] == report["requests"] > 0, report
    # the server was started here, so its CPU is accounted for, and the rest of the machine's
    assert report["server_cpu_share"] > 0 and report["other_cpu_share"] >= 0, report


def test_harness_capacity_reports_the_spread_of_repeated_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert harness_capacity_main(["--seconds", "2", "--users", "4", "--runs", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and all(line["errors"] == 0 for line in lines[:2])
    assert lines[2]["runs"] == 2
    assert lines[2]["min_requests_per_s"] <= lines[2]["median_requests_per_s"] <= lines[2]["max_requests_per_s"]


def test_a_stalled_stream_times_out_and_counts_as_hung(tmp_path: Path, start_trivial: TrivialFactory) -> None:
    endpoint = start_trivial("--token-delay", "0.5")
    scenario = _scenario(
        tmp_path, name="stalled", users=2, duration="3s", requests=[{"api": "chat", "stream": True}], output_tokens=16
    )
    status = main(["--endpoint", endpoint, "--out", str(tmp_path), "--scenario", scenario, "--request-timeout", "1"])
    records = read_records(tmp_path / "records.jsonl")
    assert status == 0 and records
    # 16 events half a second apart never finish within the 1 s timeout; the first ones did arrive.
    assert all(record.hung and record.status == 200 and record.t_first_token is not None for record in records)
    assert all(0.9 < record.t_end - record.t_send < 1.5 for record in records)
    requests, _ = locust_counts(tmp_path)
    assert requests == len(records)
    assert "timeout" in (tmp_path / "locust_failures.csv").read_text()


def test_baselines_through_the_command_line(
    tmp_path: Path, start_trivial: TrivialFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = start_trivial()
    unreachable = tmp_path / "unreachable.json"
    save_baseline(unreachable, baseline_summary(endpoint="http://elsewhere", scenario="smoke", requests_per_s=1e9))
    saved = tmp_path / "saved.json"
    status, summary, _ = _load(
        tmp_path / "run", endpoint, "--scenario", "smoke", "--duration", "3s",
        "--save-baseline", str(saved), "--baseline", str(unreachable), "--tolerance", "10%",
    )  # fmt: skip
    output = capsys.readouterr().out
    assert status == 1
    assert "REGRESSED" in output and output.rstrip().endswith("regressed")
    requests = load_baseline(saved).metrics["requests_per_s"]
    assert requests is not None and requests.median == summary["requests_per_s"]
    current = LoadSummary.model_validate(summary)
    assert compare(load_baseline(saved), current, 0.0).regressed is False


def test_a_master_with_two_workers_elsewhere_matches_one_process(
    tmp_path: Path, start_reference: ReferenceFactory
) -> None:
    """`--master --expect-workers 2` on a given address plus two `--worker --master-host` processes: one summary of
    the same shape as a single-process run, and counts within a few percent (open loop, so the offered load is
    the same however many processes send it)."""
    server = start_reference()
    scenario = _scenario(
        tmp_path, name="paced", shape="constant", rate=40, users=8, duration="6s", requests=[{"api": "completion"}]
    )
    status, single, _ = _load(tmp_path / "single", server.url, "--scenario", scenario)
    assert status == 0
    port = str(free_loopback_port())
    worker = [sys.executable, "-m", "perf.cli", "--worker", "--master-host", "127.0.0.1", "--master-port", port]
    workers = [subprocess.Popen(worker, cwd=ROOT, env=subprocess_environment(API_KEY)) for _ in range(2)]
    try:
        arguments = ["--master", "--expect-workers", "2", "--master-bind-host", "127.0.0.1", "--master-bind-port", port]
        status, merged, records = _load(tmp_path / "merged", server.url, "--scenario", scenario, *arguments)
        for process in workers:
            assert process.wait(60) == 0
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
    assert status == 0
    assert list(merged) == list(single)
    # the workers start their users a moment after the master's clock, so the merged count may be a little lower
    assert merged["requests"] == pytest.approx(single["requests"], rel=0.08) and merged["errors"] == 0
    assert merged["requests_per_s"] == pytest.approx(single["requests_per_s"], rel=0.05)
    requests, _ = locust_counts(tmp_path / "merged")
    assert len(records) == requests == merged["requests"]


def _findings(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {finding["rule_id"]: finding for finding in summary["checks"]}


def test_checked_under_load_an_honest_server_passes(tmp_path: Path, start_reference: ReferenceFactory) -> None:
    server = start_reference()
    status, summary, records = _load(tmp_path, server.url, "--scenario", "smoke", "--duration", "3s", "--check=1")
    assert status == 0
    # every answered request was recorded whole and judged, and saved for `llamacert check`
    assert summary["checked_responses"] == len(records) == len(load_exchanges(tmp_path / "exchanges.jsonl")) > 20
    findings = _findings(summary)
    assert not [rule for rule, finding in findings.items() if finding["outcome"] == "failed"]
    assert findings["usage.total_is_sum"]["passed"] == len(records)
    assert findings["stream.done"]["passed"] == sum(record.stream for record in records) > 0
    assert findings["relations.deterministic"]["outcome"] == "not run"


def test_checked_under_load_a_server_that_breaks_usage_fails(
    tmp_path: Path, start_reference: ReferenceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_reference("--fault-wrong-usage", "0.25")
    status, summary, records = _load(tmp_path, server.url, "--scenario", "smoke", "--duration", "3s", "--check=1")
    assert status == 1
    finding = _findings(summary)["usage.total_is_sum"]
    # the fault breaks every fourth answer, and every answer was checked
    assert finding["outcome"] == "failed" and abs(finding["failed"] - len(records) / 4) <= 2, finding
    assert "total_tokens" in finding["first_failure"]["message"]
    assert "rule usage.total_is_sum (required) broken by" in capsys.readouterr().err
    # the other rules still pass: only the broken one fails
    assert [rule for rule, other in _findings(summary).items() if other["outcome"] == "failed"] == [
        "usage.total_is_sum"
    ]


def test_checked_under_load_with_a_master_and_two_workers(tmp_path: Path, start_reference: ReferenceFactory) -> None:
    server = start_reference("--fault-wrong-usage", "0.5")
    status, summary, records = _load(
        tmp_path, server.url, "--scenario", "smoke", "--duration", "4s", "--users", "4", "--workers", "2", "--check=1"
    )
    assert status == 1
    # both workers sent their sampled exchanges to the master with their records
    assert summary["checked_responses"] == len(records) == server.seen()["requests"] > 20
    finding = _findings(summary)["usage.total_is_sum"]
    assert finding["outcome"] == "failed" and abs(finding["failed"] - len(records) / 2) <= 2, finding
    assert not (tmp_path / ".records").exists()


def test_harness_capacity_measures_scraping_and_checking_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["--target", "simulated", "--seconds", "2", "--users", "4", "--overhead", "--check-fraction", "0.5"]
    assert harness_capacity_main(arguments) == 0
    *runs, last = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_name = {run["configuration"]: run for run in runs}
    assert list(by_name) == ["plain", "scrape", "check", "scrape+check"] and len(runs) == 4
    assert all(run["errors"] == 0 and run["requests"] > 0 for run in runs)
    # checking recorded responses only where it was on, and scraping ran only where it was on
    assert [run["checked_responses"] > 0 for run in runs] == [False, False, True, True]
    assert [run["scrape_metrics"] for run in runs] == [False, True, False, True]
    assert set(last["overhead"]) == set(by_name) and last["overhead"]["plain"]["cost_pct"] == 0.0
