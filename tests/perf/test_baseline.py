"""perf.baseline: gate metrics saved (with their spread) and compared by the one engine of spec.load_regression."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from perf.baseline import BaselineError, compare, format_comparison, load_baseline, save_baseline
from spec.load_summary import LatencySamples, LatencyStats, LoadSummary, MetricRuns, RunStatistics


def _stats(p50: float = 0.0, p95: float = 0.0) -> LatencyStats:
    return LatencyStats(mean=p50, p50=p50, p90=p95, p95=p95, p99=p95, max=p95)


def summary(**changes: Any) -> LoadSummary:
    fields: dict[str, Any] = {
        "endpoint": "http://x",
        "scenario": "throughput",
        "started_at": datetime(2026, 1, 1, tzinfo=UTC),
        "duration_s": 60.0,
        "users": 16,
        "requests": 1000,
        "ok": 1000,
        "rejected_429": 0,
        "errors": 0,
        "requests_per_s": 16.0,
        "output_tokens_per_s": 2000.0,
        "ttft_ms": _stats(p50=200.0, p95=400.0),
        "itl_ms": _stats(p50=10.0, p95=20.0),
        "e2e_ms": _stats(p50=800.0, p95=1000.0),
        "samples": LatencySamples(ttft_ms=[], itl_ms=[], e2e_ms=[]),
        "timeline": [],
        "rate_limit": None,
    }
    fields.update(changes)
    return LoadSummary(**fields)


def _compare(tmp_path: Path, current: LoadSummary, tolerance_pct: float = 10.0, old: LoadSummary | None = None) -> Any:
    save_baseline(tmp_path / "b.json", old or summary())
    return compare(load_baseline(tmp_path / "b.json"), current, tolerance_pct)


def _regressed(comparison: Any) -> list[str]:
    return [verdict.metric.label for verdict in comparison.verdicts if verdict.status == "regressed"]


def test_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    save_baseline(path, summary())
    baseline = load_baseline(path)
    value = baseline.metrics["ttft_p50_ms"]
    assert value is not None and value.median == 200.0 and baseline.scenario == "throughput"
    (tmp_path / "other.json").write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(BaselineError, match="not a llamacert load baseline"):
        load_baseline(tmp_path / "other.json")


def test_a_version_1_baseline_still_reads_with_its_error_rate_as_a_fraction(tmp_path: Path) -> None:
    path = tmp_path / "v1.json"
    metrics = {"ttft_p50_ms": 200.0, "requests_per_s": 16.0, "error_rate": 0.005}
    path.write_text(json.dumps({"kind": "llamacert-load-baseline", "schema_version": 1, "metrics": metrics}))
    error_rate = load_baseline(path).metrics["error_rate"]
    assert error_rate is not None and error_rate.median == pytest.approx(0.5)  # percent


def test_within_tolerance_passes(tmp_path: Path) -> None:
    comparison = _compare(tmp_path, summary(ttft_ms=_stats(p50=219.0, p95=400.0), output_tokens_per_s=1810.0))
    assert not comparison.regressed
    assert {verdict.status for verdict in comparison.verdicts} <= {"unchanged", "n/a"}


@pytest.mark.parametrize(
    ("changes", "regressed"),
    [
        ({"ttft_ms": _stats(p50=221.0, p95=400.0)}, "median TTFT"),
        ({"e2e_ms": _stats(p50=800.0, p95=1101.0)}, "p95 end-to-end latency"),
        ({"output_tokens_per_s": 1790.0}, "output tokens/s"),
        ({"requests_per_s": 14.3}, "requests/s"),
        # no errors before: up to 0.1 percentage point is allowed, 0.2 is not
        ({"errors": 2, "ok": 998}, "error rate"),
    ],
)
def test_a_regression_beyond_tolerance_fails(tmp_path: Path, changes: dict[str, Any], regressed: str) -> None:
    comparison = _compare(tmp_path, summary(**changes))
    assert _regressed(comparison) == [regressed]
    table = format_comparison(comparison)
    assert "REGRESSED" in table and regressed in table and table.endswith("regressed")


def test_one_error_in_a_thousand_is_within_the_floor(tmp_path: Path) -> None:
    assert not _compare(tmp_path, summary(errors=1, ok=999)).regressed


def test_the_measured_spread_widens_the_gate(tmp_path: Path) -> None:
    """A baseline from noisy repeated runs: 25 % slower TTFT is inside the runs' range, 45 % is not."""
    runs = RunStatistics(
        runs=3, metrics={"ttft_p50_ms": MetricRuns(median=200, low=160, high=240, values=[160, 200, 240])}
    )
    noisy = summary(runs=runs)
    assert not _compare(tmp_path, summary(ttft_ms=_stats(p50=250.0, p95=400.0)), old=noisy).regressed
    assert _regressed(_compare(tmp_path, summary(ttft_ms=_stats(p50=290.0, p95=400.0)), old=noisy)) == ["median TTFT"]


def test_improvements_pass_and_are_shown(tmp_path: Path) -> None:
    comparison = _compare(tmp_path, summary(ttft_ms=_stats(p50=100.0, p95=400.0), requests_per_s=32.0))
    assert not comparison.regressed
    statuses = {verdict.metric.name: verdict.status for verdict in comparison.verdicts}
    assert statuses["ttft_p50_ms"] == statuses["requests_per_s"] == "improved"
    assert "+100.0%" in format_comparison(comparison)


def test_missing_figures_are_not_compared_and_differences_are_warned(tmp_path: Path) -> None:
    comparison = _compare(tmp_path, summary(ttft_ms=None, scenario="smoke"))
    assert not comparison.regressed
    assert next(v for v in comparison.verdicts if v.metric.name == "ttft_p50_ms").status == "n/a"
    assert "baseline scenario 'throughput' differs from this run's 'smoke'" in format_comparison(comparison)
