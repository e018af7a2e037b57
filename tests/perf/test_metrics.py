"""perf.metrics on hand-made records: every figure checked against numbers worked out by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conformance.rules import RULES
from perf.metrics import (
    RateLimitExpectation,
    RunWindow,
    downsample,
    e2e_ms,
    itl_ms,
    late_requests,
    latency_stats,
    limits_from_headers,
    output_tokens_per_s,
    rate_limit_verdict,
    summarize,
    summary_notes,
    timeline,
    token_gaps_ms,
    ttft_ms,
    turn_stats,
)
from perf.records import RequestRecord
from reports.model import LoadSection
from spec.load_summary import LatencyStats

T0 = 1_700_000_000.0
"""A realistic epoch: its floats resolve 0.24 microseconds, so millisecond figures compare to within 1e-3 ms."""


def approx(expected: Any) -> Any:
    return pytest.approx(expected, abs=1e-3)


def _streamed(
    sent: float, first: float, events: list[float], end: float, tokens: int | None, prompt: int = 10
) -> RequestRecord:
    return RequestRecord(
        route="/v1/chat/completions",
        stream=True,
        t_send=T0 + sent,
        t_end=T0 + end,
        status=200,
        t_first_byte=T0 + first - 0.01,
        t_first_token=T0 + first,
        token_event_times=[T0 + event for event in events],
        prompt_tokens=None if tokens is None else prompt,
        completion_tokens=tokens,
    )


def _plain(sent: float, end: float, status: int = 200, tokens: int | None = 4, **fields: Any) -> RequestRecord:
    return RequestRecord(
        route="/v1/completions",
        stream=False,
        t_send=T0 + sent,
        t_end=T0 + end,
        status=status,
        prompt_tokens=6 if status == 200 else None,
        completion_tokens=tokens if status == 200 else None,
        **fields,
    )


@pytest.fixture
def records() -> list[RequestRecord]:
    return [
        # TTFT 100 ms; ITL (0.4 - 0.1) / (5 - 1) = 75 ms; e2e 500 ms; gaps 100, 200 ms
        _streamed(0.0, 0.1, [0.1, 0.2, 0.4], 0.5, tokens=5),
        # TTFT 300 ms; ITL (0.5 - 0.3) / 2 = 100 ms; e2e 600 ms
        _streamed(1.0, 1.3, [1.3, 1.5], 1.6, tokens=3),
        # not streamed: e2e 500 ms, no TTFT or ITL
        _plain(1.5, 2.0),
        _plain(2.2, 2.21, status=429, retry_after=1.0),
        _plain(2.5, 2.6, status=500, error="HTTP 500"),
    ]


def test_per_request_figures(records: list[RequestRecord]) -> None:
    first, second, plain, rejected, failed = records
    assert ttft_ms(first) == approx(100.0)
    assert ttft_ms(second) == approx(300.0)
    assert itl_ms(first) == approx(75.0)
    assert itl_ms(second) == approx(100.0)
    assert token_gaps_ms(first) == approx([100.0, 200.0])
    assert e2e_ms(first) == approx(500.0)
    assert e2e_ms(plain) == approx(500.0)
    assert output_tokens_per_s(first) == approx(10.0)
    for record in (plain,):
        assert ttft_ms(record) is None and itl_ms(record) is None
    for record in (rejected, failed):
        assert ttft_ms(record) is e2e_ms(record) is output_tokens_per_s(record) is None


def test_itl_counts_tokens_from_usage_not_chunks() -> None:
    # 16 tokens in 4 events of 4 tokens, events 40 ms apart: 120 ms over 15 token gaps = 8 ms per token.
    record = _streamed(0.0, 0.1, [0.1, 0.14, 0.18, 0.22], 0.25, tokens=16)
    assert itl_ms(record) == approx(8.0)
    assert token_gaps_ms(record) == approx([40.0, 40.0, 40.0])


def test_no_usage_means_no_tokens_and_no_itl() -> None:
    record = _streamed(0.0, 0.1, [0.1, 0.2], 0.3, tokens=None)
    assert itl_ms(record) is None and output_tokens_per_s(record) is None
    assert ttft_ms(record) == approx(100.0)
    [note] = summary_notes([record])
    assert "without usage" in note and "never counted" in note


def test_one_token_has_no_itl() -> None:
    assert itl_ms(_streamed(0.0, 0.1, [0.1], 0.2, tokens=1)) is None


def _dump(stats: LatencyStats | None) -> dict[str, float]:
    assert stats is not None
    return stats.model_dump()


def test_latency_stats_interpolate_linearly() -> None:
    assert _dump(latency_stats([100.0, 300.0])) == approx(
        {"mean": 200.0, "p50": 200.0, "p90": 280.0, "p95": 290.0, "p99": 298.0, "max": 300.0}
    )
    assert _dump(latency_stats([float(v) for v in range(1, 101)])) == approx(
        {"mean": 50.5, "p50": 50.5, "p90": 90.1, "p95": 95.05, "p99": 99.01, "max": 100.0}
    )
    assert latency_stats([]) is None


def test_downsample_keeps_order_and_ends() -> None:
    values = [float(v) for v in range(10_000)]
    sample = downsample(values, 2000)
    assert len(sample) == 2000 and sample[0] == 0.0 and sample[-1] == 9999.0 and sample == sorted(sample)
    assert downsample([1.0, 2.0], 2000) == [1.0, 2.0]


def test_timeline_buckets_by_send_for_decisions_and_by_end_for_tokens(records: list[RequestRecord]) -> None:
    assert [bucket.model_dump() for bucket in timeline(records, RunWindow.of(records))] == [
        {"t": 0.0, "accepted": 1, "rejected": 0, "output_tokens": 5},
        {"t": 1.0, "accepted": 2, "rejected": 0, "output_tokens": 3},
        {"t": 2.0, "accepted": 0, "rejected": 1, "output_tokens": 4},
    ]


def test_summary_contract(records: list[RequestRecord]) -> None:
    summary = summarize(records, endpoint="http://x", scenario="smoke", users=2).model_dump(mode="json")
    assert list(summary)[:18] == [
        "schema_version", "endpoint", "scenario", "started_at", "duration_s", "users", "requests", "ok",
        "rejected_429", "errors", "requests_per_s", "output_tokens_per_s", "ttft_ms", "itl_ms", "e2e_ms",
        "samples", "timeline", "rate_limit",
    ]  # fmt: skip
    assert summary["schema_version"] == 2 and summary["warmup_s"] == 0 and summary["objectives"] == []
    assert summary["started_at"] == "2023-11-14T22:13:20Z"
    assert summary["duration_s"] == approx(2.6)
    assert (summary["requests"], summary["ok"], summary["rejected_429"], summary["errors"]) == (5, 3, 1, 1)
    assert summary["requests_per_s"] == approx(3 / 2.6)
    assert summary["output_tokens_per_s"] == approx(12 / 2.6)
    assert summary["ttft_ms"]["mean"] == approx(200.0)
    assert summary["itl_ms"]["mean"] == approx(87.5)
    assert summary["e2e_ms"] == approx(
        {"mean": 1600 / 3, "p50": 500.0, "p90": 580.0, "p95": 590.0, "p99": 598.0, "max": 600.0}
    )
    assert summary["samples"]["ttft_ms"] == approx([100.0, 300.0])
    assert summary["rate_limit"] is None
    # The reports package reads it (through JSON, as it does from a file).
    section = LoadSection.from_summary(json.loads(json.dumps(summary)))
    assert section.ok == 3 and section.e2e_ms is not None


def test_summary_without_streams_has_no_ttft() -> None:
    summary = summarize([_plain(0.0, 0.5)], endpoint="http://x", scenario="s", users=1).model_dump()
    assert summary["ttft_ms"] is None and summary["itl_ms"] is None and summary["e2e_ms"] is not None


def test_explicit_window() -> None:
    summary = summarize(
        [_plain(1.0, 1.5)], endpoint="x", scenario="s", users=1, window=RunWindow(T0, 10.0)
    ).model_dump()
    assert summary["duration_s"] == 10.0 and summary["requests_per_s"] == approx(0.1)
    assert len(summary["timeline"]) == 10


def test_limits_from_headers() -> None:
    seen = [_plain(0, 1, limit_requests=120), _plain(1, 2, limit_requests=120, limit_tokens=9000), _plain(2, 3)]
    assert limits_from_headers(seen) == (120, 9000)
    assert limits_from_headers([_plain(0, 1)]) == (None, None)


# --- rate-limit verdicts -------------------------------------------------------------------------------------


def _offered(
    accepted: int, total: int = 100, *, tokens: int = 4, retry_after: float | None = 1.0
) -> list[RequestRecord]:
    """`total` requests every 0.1 s (a 9.9 s span); the first `accepted` answered, the rest 429."""
    return [
        _plain(i * 0.1, i * 0.1 + 0.05, tokens=tokens)
        if i < accepted
        else _plain(i * 0.1, i * 0.1 + 0.01, status=429, retry_after=retry_after)
        for i in range(total)
    ]


def _verdict(records: list[RequestRecord], **expectation: Any) -> dict[str, Any]:
    expected = RateLimitExpectation(**{"mode": "above", "limit_rpm": 60, "limit_tpm": None, **expectation})
    return rate_limit_verdict(records, expected, RunWindow.of(records)).model_dump()


def test_rates_of_a_rate_limit_run() -> None:
    result = _verdict(_offered(20))
    # 100 requests from 0 to the last 429's end at 9.91 s; 20 accepted, 10 tokens each (6 prompt + 4 completion)
    assert result["offered_rpm"] == approx(100 / 9.91 * 60)
    assert result["accepted_rpm"] == approx(20 / 9.91 * 60)
    assert result["accepted_tpm"] == approx(200 / 9.91 * 60)


@pytest.mark.parametrize(
    ("accepted", "verdict", "reason"),
    [
        # 60/min over 9.9 s: steady 9.9, ceiling 9.9 + a 10 s burst (10) + 1 = 20.9, floor 95% of 9.9 = 9.4
        (20, "pass", None),
        (10, "pass", None),
        (21, "fail", "above the 20.9 the limit allows"),
        (9, "fail", "rejects load it should accept"),
    ],
)
def test_accepted_requests_within_the_limit(accepted: int, verdict: str, reason: str | None) -> None:
    result = _verdict(_offered(accepted))
    assert result["verdict"] == verdict, result["reasons"]
    if reason:
        assert any(reason in text for text in result["reasons"]), result["reasons"]


def test_every_429_needs_retry_after() -> None:
    result = _verdict(_offered(15, retry_after=None))
    assert result["verdict"] == "fail"
    assert result["reasons"] == ["85 of 85 429 answers had no valid Retry-After"]


def test_every_429_needs_the_rate_limit_headers() -> None:
    records = _offered(15)
    for record in records[15:20]:
        record.missing_rate_limit_headers = ["x-ratelimit-remaining-requests"]
    result = _verdict(records)
    assert result["verdict"] == "fail"
    assert result["reasons"] == ["5 of 85 429 answers lacked the rate-limit headers ['x-ratelimit-remaining-requests']"]
    assert _verdict(_offered(15))["verdict"] == "pass"
    # the token pair is required only of a deployment with a tokens/min limit
    for record in records[15:20]:
        record.missing_rate_limit_headers = ["x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens"]
    assert _verdict(records)["verdict"] == "pass"
    assert _verdict(records, limit_tpm=1_000_000)["verdict"] == "fail"


def test_the_verdict_names_its_registered_rule_and_source() -> None:
    result = _verdict(_offered(15))
    rule = RULES[result["rule_id"]]
    assert rule.rule_id == "rate_limit.enforced" and result["source"] == rule.source
    assert "D26" in result["source"]


def test_server_errors_and_hung_requests_fail() -> None:
    records = _offered(15)
    records[20] = _plain(2.0, 2.1, status=503, error="HTTP 503")
    records[21] = _plain(2.1, 2.2, status=0, error="timeout: no complete answer in 120 s")
    result = _verdict(records)
    assert result["verdict"] == "fail"
    assert any("server errors (5xx): 503 x1" in reason for reason in result["reasons"])
    assert any("1 requests hung" in reason for reason in result["reasons"])


def test_a_request_ending_long_after_the_stop_is_hung() -> None:
    records = _offered(15)
    records[0] = _plain(0.0, 200.0)
    result = _verdict(records, stopped_at=T0 + 10, request_timeout_s=60)
    assert any("hung" in reason for reason in result["reasons"])


def test_load_that_never_exceeds_the_limit_proves_nothing() -> None:
    # 10 requests over 0.9 s: the limit allows 0.9 + a 10 s burst + 1 = 11.9, so none could be refused
    result = _verdict(_offered(10, total=10))
    assert result["verdict"] == "fail"
    assert "never exceeded" in result["reasons"][0]


def test_token_limit_binding_first_excuses_a_low_request_count() -> None:
    # 100 tokens a request, 1,000 tokens/min: 9.9 s steady is 165 tokens, plus the minute's burst 1,000,
    # plus one request's slack: at most 12 requests; the request limit (600/min) is not what binds.
    records = _offered(12, tokens=94)
    result = _verdict(records, limit_rpm=600, limit_tpm=1000)
    assert result["verdict"] == "pass", result["reasons"]
    result = _verdict(_offered(13, tokens=94), limit_rpm=600, limit_tpm=1000)
    assert result["verdict"] == "fail"
    assert "tokens" in result["reasons"][0]


def test_under_the_limit_nothing_may_be_rejected() -> None:
    clean = [_plain(i * 0.5, i * 0.5 + 0.1) for i in range(10)]
    assert _verdict(clean, mode="under")["verdict"] == "pass"
    result = _verdict([*clean, _plain(5.5, 5.51, status=429, retry_after=1.0)], mode="under")
    assert result["verdict"] == "fail"
    assert result["reasons"] == ["1 requests got 429 although the offered load was below the limits"]


def test_no_known_limit_is_a_failure_that_says_why() -> None:
    result = _verdict(_offered(20), limit_rpm=None)
    assert result["verdict"] == "fail" and "no rate limit known" in result["reasons"][0]


def test_summary_with_rate_limit_reads_into_a_report() -> None:
    records = _offered(20)
    summary = summarize(
        records, endpoint="x", scenario="rate-limit", users=8, rate_limit=RateLimitExpectation("above", 60, None)
    )
    section = LoadSection.from_summary(json.loads(summary.model_dump_json()))
    assert section.rate_limit is not None and section.rate_limit.verdict == "pass"


def test_figures_per_conversation_turn() -> None:
    first = [_streamed(0, 0.1, [0.1, 0.2], 0.2, 2, prompt=10), _streamed(1, 1.3, [1.3], 1.4, 1, prompt=12)]
    second = [_streamed(2, 2.5, [2.5, 2.6], 2.6, 2, prompt=40)]
    for record in first:
        record.turn = 1
    second[0].turn = 2
    stats = turn_stats([*second, *first, _plain(3, 4)])
    assert stats is not None and [(turn.turn, turn.requests) for turn in stats] == [(1, 2), (2, 1)]
    assert [turn.prompt_tokens_mean for turn in stats] == [11, 40]
    assert stats[0].ttft_ms is not None and stats[0].ttft_ms.max == approx(300)
    assert stats[1].ttft_ms is not None and stats[1].ttft_ms.p50 == approx(500)
    assert turn_stats([_plain(0, 1)]) is None
    summary = summarize([*first, *second], endpoint="http://e", scenario="s", users=1)
    assert summary.turns == stats


def test_late_trace_requests() -> None:
    on_time, late, untimed = _plain(1.05, 2, t_due=T0 + 1.0), _plain(2.5, 3, t_due=T0 + 2.0), _plain(3, 4)
    assert late_requests([on_time, late, untimed]) == 1
