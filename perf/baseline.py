"""Performance baselines: save a run's gate metrics, and compare a later run's against them.

The metrics, the tolerance (a percentage) and the judgement are spec.load_regression's, shared with
`llamacert compare` and the report. A baseline saved from `--runs N` keeps each metric's median and range, so a
later comparison allows for the spread measured then as well as now. Only a move in the worse direction beyond
the allowance fails; improvements are shown but pass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from spec.load_regression import GATE_METRICS, MetricValue, MetricVerdict, judge_all, metric_values
from spec.load_summary import LoadSummary

__all__ = [
    "BASELINE_KIND",
    "BaselineError",
    "Comparison",
    "compare",
    "format_comparison",
    "load_baseline",
    "save_baseline",
]

BASELINE_KIND: Final = "llamacert-load-baseline"
_SCHEMA_VERSION: Final = 2


class BaselineError(ValueError):
    """A baseline file that cannot be read."""


@dataclass(frozen=True)
class Baseline:
    """A saved baseline: what it was measured on, and each gate metric's value (median and range)."""

    endpoint: str
    scenario: str
    users: int
    metrics: dict[str, MetricValue | None]


def save_baseline(path: Path, summary: LoadSummary) -> dict[str, Any]:
    """Write the summary's gate metrics (with what they were measured on) to `path`."""
    metrics = {
        name: None if value is None else {"median": value.median, "low": value.low, "high": value.high}
        for name, value in metric_values(summary).items()
    }
    baseline = {
        "kind": BASELINE_KIND,
        "schema_version": _SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(),
        "endpoint": summary.endpoint,
        "scenario": summary.scenario,
        "users": summary.users,
        "duration_s": summary.duration_s,
        "runs": summary.runs.runs if summary.runs else 1,
        "metrics": metrics,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(baseline, indent=2) + "\n", encoding="utf-8")
    return baseline


def _value(raw: Any, name: str, version: int) -> MetricValue | None:
    if raw is None:
        return None
    if version == 1 and isinstance(raw, int | float):
        # version 1 kept one value per metric, and the error rate as a fraction
        return MetricValue.single(float(raw) * (100 if name == "error_rate" else 1))
    if isinstance(raw, Mapping) and all(isinstance(raw.get(key), int | float) for key in ("median", "low", "high")):
        return MetricValue(float(raw["median"]), float(raw["low"]), float(raw["high"]))
    raise BaselineError(f"metric {name}: expected median, low and high, got {raw!r}")


def load_baseline(path: Path) -> Baseline:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise BaselineError(f"baseline {path}: {error}") from None
    if not isinstance(data, dict) or data.get("kind") != BASELINE_KIND:
        raise BaselineError(f"baseline {path}: not a llamacert load baseline (write one with --save-baseline)")
    version = data.get("schema_version")
    if version not in (1, _SCHEMA_VERSION):
        raise BaselineError(f"baseline {path}: schema_version {version!r} is not supported")
    raw = data.get("metrics")
    if not isinstance(raw, dict):
        raise BaselineError(f"baseline {path}: no metrics")
    known = {metric.name for metric in GATE_METRICS}
    try:
        metrics = {name: _value(value, name, version) for name, value in raw.items() if name in known}
    except BaselineError as error:
        raise BaselineError(f"baseline {path}: {error}") from None
    return Baseline(str(data.get("endpoint")), str(data.get("scenario")), int(data.get("users") or 0), metrics)


@dataclass(frozen=True)
class Comparison:
    """A run's gate metrics against a baseline's."""

    verdicts: tuple[MetricVerdict, ...]
    tolerance_pct: float
    warnings: tuple[str, ...]

    @property
    def regressed(self) -> bool:
        return any(verdict.status == "regressed" for verdict in self.verdicts)


def compare(baseline: Baseline, summary: LoadSummary, tolerance_pct: float) -> Comparison:
    """Each gate metric of `summary` against the baseline's (see spec.load_regression.judge_metric)."""
    verdicts = judge_all(baseline.metrics, metric_values(summary), tolerance_pct)
    current = {"scenario": summary.scenario, "endpoint": summary.endpoint, "users": summary.users}
    saved = {"scenario": baseline.scenario, "endpoint": baseline.endpoint, "users": baseline.users}
    warnings = tuple(
        f"baseline {key} {saved[key]!r} differs from this run's {current[key]!r}"
        for key in saved
        if saved[key] != current[key]
    )
    return Comparison(tuple(verdicts), tolerance_pct, warnings)


def _format(value: MetricValue | None, unit: str) -> str:
    if value is None:
        return "-"
    spread = f" (range {value.spread:,.1f})" if value.spread else ""
    return f"{value.median:,.2f}{unit and ' ' + unit}{spread}"


def format_comparison(comparison: Comparison) -> str:
    """A plain-text table of the comparison, regressions marked."""
    header = ("metric", "baseline", "current", "change", "worst allowed", "status")
    lines = [header]
    for verdict in comparison.verdicts:
        if verdict.baseline is None and verdict.current is None:
            continue
        unit = verdict.metric.unit
        change = "-" if verdict.change_pct is None else f"{verdict.change_pct:+.1f}%"
        status = "REGRESSED" if verdict.status == "regressed" else verdict.status
        bound = verdict.bound
        worst = "-" if bound is None else ("≤ " if verdict.metric.better == "lower" else "≥ ") + f"{bound:,.2f}"
        row = (verdict.metric.label, _format(verdict.baseline, unit), _format(verdict.current, unit), change, worst)
        lines.append((*row, status))
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    text += [f"warning: {warning}" for warning in comparison.warnings]
    verdict_text = "regressed" if comparison.regressed else "no regression"
    text.append(
        f"baseline comparison (tolerance {comparison.tolerance_pct:g}% or the run-to-run spread): {verdict_text}"
    )
    return "\n".join(text)
