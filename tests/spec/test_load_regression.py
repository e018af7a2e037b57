"""spec.load_regression: one tolerance meaning, and a gate that moves only beyond tolerance and measured spread."""

from __future__ import annotations

import pytest

from spec.load_regression import MetricValue, ToleranceError, judge_metric, parse_tolerance_pct, run_statistics
from tests.perf.test_baseline import summary


@pytest.mark.parametrize(("text", "percent"), [("10%", 10.0), ("10", 10.0), ("0.5%", 0.5), ("0", 0.0), ("1", 1.0)])
def test_a_tolerance_is_a_percentage(text: str, percent: float) -> None:
    assert parse_tolerance_pct(text) == percent


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.1", "ambiguous: write 0.1% or 10%"),
        ("ten", "expected a percentage"),
        ("-5%", "between 0% and 1000%"),
        ("nan", "between 0% and 1000%"),
    ],
)
def test_ambiguous_or_bad_tolerances_are_refused(text: str, message: str) -> None:
    with pytest.raises(ToleranceError, match=message):
        parse_tolerance_pct(text)


def test_lower_is_better_latency() -> None:
    base = MetricValue.single(100.0)
    assert judge_metric("ttft_p50_ms", base, MetricValue.single(111.0), 10).status == "regressed"
    assert judge_metric("ttft_p50_ms", base, MetricValue.single(109.0), 10).status == "unchanged"
    assert judge_metric("ttft_p50_ms", base, MetricValue.single(80.0), 10).status == "improved"


def test_higher_is_better_throughput_and_the_bound() -> None:
    verdict = judge_metric("requests_per_s", MetricValue.single(100.0), MetricValue.single(89.0), 10)
    assert verdict.status == "regressed" and verdict.bound == pytest.approx(90.0)


def test_spread_on_either_side_widens_the_margin() -> None:
    base = MetricValue(100.0, 90.0, 130.0)  # a 40 ms range over the baseline's runs
    assert judge_metric("ttft_p50_ms", base, MetricValue.single(135.0), 10).status == "unchanged"
    assert judge_metric("ttft_p50_ms", base, MetricValue.single(141.0), 10).status == "regressed"
    noisy_now = MetricValue(141.0, 100.0, 160.0)
    assert judge_metric("ttft_p50_ms", MetricValue.single(100.0), noisy_now, 10).margin == pytest.approx(60.0)


def test_run_statistics_give_median_and_range() -> None:
    runs = run_statistics([summary(requests_per_s=rate) for rate in (10.0, 14.0, 11.0)])
    requests = runs.metrics["requests_per_s"]
    assert (runs.runs, requests.median, requests.low, requests.high) == (3, 11.0, 10.0, 14.0)
