"""The load summary: the one typed hand-off from a load run (perf/) to its readers (reports/, baselines).

perf.metrics builds a `LoadSummary`, the runner writes it as load-summary.json, and the report reads the same
model back; neither side re-declares its fields. Version 2 added warm-up, objectives, goodput, server-side
metrics, capacity search and repeated-run statistics; version 1 files (none of those) still read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from spec.profiles import RATE_LIMIT_RULE_ID

__all__ = [
    "LOAD_SUMMARY_SCHEMA_VERSION",
    "READABLE_LOAD_SUMMARY_VERSIONS",
    "CapacitySearch",
    "CapacityStep",
    "CheckExample",
    "CheckFinding",
    "CheckOutcome",
    "Goodput",
    "LatencySamples",
    "LatencyStats",
    "LoadSummary",
    "MetricRuns",
    "ObjectiveResult",
    "RateLimitResult",
    "RunStatistics",
    "ServerMetrics",
    "ServerSeries",
    "TimelineBucket",
    "TurnStats",
    "WorkloadInfo",
]

LOAD_SUMMARY_SCHEMA_VERSION: Final = 2
READABLE_LOAD_SUMMARY_VERSIONS: Final = (1, 2)


def _as_utc(value: datetime) -> datetime:
    # Producers may write times without an offset; reading them as UTC keeps all times comparable.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Timestamp = Annotated[datetime, AfterValidator(_as_utc)]


class _SummaryModel(BaseModel):
    """Unknown fields are an error, so a drifting producer fails loudly; NaN and infinity have no JSON spelling."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LatencyStats(_SummaryModel):
    """Summary statistics of one latency, in milliseconds."""

    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float


class LatencySamples(_SummaryModel):
    """A capped sample of per-request latencies, in milliseconds, kept for plots."""

    ttft_ms: list[float]
    itl_ms: list[float]
    e2e_ms: list[float]


class TimelineBucket(_SummaryModel):
    """One second of a load run."""

    t: float = Field(description="Seconds since the measured window started.")
    accepted: int = Field(ge=0)
    rejected: int = Field(ge=0)
    output_tokens: int = Field(ge=0)


class RateLimitResult(_SummaryModel):
    """Whether the endpoint enforced its rate limits, as judged by the load test."""

    limit_rpm: int | None
    limit_tpm: int | None
    offered_rpm: float
    accepted_rpm: float
    accepted_tpm: float
    verdict: Literal["pass", "fail"]
    reasons: list[str]
    rule_id: str = Field(default=RATE_LIMIT_RULE_ID, description="The conformance rule the verdict judges (D26).")
    source: str | None = Field(default=None, description="That rule's source, resolved from the spec.")


class ObjectiveResult(_SummaryModel):
    """One service-level objective (`ttft_p95=500ms`, `errors=1%`) and whether the run met it."""

    name: str = Field(description="As written on the command line, e.g. ttft_p95.")
    threshold: float = Field(description="Milliseconds for a latency, a fraction for the error rate.")
    measured: float | None = Field(description="None when no request measured it (which misses the objective).")
    met: bool
    text: str = Field(description="The objective and the measurement in words.")


class Goodput(_SummaryModel):
    """Throughput of the requests that met every per-request threshold (and succeeded)."""

    thresholds_ms: dict[str, float] = Field(description="Per-request thresholds by metric (ttft, itl, e2e).")
    good_requests: int = Field(ge=0)
    requests_per_s: float
    output_tokens_per_s: float


class ServerSeries(_SummaryModel):
    """One server-side series scraped from /metrics during the run, on the run's time axis."""

    name: str = Field(description="What it shows, e.g. 'running requests'.")
    unit: str
    source: str = Field(description="The Prometheus metric (and how it was derived) the points come from.")
    t: list[float] = Field(description="Seconds since the measured window started (negative: during warm-up).")
    values: list[float]


class ServerMetrics(_SummaryModel):
    """What scraping the endpoint's Prometheus /metrics during the run found."""

    url: str
    interval_s: float
    scrapes: int = Field(ge=0)
    failed_scrapes: int = Field(ge=0)
    series: list[ServerSeries]
    note: str | None = None


class CheckExample(_SummaryModel):
    """The first sampled exchange that broke a rule: why, and what was sent and answered."""

    message: str
    request: str = Field(description="Method, path and body of the request (the key left out).")
    response: str = Field(description="Status and an excerpt of the body or the stream's events.")


CheckOutcome = Literal["passed", "failed", "not run"]


class CheckFinding(_SummaryModel):
    """One conformance rule over the responses sampled under load (`llamacert load --check`)."""

    rule_id: str
    title: str
    severity: Literal["required", "advisory"]
    outcome: CheckOutcome = Field(
        description="failed: some sampled response broke it; passed: it judged some and none broke it; "
        "not run: it judged none (never counted as passed)."
    )
    passed: int = Field(ge=0, description="Sampled responses it judged and found correct.")
    failed: int = Field(ge=0, description="Sampled responses that broke it.")
    reason: str | None = Field(default=None, description="Why it did not run (outcome 'not run' only).")
    first_failure: CheckExample | None = None


class CapacityStep(_SummaryModel):
    """One probe of a capacity search: an open-loop rate, what it achieved, and whether the objectives held."""

    offered_rate: float = Field(description="Requests/s offered (open loop).")
    achieved_rate: float = Field(description="Requests/s sent: below offered when the generator could not keep up.")
    requests_per_s: float
    goodput_requests_per_s: float | None
    error_rate: float
    ttft_p95_ms: float | None
    itl_p95_ms: float | None
    e2e_p95_ms: float | None
    held: bool = Field(description="Objectives met, errors under the bound, published limits respected.")
    reasons: list[str] = Field(description="Why it did not hold; empty when it held.")
    stopped_early: bool = Field(default=False, description="Cut short: over-saturation was already evident.")


class CapacitySearch(_SummaryModel):
    """Bracketing and bisection over open-loop rate: the highest rate at which everything held."""

    objectives: list[str]
    max_error_rate: float
    limit_rpm: int | None
    limit_tpm: int | None
    steps: list[CapacityStep]
    capacity_rate: float | None = Field(description="Highest offered rate that held; None when the lowest failed.")
    capacity_goodput: float | None = Field(description="Goodput (requests/s) at that rate.")
    limiting: str | None = Field(description="What failed first above it: an objective, errors or a limit.")
    resolution: float = Field(description="The bracket's width when the search ended, requests/s.")


class TurnStats(_SummaryModel):
    """Multi-turn conversations: the successful requests of one turn (later turns carry the growing history)."""

    turn: int = Field(ge=1)
    requests: int = Field(ge=0)
    prompt_tokens_mean: float | None = Field(description="From usage; None when no request of the turn had usage.")
    ttft_ms: LatencyStats | None
    e2e_ms: LatencyStats | None


class WorkloadInfo(_SummaryModel):
    """What was sent, beyond the request mix: the workload kind and how faithful its prompt lengths are."""

    kind: Literal["synthetic", "prompt-file", "shared-prefix", "multi-turn", "trace"]
    prompt_lengths: str = Field(description="'exact' or 'approximate: why'; usage has the counts the server saw.")
    description: str = Field(default="", description="The workload's settings in words.")
    late_requests: int | None = Field(
        default=None, ge=0, description="Trace replay: requests sent over 100 ms after their recorded time."
    )


class MetricRuns(_SummaryModel):
    """One gate metric over repeated runs."""

    median: float
    low: float
    high: float
    values: list[float]


class RunStatistics(_SummaryModel):
    """The scenario ran `runs` times: each gate metric's median and spread (the summary itself is the last run)."""

    runs: int = Field(ge=2)
    metrics: dict[str, MetricRuns]


class LoadSummary(_SummaryModel):
    """One load scenario's summary (load-summary.json)."""

    schema_version: Literal[1, 2] = LOAD_SUMMARY_SCHEMA_VERSION
    endpoint: str
    scenario: str
    started_at: Timestamp
    duration_s: float = Field(ge=0, description="The measured window: warm-up excluded.")
    users: int = Field(ge=0)
    requests: int = Field(ge=0)
    ok: int = Field(ge=0)
    rejected_429: int = Field(ge=0)
    errors: int = Field(ge=0)
    requests_per_s: float = Field(description="Successful requests per second.")
    output_tokens_per_s: float
    ttft_ms: LatencyStats | None = Field(description="None when no request streamed.")
    itl_ms: LatencyStats | None = Field(description="None when no request streamed.")
    e2e_ms: LatencyStats | None = Field(description="None when no request completed.")
    samples: LatencySamples
    timeline: list[TimelineBucket]
    rate_limit: RateLimitResult | None
    warmup_s: float = Field(default=0.0, ge=0, description="Seconds at the start left out of every figure.")
    warmup_requests: int = Field(default=0, ge=0, description="Requests sent during the warm-up, not counted.")
    objectives: list[ObjectiveResult] = Field(default_factory=list)
    goodput: Goodput | None = None
    server_metrics: ServerMetrics | None = None
    checks: list[CheckFinding] | None = Field(
        default=None, description="Every conformance rule over the sampled responses; None: responses were not checked."
    )
    checked_responses: int = Field(default=0, ge=0, description="Responses sampled and judged (--check).")
    capacity: CapacitySearch | None = None
    runs: RunStatistics | None = None
    workload: WorkloadInfo | None = None
    turns: list[TurnStats] | None = Field(default=None, description="Multi-turn runs: figures per turn.")

    @property
    def error_rate(self) -> float:
        """Errors (not 429 rejections) per request sent."""
        return self.errors / self.requests if self.requests else 0.0

    @property
    def objectives_met(self) -> bool:
        return all(objective.met for objective in self.objectives)

    @property
    def missed_objectives(self) -> list[ObjectiveResult]:
        return [objective for objective in self.objectives if not objective.met]

    @property
    def failed_checks(self) -> list[CheckFinding]:
        """Rules some sampled response broke, required and advisory."""
        return [finding for finding in self.checks or () if finding.outcome == "failed"]

    @property
    def checks_failed(self) -> bool:
        """A required rule broke under load (an advisory one is reported, and does not fail the run)."""
        return any(finding.severity == "required" for finding in self.failed_checks)
