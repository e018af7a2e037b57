"""perf.objectives: --slo parsing, objectives met or missed, goodput, and the warm-up left out of all of them."""

from __future__ import annotations

import pytest

from perf.metrics import RunWindow, summarize
from perf.objectives import Objective, evaluate_objectives, goodput, parse_objectives
from perf.records import RequestRecord
from tests.perf.test_metrics import T0, _plain, _streamed


def test_parse_objectives_and_per_request_thresholds() -> None:
    objectives = parse_objectives("ttft_p95=500ms, itl_p95=50ms,e2e_p99=8s,errors=1%,ttft=2s")
    assert objectives.objectives == (
        Objective("ttft_p95", "ttft", 95.0, 500.0),
        Objective("itl_p95", "itl", 95.0, 50.0),
        Objective("e2e_p99", "e2e", 99.0, 8000.0),
        Objective("errors", "errors", None, 0.01),
    )
    assert objectives.per_request_ms == (("ttft", 2000.0),)
    # the explicit per-request TTFT threshold wins; the others lend their objective's threshold
    assert objectives.goodput_thresholds_ms == {"ttft": 2000.0, "itl": 50.0, "e2e": 8000.0}
    assert objectives.max_error_rate == 0.01
    assert parse_objectives(str(objectives)) == objectives


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttft_p95=500", "expected a duration with its unit"),
        ("ttft_p95", "expected NAME=VALUE"),
        ("tokens_p50=1s", "the metric must be one of"),
        ("ttft_p0=1s", "the percentile must be above 0"),
        ("errors=0.01", "the error-rate objective is written errors=1%"),
        ("ttft_p95=1s,ttft_p95=2s", "given twice"),
        ("", "no objectives given"),
    ],
)
def test_bad_objectives(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_objectives(text)


def _fast_and_slow() -> list[RequestRecord]:
    # nine fast streams (TTFT 100 ms, 10 ms between tokens) and one slow one (TTFT 900 ms), 10 tokens each
    fast = [_streamed(i, i + 0.1, [i + 0.1 + 0.01 * k for k in range(10)], i + 0.2, tokens=10) for i in range(9)]
    slow = _streamed(9, 9.9, [9.9 + 0.01 * k for k in range(10)], 10.0, tokens=10)
    return [*fast, slow]


def test_a_percentile_objective_met_and_missed() -> None:
    records = _fast_and_slow()
    [p50] = evaluate_objectives(records, parse_objectives("ttft_p50=200ms"))
    assert p50.met and p50.measured == pytest.approx(100.0)
    [p99] = evaluate_objectives(records, parse_objectives("ttft_p99=200ms"))
    assert not p99.met and p99.measured == pytest.approx(828.0) and "(MISSED)" in p99.text


def test_an_objective_nothing_measured_is_missed() -> None:
    [result] = evaluate_objectives([_plain(0, 0.5)], parse_objectives("itl_p95=50ms"))
    assert not result.met and result.measured is None and "no request measured it" in result.text


def test_the_error_rate_objective_leaves_429s_out() -> None:
    # 200 sent: one 429 (a refusal, not an error) and one 500
    records = [
        *(_plain(i, i + 0.1) for i in range(198)),
        _plain(198, 198.1, status=429),
        _plain(199, 199.1, status=500),
    ]
    [within] = evaluate_objectives(records, parse_objectives("errors=0.5%"))
    assert within.met and within.measured == pytest.approx(1 / 200)
    [beyond] = evaluate_objectives(records, parse_objectives("errors=0.4%"))
    assert not beyond.met


def test_goodput_counts_requests_that_met_every_threshold() -> None:
    result = goodput(_fast_and_slow(), parse_objectives("ttft_p95=500ms"), duration_s=10.0)
    assert result.good_requests == 9 and result.requests_per_s == pytest.approx(0.9)
    assert result.output_tokens_per_s == pytest.approx(9.0)
    # a non-streamed request's TTFT is its end-to-end latency
    assert goodput([_plain(0, 0.6)], parse_objectives("ttft=500ms"), 1.0).good_requests == 0
    assert goodput([_plain(0, 0.4)], parse_objectives("ttft=500ms,itl=1ms"), 1.0).good_requests == 1


def test_the_warm_up_is_left_out_of_the_summary() -> None:
    # a slow first second (cold server), then fast requests
    records = [_plain(0.0, 0.9), *(_plain(1 + i * 0.5, 1 + i * 0.5 + 0.05) for i in range(10))]
    window = RunWindow(T0, 6.0)
    summary = summarize(records, endpoint="x", scenario="s", users=1, window=window, warmup_s=1.0)
    assert (summary.requests, summary.warmup_requests, summary.warmup_s) == (10, 1, 1.0)
    assert summary.duration_s == pytest.approx(5.0) and summary.requests_per_s == pytest.approx(2.0)
    assert summary.e2e_ms is not None and summary.e2e_ms.max == pytest.approx(50.0)
    assert summary.started_at.timestamp() == pytest.approx(T0 + 1)
