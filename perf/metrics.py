"""Load metrics computed from raw request records: latencies, throughput, rates, timeline, rate-limit verdict.

Pure functions, no I/O. `summarize` builds the load summary (`spec.load_summary.LoadSummary`, the contract the
reports package reads); anything the contract has no field for (notes, token gaps) has its own function.
Token counts come only from `usage`; a request whose server sent none adds no tokens and no ITL.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple

import numpy as np

from perf.records import RequestRecord
from spec.load_summary import (
    LOAD_SUMMARY_SCHEMA_VERSION,
    CheckFinding,
    Goodput,
    LatencySamples,
    LatencyStats,
    LoadSummary,
    ObjectiveResult,
    RateLimitResult,
    ServerMetrics,
    TimelineBucket,
    TurnStats,
    WorkloadInfo,
)
from spec.profiles import RATE_LIMIT_BURST_SECONDS, RATE_LIMIT_RULE_ID, REQUEST_LIMIT_HEADERS, TOKEN_LIMIT_HEADERS

__all__ = [
    "DEFAULT_BURST_SECONDS",
    "DEFAULT_TOKEN_BURST_SECONDS",
    "LATE_AFTER_S",
    "SAMPLE_CAP",
    "SUMMARY_SCHEMA_VERSION",
    "RateLimitExpectation",
    "RunWindow",
    "downsample",
    "e2e_ms",
    "itl_ms",
    "late_requests",
    "latency_stats",
    "limits_from_headers",
    "measured_window",
    "output_tokens_per_s",
    "rate_limit_verdict",
    "summarize",
    "summary_notes",
    "timeline",
    "token_gaps_ms",
    "ttft_ms",
    "turn_stats",
]

SUMMARY_SCHEMA_VERSION: Final = LOAD_SUMMARY_SCHEMA_VERSION
SAMPLE_CAP: Final = 2000
"""Samples kept per latency in the summary: enough for a histogram or CDF, small enough for a report."""
DEFAULT_BURST_SECONDS: Final = RATE_LIMIT_BURST_SECONDS
"""Azure evaluates request rates over short windows ("typically 1 or 10 seconds"), so a deployment may admit
up to `rpm * 10 / 60` requests at once on top of the steady rate."""
DEFAULT_TOKEN_BURST_SECONDS: Final = 60.0
"""Tokens are counted per minute, so a whole minute's tokens may be admitted at once."""

_PERCENTILES: Final = (50.0, 90.0, 95.0, 99.0)


@dataclass(frozen=True)
class RunWindow:
    """The span a run's rates are measured over: epoch start and length in seconds."""

    start: float
    duration_s: float

    @property
    def end(self) -> float:
        return self.start + self.duration_s

    @classmethod
    def of(cls, records: Sequence[RequestRecord]) -> RunWindow:
        """From the first request sent to the last one finished."""
        if not records:
            raise ValueError("no records: give the run's window explicitly")
        start = min(record.t_send for record in records)
        return cls(start, max(record.t_end for record in records) - start)


# --- per request -------------------------------------------------------------------------------------------


def ttft_ms(record: RequestRecord) -> float | None:
    """Time to first token: send to the first SSE event with generated text. Streamed, successful requests only."""
    if not (record.ok and record.stream and record.t_first_token is not None):
        return None
    return (record.t_first_token - record.t_send) * 1000


def itl_ms(record: RequestRecord) -> float | None:
    """Mean inter-token latency after the first token: (last token event - first token) / (completion_tokens - 1).

    Chunk-aware: a server that sends k tokens per event still gets the per-token figure, because the token
    count comes from usage. None without usage, without streaming, or with fewer than two tokens.
    """
    tokens = record.completion_tokens
    if not (record.ok and record.stream and tokens is not None and tokens >= 2):
        return None
    if record.t_first_token is None or not record.token_event_times:
        return None
    return (record.token_event_times[-1] - record.t_first_token) * 1000 / (tokens - 1)


def token_gaps_ms(record: RequestRecord) -> list[float]:
    """Gaps between consecutive token-bearing SSE events of one request (per event, not per token)."""
    times = record.token_event_times
    return [(later - earlier) * 1000 for earlier, later in itertools.pairwise(times)]


def e2e_ms(record: RequestRecord) -> float | None:
    """End-to-end latency of a successful request: send to the last byte."""
    return (record.t_end - record.t_send) * 1000 if record.ok else None


def output_tokens_per_s(record: RequestRecord) -> float | None:
    """Completion tokens per second of end-to-end latency, for a successful request with usage."""
    elapsed = record.t_end - record.t_send
    if not record.ok or record.completion_tokens is None or elapsed <= 0:
        return None
    return record.completion_tokens / elapsed


# --- aggregates ----------------------------------------------------------------------------------------------


def latency_stats(values: Sequence[float]) -> LatencyStats | None:
    """mean, p50, p90, p95, p99, max (percentiles linearly interpolated, as numpy's default); None when empty."""
    if not values:
        return None
    array = np.asarray(values, dtype=np.float64)
    p50, p90, p95, p99 = (float(value) for value in np.percentile(array, _PERCENTILES))
    return LatencyStats(mean=float(array.mean()), p50=p50, p90=p90, p95=p95, p99=p99, max=float(array.max()))


def downsample(values: Sequence[float], cap: int = SAMPLE_CAP) -> list[float]:
    """At most `cap` values, evenly spaced in their original (send) order, so a plot over time keeps its shape."""
    if len(values) <= cap:
        return list(values)
    indices = np.linspace(0, len(values) - 1, cap).round().astype(np.int64)
    return [values[int(index)] for index in indices]


def _present(values: Sequence[float | None]) -> list[float]:
    return [value for value in values if value is not None]


def _bucket(t: float, start: float) -> int:
    return max(0, math.floor(t - start))


def measured_window(
    records: Sequence[RequestRecord], window: RunWindow, warmup_s: float
) -> tuple[list[RequestRecord], RunWindow]:
    """The records sent after the warm-up, and the window they are measured over (the warm-up cut off its start)."""
    if warmup_s <= 0:
        return list(records), window
    start = window.start + warmup_s
    measured = [record for record in records if record.t_send >= start]
    return measured, RunWindow(start, max(0.0, window.end - start))


def timeline(records: Sequence[RequestRecord], window: RunWindow) -> list[TimelineBucket]:
    """Per-second buckets from the window's start.

    A request counts as accepted (2xx) or rejected (429) in the second it was sent, when the server decided;
    its output tokens count in the second it finished, when they had all been delivered. Errors other than
    429 are in neither column.
    """
    last = max([window.end, *(record.t_end for record in records)])
    count = max(1, math.ceil(last - window.start - 1e-9))
    accepted, rejected, tokens = [0] * count, [0] * count, [0] * count
    for record in records:
        sent = min(_bucket(record.t_send, window.start), count - 1)
        if 200 <= record.status < 300:
            accepted[sent] += 1
        elif record.rejected:
            rejected[sent] += 1
        if record.ok and record.completion_tokens:
            tokens[min(_bucket(record.t_end, window.start), count - 1)] += record.completion_tokens
    return [
        TimelineBucket(t=float(index), accepted=accepted[index], rejected=rejected[index], output_tokens=tokens[index])
        for index in range(count)
    ]


def limits_from_headers(records: Sequence[RequestRecord]) -> tuple[int | None, int | None]:
    """The (requests, tokens) per-minute limits the endpoint announced in x-ratelimit-limit-*, most common value."""
    requests = Counter(record.limit_requests for record in records if record.limit_requests is not None)
    tokens = Counter(record.limit_tokens for record in records if record.limit_tokens is not None)
    return (
        requests.most_common(1)[0][0] if requests else None,
        tokens.most_common(1)[0][0] if tokens else None,
    )


def summary_notes(records: Sequence[RequestRecord]) -> list[str]:
    """Caveats the summary's numbers carry, in words (the summary contract has no field for them)."""
    notes: list[str] = []
    ok = [record for record in records if record.ok]
    without_usage = [record for record in ok if record.completion_tokens is None]
    if without_usage:
        streamed = sum(record.stream for record in without_usage)
        notes.append(
            f"{len(without_usage)} of {len(ok)} successful requests ({streamed} streamed) came without usage: "
            "their tokens are not counted, so output tokens/s and ITL cover only requests with usage "
            "(SSE chunks are never counted as tokens)."
        )
    no_token = [record for record in ok if record.stream and record.t_first_token is None]
    if no_token:
        notes.append(f"{len(no_token)} successful streamed requests carried no generated text: they have no TTFT.")
    return notes


@dataclass(frozen=True)
class RateLimitExpectation:
    """What a rate-limit run expects of the endpoint.

    mode "above": offered load exceeds the limits, so the endpoint must hold accepted load to them. Over the
    span in which requests were sent (W seconds) it may accept at most `rpm * W / 60 + rpm * burst / 60 + 1`
    requests (the steady rate, one burst window, one request of slack for clock edges), and at least
    `floor * rpm * W / 60` (it must not reject what the limit allows); likewise for tokens when the token
    limit is the one that binds.
    mode "under": offered load is below the limits, so nothing may be rejected.
    Both modes: every rejection is a 429 with a valid Retry-After and the x-ratelimit-* headers, no other error,
    no hung request. This is conformance rule `rate_limit.enforced` (D26) judged under load.
    """

    mode: Literal["above", "under"]
    limit_rpm: int | None
    limit_tpm: int | None
    burst_seconds: float = DEFAULT_BURST_SECONDS
    token_burst_seconds: float = DEFAULT_TOKEN_BURST_SECONDS
    floor: float = 0.95
    request_timeout_s: float = 60.0
    stopped_at: float | None = None
    """Epoch time the load generator stopped sending; a request ending after it + the timeout is hung."""


def _status_breakdown(records: Sequence[RequestRecord]) -> str:
    counts = Counter(record.status for record in records)
    return ", ".join(f"{status or 'no response'} x{count}" for status, count in sorted(counts.items()))


class _LimitCheck(NamedTuple):
    what: str
    accepted: float
    offered: float
    limit: int | None
    burst_s: float
    slack: float
    """Accepted amount allowed beyond the limit and its burst."""


def _above_limit_reasons(
    records: Sequence[RequestRecord],
    *,
    accepted_requests: int,
    accepted_tokens: int,
    served: int,
    span_s: float,
    expectation: RateLimitExpectation,
) -> list[str]:
    """Accepted load must stay within each known limit and come close to one that offered load exceeded."""
    # Offered tokens are estimated from what the served requests used: rejected requests report no usage.
    offered_tokens = accepted_tokens / served * len(records) if served else 0.0
    # One request's worth of slack: the server admits on its own clock, a few milliseconds off the sends'.
    per_request = accepted_tokens / served if served else 0.0
    checks = [
        _LimitCheck("requests", accepted_requests, len(records), expectation.limit_rpm, expectation.burst_seconds, 1.0),
        _LimitCheck(
            "tokens",
            accepted_tokens,
            offered_tokens,
            expectation.limit_tpm,
            expectation.token_burst_seconds,
            per_request,
        ),
    ]
    reasons: list[str] = []
    floors_met: list[bool] = []
    floor_reasons: list[str] = []
    for what, accepted, offered, limit, burst_s, slack in checks:
        if limit is None:
            continue
        steady = limit * span_s / 60
        ceiling = steady + limit * burst_s / 60 + slack
        if accepted > ceiling + 1e-9:
            reasons.append(
                f"accepted {accepted:,.0f} {what} in {span_s:.1f} s, above the {ceiling:,.1f} the limit allows "
                f"({limit:,}/min over {span_s:.1f} s, a {burst_s:g} s burst, one request's slack)"
            )
        if offered > ceiling:
            floors_met.append(accepted >= expectation.floor * steady)
            floor_reasons.append(
                f"accepted only {accepted:,.0f} {what} in {span_s:.1f} s, under {expectation.floor:.0%} of the "
                f"{steady:,.1f} the limit allows: the endpoint rejects load it should accept"
            )
    if not floors_met:
        reasons.append(
            f"the offered load ({len(records)} requests over {span_s:.1f} s) never exceeded the limits plus their "
            "burst, so the run cannot show that they are enforced"
        )
    # Whichever limit binds holds the other below its own rate, so one limit near its floor is enough.
    elif not any(floors_met):
        reasons += floor_reasons
    return reasons


def rate_limit_verdict(
    records: Sequence[RequestRecord], expectation: RateLimitExpectation, window: RunWindow
) -> RateLimitResult:
    """The summary's `rate_limit` object: offered and accepted rates and a pass/fail verdict with its reasons,
    naming the registered rule it judges and that rule's source."""
    minutes = window.duration_s / 60 if window.duration_s > 0 else math.inf
    accepted = [record for record in records if 200 <= record.status < 300]
    accepted_tokens = sum(
        (record.prompt_tokens or 0) + (record.completion_tokens or 0) for record in accepted if record.ok
    )
    result: dict[str, Any] = {
        "limit_rpm": expectation.limit_rpm,
        "limit_tpm": expectation.limit_tpm,
        "offered_rpm": len(records) / minutes,
        "accepted_rpm": len(accepted) / minutes,
        "accepted_tpm": accepted_tokens / minutes,
    }
    reasons: list[str] = []
    rejected = [record for record in records if record.rejected]
    errors = [record for record in records if not (200 <= record.status < 300 or record.rejected)]
    in_band = [record for record in accepted if record.error is not None and not record.hung]
    hung = [
        record
        for record in records
        if record.hung
        or (
            expectation.stopped_at is not None and record.t_end > expectation.stopped_at + expectation.request_timeout_s
        )
    ]

    if expectation.limit_rpm is None and expectation.limit_tpm is None:
        reasons.append(
            "no rate limit known: pass --rpm/--tpm or --profile, or the endpoint must send x-ratelimit-limit-*"
        )
    if expectation.mode == "under" and rejected:
        reasons.append(f"{len(rejected)} requests got 429 although the offered load was below the limits")
    bad_retry_after = [record for record in rejected if record.retry_after is None]
    if bad_retry_after:
        reasons.append(f"{len(bad_retry_after)} of {len(rejected)} 429 answers had no valid Retry-After")
    # the pair of headers of each limit the deployment has (D26)
    required = {*REQUEST_LIMIT_HEADERS, *(TOKEN_LIMIT_HEADERS if expectation.limit_tpm is not None else ())}
    without_headers = [record for record in rejected if required & {*record.missing_rate_limit_headers}]
    if without_headers:
        missing = sorted(required & {name for record in without_headers for name in record.missing_rate_limit_headers})
        reasons.append(f"{len(without_headers)} of {len(rejected)} 429 answers lacked the rate-limit headers {missing}")
    server_errors = [record for record in errors if record.status >= 500]
    if server_errors:
        reasons.append(f"{len(server_errors)} server errors (5xx): {_status_breakdown(server_errors)}")
    other_errors = [record for record in errors if record.status < 500 and not record.hung]
    if other_errors:
        reasons.append(f"{len(other_errors)} requests failed other than by 429: {_status_breakdown(other_errors)}")
    if in_band:
        reasons.append(f"{len(in_band)} accepted requests ended with an error in the stream")
    if hung:
        reasons.append(
            f"{len(hung)} requests hung (unfinished {expectation.request_timeout_s:g} s after the test stopped "
            "or past the request timeout)"
        )

    sends = [record.t_send for record in records]
    span_s = max(sends) - min(sends) if sends else 0.0
    if expectation.mode == "above" and records:
        served = sum(record.ok for record in accepted)
        reasons += _above_limit_reasons(
            records,
            accepted_requests=len(accepted),
            accepted_tokens=accepted_tokens,
            served=served,
            span_s=span_s,
            expectation=expectation,
        )
    # imported here: the registry takes most of a second to load, and Locust's processes import this module
    # (for ttft_ms and itl_ms) without ever judging a rate limit
    from conformance.rules import RULES

    rule = RULES[RATE_LIMIT_RULE_ID]
    return RateLimitResult(
        **result, verdict="fail" if reasons else "pass", reasons=reasons, rule_id=rule.rule_id, source=rule.source
    )


def summarize(
    records: Sequence[RequestRecord],
    *,
    endpoint: str,
    scenario: str,
    users: int,
    window: RunWindow | None = None,
    rate_limit: RateLimitExpectation | None = None,
    sample_cap: int = SAMPLE_CAP,
    warmup_s: float = 0.0,
    objectives: Sequence[ObjectiveResult] = (),
    goodput: Goodput | None = None,
    server_metrics: ServerMetrics | None = None,
    checks: Sequence[CheckFinding] | None = None,
    checked_responses: int = 0,
    workload: WorkloadInfo | None = None,
) -> LoadSummary:
    """The load summary of a run, over the records sent after `warmup_s` seconds of `window`.

    `requests_per_s` counts successful requests (the throughput that was served); offered and rejected load
    are in `requests`, `rejected_429` and `rate_limit`. `output_tokens_per_s` is the completion tokens of
    successful requests with usage over the measured window. Objectives, goodput, server metrics and check
    findings are computed elsewhere (perf.summary) and carried as given.
    """
    full_window = window or RunWindow.of(records)
    measured, window = measured_window(records, full_window, warmup_s)
    duration = window.duration_s
    ok = [record for record in measured if record.ok]
    rejected = sum(record.rejected for record in measured)
    ttft = _present([ttft_ms(record) for record in ok])
    itl = _present([itl_ms(record) for record in ok])
    e2e = _present([e2e_ms(record) for record in ok])
    tokens = sum(record.completion_tokens or 0 for record in ok)
    return LoadSummary(
        schema_version=SUMMARY_SCHEMA_VERSION,
        endpoint=endpoint,
        scenario=scenario,
        started_at=datetime.fromtimestamp(window.start, tz=UTC),
        duration_s=duration,
        users=users,
        requests=len(measured),
        ok=len(ok),
        rejected_429=rejected,
        errors=len(measured) - len(ok) - rejected,
        requests_per_s=len(ok) / duration if duration > 0 else 0.0,
        output_tokens_per_s=tokens / duration if duration > 0 else 0.0,
        ttft_ms=latency_stats(ttft),
        itl_ms=latency_stats(itl),
        e2e_ms=latency_stats(e2e),
        samples=LatencySamples(
            ttft_ms=downsample(ttft, sample_cap),
            itl_ms=downsample(itl, sample_cap),
            e2e_ms=downsample(e2e, sample_cap),
        ),
        timeline=timeline(measured, window),
        rate_limit=None if rate_limit is None else rate_limit_verdict(measured, rate_limit, window),
        warmup_s=warmup_s,
        warmup_requests=len(records) - len(measured),
        objectives=list(objectives),
        goodput=goodput,
        server_metrics=server_metrics,
        checks=None if checks is None else list(checks),
        checked_responses=checked_responses,
        workload=workload,
        turns=turn_stats(ok),
    )


def turn_stats(records: Sequence[RequestRecord]) -> list[TurnStats] | None:
    """Figures per conversation turn of successful records; None when no record belongs to a conversation."""
    by_turn: dict[int, list[RequestRecord]] = {}
    for record in records:
        if record.turn is not None:
            by_turn.setdefault(record.turn, []).append(record)
    if not by_turn:
        return None
    stats = []
    for turn, turn_records in sorted(by_turn.items()):
        prompts = [record.prompt_tokens for record in turn_records if record.prompt_tokens is not None]
        stats.append(
            TurnStats(
                turn=turn,
                requests=len(turn_records),
                prompt_tokens_mean=sum(prompts) / len(prompts) if prompts else None,
                ttft_ms=latency_stats(_present([ttft_ms(record) for record in turn_records])),
                e2e_ms=latency_stats(_present([e2e_ms(record) for record in turn_records])),
            )
        )
    return stats


LATE_AFTER_S: Final = 0.1
"""Trace replay: a request sent this long after its recorded time was late (every user was busy)."""


def late_requests(records: Sequence[RequestRecord]) -> int:
    """Trace replay: requests sent more than LATE_AFTER_S after the trace said."""
    return sum(record.t_due is not None and record.t_send - record.t_due > LATE_AFTER_S for record in records)
