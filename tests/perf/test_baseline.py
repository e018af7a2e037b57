"""perf.baseline: gate metrics saved and compared; only a move the wrong way beyond the tolerance fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from perf.baseline import (
    BaselineError,
    compare,
    format_comparison,
    gate_metrics,
    load_baseline,
    parse_tolerance,
    save_baseline,
)


def _summary(**changes: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "endpoint": "http://x",
        "scenario": "throughput",
        "users": 16,
        "duration_s": 60.0,
        "requests": 1000,
        "errors": 0,
        "requests_per_s": 16.0,
        "output_tokens_per_s": 2000.0,
        "ttft_ms": {"mean": 210.0, "p50": 200.0, "p90": 0, "p95": 0, "p99": 0, "max": 0},
        "e2e_ms": {"mean": 900.0, "p50": 0, "p90": 0, "p95": 1000.0, "p99": 0, "max": 0},
    }
    summary.update(changes)
    return summary


def test_tolerances() -> None:
    assert parse_tolerance("10%") == pytest.approx(0.10)
    assert parse_tolerance("0.05") == 0.05
    for bad in ("ten", "-5%", "nan"):
        with pytest.raises(BaselineError):
            parse_tolerance(bad)


def test_gate_metrics() -> None:
    assert gate_metrics(_summary(errors=5)) == {
        "ttft_p50_ms": 200.0,
        "e2e_p95_ms": 1000.0,
        "output_tokens_per_s": 2000.0,
        "requests_per_s": 16.0,
        "error_rate": 0.005,
    }
    assert gate_metrics(_summary(ttft_ms=None, requests=0))["ttft_p50_ms"] is None


def test_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    save_baseline(path, _summary())
    baseline = load_baseline(path)
    assert baseline["metrics"]["ttft_p50_ms"] == 200.0 and baseline["scenario"] == "throughput"
    (tmp_path / "other.json").write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(BaselineError, match="not a llamacert load baseline"):
        load_baseline(tmp_path / "other.json")


def _compare(tmp_path: Path, tolerance: float = 0.10, **changes: Any) -> Any:
    save_baseline(tmp_path / "b.json", _summary())
    return compare(load_baseline(tmp_path / "b.json"), _summary(**changes), tolerance)


def test_within_tolerance_passes(tmp_path: Path) -> None:
    comparison = _compare(tmp_path, ttft_ms={"p50": 219.0}, output_tokens_per_s=1810.0)
    assert not comparison.regressed
    assert [row.status for row in comparison.rows] == ["ok", "ok", "ok", "ok", "ok"]


@pytest.mark.parametrize(
    ("changes", "regressed"),
    [
        ({"ttft_ms": {"p50": 221.0}}, "median TTFT"),
        ({"e2e_ms": {"p95": 1101.0}}, "p95 end-to-end latency"),
        ({"output_tokens_per_s": 1790.0}, "output tokens/s"),
        ({"requests_per_s": 14.3}, "requests/s"),
        # no errors before: up to 0.1 percentage point is allowed, 0.2 is not
        ({"errors": 2}, "error rate"),
    ],
)
def test_a_regression_beyond_tolerance_fails(tmp_path: Path, changes: dict[str, Any], regressed: str) -> None:
    comparison = _compare(tmp_path, **changes)
    assert comparison.regressed
    assert [row.gate.label for row in comparison.rows if row.status == "regressed"] == [regressed]
    table = format_comparison(comparison)
    assert "REGRESSED" in table and regressed in table and "regressed beyond tolerance" in table


def test_improvements_pass_and_are_shown(tmp_path: Path) -> None:
    comparison = _compare(tmp_path, ttft_ms={"p50": 100.0}, requests_per_s=32.0, errors=1)
    assert not comparison.regressed
    statuses = {row.gate.name: row.status for row in comparison.rows}
    assert statuses["ttft_p50_ms"] == statuses["requests_per_s"] == "improved" and statuses["error_rate"] == "ok"
    assert "+100.0%" in format_comparison(comparison)


def test_missing_figures_are_not_compared_and_differences_are_warned(tmp_path: Path) -> None:
    comparison = _compare(tmp_path, ttft_ms=None, scenario="smoke")
    assert not comparison.regressed
    assert next(row for row in comparison.rows if row.gate.name == "ttft_p50_ms").status == "n/a"
    assert "baseline scenario 'throughput' differs from this run's 'smoke'" in format_comparison(comparison)
