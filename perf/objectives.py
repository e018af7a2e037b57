"""Service-level objectives of a load run, and goodput: which requests and which run met them.

`--slo ttft_p95=500ms,itl_p95=50ms,e2e_p99=8s,errors=1%` names run-level objectives (a percentile of a latency,
or the error rate); a latency without a percentile (`ttft=2s`) is a per-request threshold. Goodput counts the
successful requests that met every per-request threshold; each percentile objective whose metric has no
threshold of its own lends its threshold to goodput (as vLLM's and GuideLLM's goodput do), so
`--slo ttft_p95=500ms` alone makes goodput the requests with TTFT at most 500 ms.
A non-streamed request's first token arrives with its last byte, so its TTFT is its end-to-end latency; it
has no inter-token latency, so an ITL threshold does not apply to it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

import numpy as np

from perf.metrics import e2e_ms, itl_ms, ttft_ms
from perf.records import RequestRecord
from spec.load_summary import Goodput, ObjectiveResult

__all__ = [
    "LatencyMetric",
    "Objective",
    "Objectives",
    "evaluate_objectives",
    "goodput",
    "parse_objectives",
    "request_latency_ms",
]

LatencyMetric = Literal["ttft", "itl", "e2e"]
_LATENCY_METRICS: Final = get_args(LatencyMetric)
_NAME: Final = re.compile(r"^(?P<metric>[a-z][a-z0-9]*?)(?:_p(?P<percentile>\d+(?:\.\d+)?))?$")
_DURATION: Final = re.compile(r"^(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|s)$")
_LABELS: Final = {"ttft": "TTFT", "itl": "inter-token latency", "e2e": "end-to-end latency"}


@dataclass(frozen=True)
class Objective:
    """One run-level objective: `percentile` of a latency at most `threshold` ms, or the error rate at most it."""

    name: str
    metric: LatencyMetric | Literal["errors"]
    percentile: float | None
    threshold: float


@dataclass(frozen=True)
class Objectives:
    """Run-level objectives and per-request thresholds (ms), as given."""

    objectives: tuple[Objective, ...] = ()
    per_request_ms: tuple[tuple[LatencyMetric, float], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.objectives or self.per_request_ms)

    @property
    def goodput_thresholds_ms(self) -> dict[str, float]:
        """Per-request thresholds for goodput: the explicit ones, else those of the percentile objectives."""
        thresholds: dict[str, float] = {}
        for objective in self.objectives:
            if objective.metric != "errors":
                # the tightest objective on a metric is the one every request must meet
                earlier = thresholds.get(objective.metric, objective.threshold)
                thresholds[objective.metric] = min(earlier, objective.threshold)
        thresholds.update(dict(self.per_request_ms))
        return thresholds

    @property
    def max_error_rate(self) -> float | None:
        return next((objective.threshold for objective in self.objectives if objective.metric == "errors"), None)

    def __str__(self) -> str:
        parts = [_format(objective) for objective in self.objectives]
        parts += [f"{metric}={value:g}ms" for metric, value in self.per_request_ms]
        return ",".join(parts)


def _format(objective: Objective) -> str:
    if objective.metric == "errors":
        return f"errors={objective.threshold * 100:g}%"
    return f"{objective.name}={objective.threshold:g}ms"


def _milliseconds(text: str, name: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"--slo {name}={text}: expected a duration with its unit, e.g. 500ms or 8s")
    number = float(match["number"])
    return number * 1000 if match["unit"] == "s" else number


def parse_objectives(text: str) -> Objectives:
    """`ttft_p95=500ms,itl_p95=50ms,e2e_p99=8s,errors=1%,ttft=2s` -> objectives and per-request thresholds."""
    objectives: list[Objective] = []
    per_request: dict[LatencyMetric, float] = {}
    for part in (part.strip() for part in text.split(",")):
        if not part:
            continue
        name, separator, value = part.partition("=")
        name = name.strip()
        match = _NAME.match(name)
        if not separator or match is None:
            raise ValueError(f"--slo {part!r}: expected NAME=VALUE, e.g. ttft_p95=500ms or errors=1%")
        metric, percentile_text = match["metric"], match["percentile"]
        if metric == "errors":
            if percentile_text is not None or not value.strip().endswith("%"):
                raise ValueError(f"--slo {part!r}: the error-rate objective is written errors=1%")
            try:
                rate = float(value.strip().removesuffix("%")) / 100
            except ValueError:
                raise ValueError(f"--slo {part!r}: not a percentage") from None
            if not 0 <= rate <= 1:
                raise ValueError(f"--slo {part!r}: a percentage from 0% to 100%")
            objectives.append(Objective(name, "errors", None, rate))
            continue
        if metric not in _LATENCY_METRICS:
            raise ValueError(f"--slo {part!r}: the metric must be one of {', '.join(_LATENCY_METRICS)} or errors")
        threshold = _milliseconds(value, name)
        if percentile_text is None:
            per_request[metric] = threshold  # type: ignore[index]  # checked against the Literal above
            continue
        percentile = float(percentile_text)
        if not 0 < percentile <= 100:
            raise ValueError(f"--slo {part!r}: the percentile must be above 0 and at most 100")
        objectives.append(Objective(name, metric, percentile, threshold))  # type: ignore[arg-type]  # checked
    if not objectives and not per_request:
        raise ValueError("--slo: no objectives given")
    names = [objective.name for objective in objectives]
    if len(set(names)) != len(names):
        raise ValueError("--slo: an objective is given twice")
    return Objectives(tuple(objectives), tuple(per_request.items()))


def request_latency_ms(record: RequestRecord, metric: LatencyMetric) -> float | None:
    """One request's TTFT, ITL or end-to-end latency, as objectives read it (see the module docstring)."""
    if metric == "ttft":
        return ttft_ms(record) if record.stream else e2e_ms(record)
    if metric == "itl":
        return itl_ms(record)
    return e2e_ms(record)


def _meets(record: RequestRecord, thresholds: dict[str, float]) -> bool:
    if not record.ok:
        return False
    for metric, limit in thresholds.items():
        value = request_latency_ms(record, metric)  # type: ignore[arg-type]  # keys are LatencyMetric names
        if value is None:
            # no ITL for a one-token or non-streamed answer: the threshold cannot be missed
            if metric == "itl":
                continue
            return False
        if value > limit:
            return False
    return True


def goodput(records: Sequence[RequestRecord], objectives: Objectives, duration_s: float) -> Goodput:
    """Requests/s and output tokens/s of the successful requests that met every per-request threshold."""
    thresholds = objectives.goodput_thresholds_ms
    good = [record for record in records if _meets(record, thresholds)]
    tokens = sum(record.completion_tokens or 0 for record in good)
    return Goodput(
        thresholds_ms=thresholds,
        good_requests=len(good),
        requests_per_s=len(good) / duration_s if duration_s > 0 else 0.0,
        output_tokens_per_s=tokens / duration_s if duration_s > 0 else 0.0,
    )


def evaluate_objectives(records: Sequence[RequestRecord], objectives: Objectives) -> list[ObjectiveResult]:
    """Each run-level objective over the records (the measured window's), met or not, in words."""
    results: list[ObjectiveResult] = []
    for objective in objectives.objectives:
        if objective.metric == "errors":
            rejected = sum(record.rejected for record in records)
            errors = len(records) - sum(record.ok for record in records) - rejected
            measured = errors / len(records) if records else None
            met = measured is not None and measured <= objective.threshold
            shown = "no requests" if measured is None else f"{measured:.2%}"
            text = f"error rate at most {objective.threshold:.2%}: measured {shown}"
        else:
            metric: LatencyMetric = objective.metric
            values = [
                value
                for value in (request_latency_ms(record, metric) for record in records if record.ok)
                if value is not None
            ]
            percentile = objective.percentile or 100.0
            measured = float(np.percentile(values, percentile)) if values else None
            met = measured is not None and measured <= objective.threshold
            shown = "no request measured it" if measured is None else f"{measured:,.1f} ms"
            text = f"p{percentile:g} {_LABELS[metric]} at most {objective.threshold:,.0f} ms: measured {shown}"
        results.append(
            ObjectiveResult(
                name=objective.name,
                threshold=objective.threshold,
                measured=measured,
                met=met,
                text=text + ("" if met else " (MISSED)"),
            )
        )
    return results
