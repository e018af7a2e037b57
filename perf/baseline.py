"""Performance baselines: save a run's gate metrics, and compare a later run's against them within a tolerance.

Gate metrics: median TTFT, p95 end-to-end latency, output tokens/s, requests/s and error rate. Only a move in
the worse direction beyond the tolerance fails; improvements are shown but pass.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

__all__ = [
    "BASELINE_KIND",
    "ERROR_RATE_FLOOR",
    "GATES",
    "BaselineError",
    "Comparison",
    "Gate",
    "Row",
    "compare",
    "format_comparison",
    "gate_metrics",
    "load_baseline",
    "parse_tolerance",
    "save_baseline",
]

BASELINE_KIND: Final = "llamacert-load-baseline"
_SCHEMA_VERSION: Final = 1
ERROR_RATE_FLOOR: Final = 0.001
"""An error rate may rise by this much (0.1 percentage point) whatever the tolerance, so a baseline with no
errors does not fail on one error in thousands of requests."""


class BaselineError(ValueError):
    """A baseline file that cannot be read, or a tolerance that makes no sense."""


@dataclass(frozen=True)
class Gate:
    """One gate metric: where it comes from in a load summary and which direction is better."""

    name: str
    label: str
    unit: str
    better: Literal["lower", "higher"]


GATES: Final = (
    Gate("ttft_p50_ms", "median TTFT", "ms", "lower"),
    Gate("e2e_p95_ms", "p95 end-to-end latency", "ms", "lower"),
    Gate("output_tokens_per_s", "output tokens/s", "tokens/s", "higher"),
    Gate("requests_per_s", "requests/s", "requests/s", "higher"),
    Gate("error_rate", "error rate", "", "lower"),
)


def parse_tolerance(text: str) -> float:
    """`10%` or `0.1` -> 0.1."""
    value = text.strip()
    try:
        tolerance = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise BaselineError(f"tolerance {text!r}: expected e.g. 10% or 0.1") from None
    if not 0 <= tolerance < 10 or math.isnan(tolerance):
        raise BaselineError(f"tolerance {text!r} is out of range")
    return tolerance


def gate_metrics(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """The gate metrics of a load summary; None where the run has no such figure (e.g. TTFT without streaming)."""
    ttft, e2e = summary.get("ttft_ms"), summary.get("e2e_ms")
    requests = summary["requests"]
    return {
        "ttft_p50_ms": ttft["p50"] if ttft else None,
        "e2e_p95_ms": e2e["p95"] if e2e else None,
        "output_tokens_per_s": summary["output_tokens_per_s"],
        "requests_per_s": summary["requests_per_s"],
        "error_rate": summary["errors"] / requests if requests else None,
    }


def save_baseline(path: Path, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Write the summary's gate metrics (with what they were measured on) to `path`."""
    baseline = {
        "kind": BASELINE_KIND,
        "schema_version": _SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(),
        "endpoint": summary["endpoint"],
        "scenario": summary["scenario"],
        "users": summary["users"],
        "duration_s": summary["duration_s"],
        "metrics": gate_metrics(summary),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(baseline, indent=2) + "\n", encoding="utf-8")
    return baseline


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        baseline = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise BaselineError(f"baseline {path}: {error}") from None
    if not isinstance(baseline, dict) or baseline.get("kind") != BASELINE_KIND:
        raise BaselineError(f"baseline {path}: not a llamacert load baseline (write one with --save-baseline)")
    if baseline.get("schema_version") != _SCHEMA_VERSION:
        raise BaselineError(f"baseline {path}: schema_version {baseline.get('schema_version')!r} is not supported")
    return baseline


@dataclass(frozen=True)
class Row:
    """One gate metric's comparison."""

    gate: Gate
    baseline: float | None
    current: float | None
    limit: float | None
    status: Literal["ok", "improved", "regressed", "n/a"]

    @property
    def change(self) -> float | None:
        if self.baseline is None or self.current is None or self.baseline == 0:
            return None
        return (self.current - self.baseline) / self.baseline


@dataclass(frozen=True)
class Comparison:
    """A run's gate metrics against a baseline's."""

    rows: tuple[Row, ...]
    tolerance: float
    warnings: tuple[str, ...]

    @property
    def regressed(self) -> bool:
        return any(row.status == "regressed" for row in self.rows)


def _limit(gate: Gate, baseline: float, tolerance: float) -> float:
    if gate.name == "error_rate":
        return baseline * (1 + tolerance) + ERROR_RATE_FLOOR
    return baseline * (1 + tolerance) if gate.better == "lower" else baseline * (1 - tolerance)


def compare(baseline: Mapping[str, Any], summary: Mapping[str, Any], tolerance: float) -> Comparison:
    """Each gate metric of `summary` against the baseline's: regressed when worse than the tolerance allows."""
    saved, current = baseline["metrics"], gate_metrics(summary)
    rows = []
    for gate in GATES:
        old, new = saved.get(gate.name), current[gate.name]
        if old is None or new is None:
            rows.append(Row(gate, old, new, None, "n/a"))
            continue
        limit = _limit(gate, old, tolerance)
        worse = new > limit if gate.better == "lower" else new < limit
        better = new < old * (1 - tolerance) if gate.better == "lower" else new > old * (1 + tolerance)
        rows.append(Row(gate, old, new, limit, "regressed" if worse else "improved" if better else "ok"))
    warnings = tuple(
        f"baseline {key} {baseline.get(key)!r} differs from this run's {summary.get(key)!r}"
        for key in ("scenario", "endpoint", "users")
        if baseline.get(key) != summary.get(key)
    )
    return Comparison(tuple(rows), tolerance, warnings)


def _format(value: float | None, gate: Gate) -> str:
    if value is None:
        return "-"
    if gate.name == "error_rate":
        return f"{value:.2%}"
    return f"{value:,.1f} {gate.unit}"


def format_comparison(comparison: Comparison) -> str:
    """A plain-text table of the comparison, regressions marked."""
    header = ("metric", "baseline", "current", "change", f"limit (±{comparison.tolerance:.0%})", "status")
    lines = [header]
    for row in comparison.rows:
        change = "-" if row.change is None else f"{row.change:+.1%}"
        status = "REGRESSED" if row.status == "regressed" else row.status
        limit = _format(row.limit, row.gate)
        bound = "-" if row.limit is None else ("≤ " if row.gate.better == "lower" else "≥ ") + limit
        lines.append(
            (row.gate.label, _format(row.baseline, row.gate), _format(row.current, row.gate), change, bound, status)
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    text += [f"warning: {warning}" for warning in comparison.warnings]
    verdict = "regressed beyond tolerance" if comparison.regressed else "within tolerance"
    text.append(f"baseline comparison: {verdict}")
    return "\n".join(text)
