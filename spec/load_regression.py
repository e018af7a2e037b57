"""The one comparison engine for load results: one metric table, one tolerance meaning, one judgement.

`llamacert load --baseline`, `llamacert compare` and the report all judge with `judge_metric`. A tolerance is
always a percentage of the baseline (`10%` or `10`; a bare number under 1 is refused as ambiguous). With
repeated runs (`--runs N`) a metric carries its median and its run-to-run range, and a move counts only when
it is larger than both the tolerance and the range measured on either side, so a noisy machine does not flap.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from spec.load_summary import LoadSummary, MetricRuns, RunStatistics

__all__ = [
    "DEFAULT_TOLERANCE_PCT",
    "GATE_METRICS",
    "GateMetric",
    "MetricStatus",
    "MetricValue",
    "MetricVerdict",
    "ToleranceError",
    "judge_all",
    "judge_metric",
    "metric_values",
    "parse_tolerance_pct",
    "run_statistics",
]

DEFAULT_TOLERANCE_PCT: Final = 10.0

Better = Literal["lower", "higher"]
MetricStatus = Literal["regressed", "improved", "unchanged", "n/a"]


class ToleranceError(ValueError):
    """A tolerance that is not a percentage of 0 or more."""


def parse_tolerance_pct(text: str | float) -> float:
    """A tolerance in percent: `10%` or `10` -> 10.0; `0.5%` -> 0.5. A bare `0.1` is refused: 0.1 % or 10 %?"""
    raw = str(text).strip()
    number = raw.removesuffix("%").strip()
    try:
        value = float(number)
    except ValueError:
        raise ToleranceError(f"tolerance {raw!r}: expected a percentage such as 10%") from None
    if math.isnan(value) or value < 0 or value > 1000:
        raise ToleranceError(f"tolerance {raw!r}: expected a percentage between 0% and 1000%")
    if not raw.endswith("%") and 0 < value < 1:
        raise ToleranceError(
            f"tolerance {raw!r} is ambiguous: write {value:g}% or {value * 100:g}% (the tolerance is a percentage)"
        )
    return value


@dataclass(frozen=True)
class MetricValue:
    """A metric of one run (low == median == high) or the median and range of repeated runs."""

    median: float
    low: float
    high: float

    @classmethod
    def single(cls, value: float) -> MetricValue:
        return cls(value, value, value)

    @property
    def spread(self) -> float:
        return self.high - self.low


@dataclass(frozen=True)
class GateMetric:
    """One row of the metric table: how to read it from a summary, its unit, and which direction is better."""

    name: str
    label: str
    unit: str
    better: Better
    read: Callable[[LoadSummary], float | None]
    floor: float = 0.0
    """An absolute move this small never counts (0.1 percentage point of errors: one error in thousands)."""


GATE_METRICS: Final[tuple[GateMetric, ...]] = (
    GateMetric("ttft_p50_ms", "median TTFT", "ms", "lower", lambda s: s.ttft_ms.p50 if s.ttft_ms else None),
    GateMetric("ttft_p95_ms", "p95 TTFT", "ms", "lower", lambda s: s.ttft_ms.p95 if s.ttft_ms else None),
    GateMetric("itl_p50_ms", "median inter-token latency", "ms", "lower", lambda s: s.itl_ms.p50 if s.itl_ms else None),
    GateMetric("e2e_p95_ms", "p95 end-to-end latency", "ms", "lower", lambda s: s.e2e_ms.p95 if s.e2e_ms else None),
    GateMetric("output_tokens_per_s", "output tokens/s", "tokens/s", "higher", lambda s: s.output_tokens_per_s),
    GateMetric("requests_per_s", "requests/s", "requests/s", "higher", lambda s: s.requests_per_s),
    GateMetric(
        "goodput_requests_per_s",
        "goodput requests/s",
        "requests/s",
        "higher",
        lambda s: s.goodput.requests_per_s if s.goodput else None,
    ),
    GateMetric(
        "error_rate", "error rate", "%", "lower", lambda s: 100 * s.error_rate if s.requests else None, floor=0.1
    ),
)
_BY_NAME: Final = {metric.name: metric for metric in GATE_METRICS}


def run_statistics(summaries: Sequence[LoadSummary]) -> RunStatistics:
    """Median and range of every gate metric over repeated runs of one scenario."""
    metrics: dict[str, MetricRuns] = {}
    for metric in GATE_METRICS:
        values = [value for value in (metric.read(summary) for summary in summaries) if value is not None]
        if values:
            metrics[metric.name] = MetricRuns(
                median=statistics.median(values), low=min(values), high=max(values), values=values
            )
    return RunStatistics(runs=len(summaries), metrics=metrics)


def metric_values(summary: LoadSummary) -> dict[str, MetricValue | None]:
    """Each gate metric of a summary: the repeated runs' median and range when it has them, else the one value."""
    values: dict[str, MetricValue | None] = {}
    for metric in GATE_METRICS:
        runs = summary.runs.metrics.get(metric.name) if summary.runs else None
        if runs is not None:
            values[metric.name] = MetricValue(runs.median, runs.low, runs.high)
        else:
            value = metric.read(summary)
            values[metric.name] = None if value is None else MetricValue.single(value)
    return values


@dataclass(frozen=True)
class MetricVerdict:
    """One metric judged: baseline and current, the margin a move had to exceed, and the outcome."""

    metric: GateMetric
    baseline: MetricValue | None
    current: MetricValue | None
    margin: float | None
    """How far the median may move in the worse direction before it counts: max(tolerance, spread, floor)."""
    status: MetricStatus

    @property
    def change_pct(self) -> float | None:
        if self.baseline is None or self.current is None or self.baseline.median == 0:
            return None
        return 100 * (self.current.median - self.baseline.median) / abs(self.baseline.median)

    @property
    def bound(self) -> float | None:
        """The worst median that still passes."""
        if self.baseline is None or self.margin is None:
            return None
        sign = 1 if self.metric.better == "lower" else -1
        return self.baseline.median + sign * self.margin


def judge_metric(
    name: str, baseline: MetricValue | None, current: MetricValue | None, tolerance_pct: float
) -> MetricVerdict:
    """Regressed when the median moved the worse way by more than the tolerance and the measured spread."""
    metric = _BY_NAME[name]
    if baseline is None or current is None:
        return MetricVerdict(metric, baseline, current, None, "n/a")
    margin = max(tolerance_pct / 100 * abs(baseline.median), baseline.spread, current.spread, metric.floor)
    worse_by = current.median - baseline.median if metric.better == "lower" else baseline.median - current.median
    status: MetricStatus = "regressed" if worse_by > margin else "improved" if -worse_by > margin else "unchanged"
    return MetricVerdict(metric, baseline, current, margin, status)


def judge_all(
    baseline: Mapping[str, MetricValue | None], current: Mapping[str, MetricValue | None], tolerance_pct: float
) -> list[MetricVerdict]:
    """Every gate metric of the table, in table order."""
    return [
        judge_metric(metric.name, baseline.get(metric.name), current.get(metric.name), tolerance_pct)
        for metric in GATE_METRICS
    ]
