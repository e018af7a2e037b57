"""Compare two reports: rules that newly fail or pass, load metrics that moved, and whether that is a regression.

A regression is a rule that newly fails, or a metric worse than before by more than the tolerance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from reports.model import LoadSection, Outcome, Report, VerdictStatus

__all__ = ["DEFAULT_TOLERANCE_PCT", "Comparison", "MetricChange", "RuleChange", "compare_reports", "format_comparison"]

DEFAULT_TOLERANCE_PCT = 10.0
_BAD_OUTCOMES: frozenset[Outcome | None] = frozenset({"fail", "error"})

Better = Literal["lower", "higher"]
MetricStatus = Literal["regressed", "improved", "unchanged", "n/a"]


class _Metric(NamedTuple):
    name: str
    better: Better
    read: Callable[[LoadSection], float | None]


_METRICS = (
    _Metric("median TTFT (ms)", "lower", lambda load: load.ttft_ms.p50 if load.ttft_ms else None),
    _Metric("p95 e2e latency (ms)", "lower", lambda load: load.e2e_ms.p95 if load.e2e_ms else None),
    _Metric("output tokens/s", "higher", lambda load: load.output_tokens_per_s),
    _Metric("requests/s", "higher", lambda load: load.requests_per_s),
    _Metric("error rate (%)", "lower", lambda load: 100 * load.error_rate if load.requests else None),
)


class _ComparisonModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleChange(_ComparisonModel):
    """A rule whose outcome moved between a bad one (fail, error) and a good or absent one."""

    rule_id: str
    title: str
    old: Outcome | None
    new: Outcome | None


class MetricChange(_ComparisonModel):
    """One load metric of one scenario, before and after."""

    scenario: str
    metric: str
    better: Better
    old: float | None
    new: float | None
    change_pct: float | None
    status: MetricStatus


class Comparison(_ComparisonModel):
    """What changed from an old report to a new one, judged with a tolerance in percent."""

    tolerance_pct: float
    old_verdict: VerdictStatus
    new_verdict: VerdictStatus
    newly_failing: list[RuleChange]
    newly_passing: list[RuleChange]
    metrics: list[MetricChange]
    notes: list[str]

    @property
    def regressions(self) -> list[str]:
        """Every reason the new report is a regression; empty when it is not one."""
        rules = [
            f"rule {change.rule_id} newly {change.new}s (was {change.old or 'not checked'})"
            for change in self.newly_failing
        ]
        metrics = [
            f"{change.scenario}: {change.metric} {_worse_by(change)}, beyond the {self.tolerance_pct:g}% tolerance"
            for change in self.metrics
            if change.status == "regressed"
        ]
        return rules + metrics

    @property
    def is_regression(self) -> bool:
        return bool(self.regressions)


def _worse_by(change: MetricChange) -> str:
    moved = f"{_number(change.old)} -> {_number(change.new)}"
    return f"went {moved}" if change.change_pct is None else f"moved {change.change_pct:+.1f}% ({moved})"


def _judge_metric(
    scenario: str, metric: _Metric, old: float | None, new: float | None, tolerance: float
) -> MetricChange:
    change_pct: float | None = None
    status: MetricStatus
    if old is None or new is None:
        status = "n/a"
    elif old == 0:
        # No percentage exists; any move away from zero counts in full (errors appearing is a regression).
        worse = new > old if metric.better == "lower" else new < old
        status = "unchanged" if new == old else "regressed" if worse else "improved"
    else:
        change_pct = 100 * (new - old) / abs(old)
        worse_pct = change_pct if metric.better == "lower" else -change_pct
        status = "regressed" if worse_pct > tolerance else "improved" if worse_pct < -tolerance else "unchanged"
    return MetricChange(
        scenario=scenario,
        metric=metric.name,
        better=metric.better,
        old=old,
        new=new,
        change_pct=change_pct,
        status=status,
    )


def _by_scenario(loads: Sequence[LoadSection]) -> dict[str, LoadSection]:
    """Loads by scenario name; a repeated name gets `#2`, `#3` so both runs are still compared."""
    keyed: dict[str, LoadSection] = {}
    for load in loads:
        key, number = load.scenario, 1
        while key in keyed:
            number += 1
            key = f"{load.scenario}#{number}"
        keyed[key] = load
    return keyed


def _outcomes(report: Report) -> dict[str, tuple[str, Outcome]] | None:
    if report.conformance is None:
        return None
    return {rule.rule_id: (rule.title, rule.outcome) for rule in report.conformance.rules}


def compare_reports(old: Report, new: Report, tolerance_pct: float = DEFAULT_TOLERANCE_PCT) -> Comparison:
    """What changed from `old` to `new`; a metric regresses when it is worse by more than `tolerance_pct` percent."""
    if tolerance_pct < 0:
        raise ValueError(f"the tolerance must not be negative, got {tolerance_pct}%")
    notes: list[str] = []
    newly_failing: list[RuleChange] = []
    newly_passing: list[RuleChange] = []
    old_rules, new_rules = _outcomes(old), _outcomes(new)
    if old_rules is None or new_rules is None:
        missing = " and ".join(name for name, rules in (("old", old_rules), ("new", new_rules)) if rules is None)
        notes.append(f"rules not compared: the {missing} report has no conformance results")
    else:
        for rule_id in [*old_rules, *(rule_id for rule_id in new_rules if rule_id not in old_rules)]:
            title, was = old_rules.get(rule_id, ("", None))
            title, now = new_rules.get(rule_id, (title, None))
            change = RuleChange(rule_id=rule_id, title=title, old=was, new=now)
            if now in _BAD_OUTCOMES and was not in _BAD_OUTCOMES:
                newly_failing.append(change)
            elif was in _BAD_OUTCOMES and now == "pass":
                newly_passing.append(change)
            elif was in _BAD_OUTCOMES and now in ("skip", "not-run"):
                notes.append(f"rule {rule_id} {was}ed before and is {'skipped' if now == 'skip' else 'not run'} now")
            elif now is None:
                notes.append(f"rule {rule_id} is only in the old report")
    old_loads, new_loads = _by_scenario(old.loads), _by_scenario(new.loads)
    metrics = [
        _judge_metric(
            scenario, metric, metric.read(old_loads[scenario]), metric.read(new_loads[scenario]), tolerance_pct
        )
        for scenario in old_loads
        if scenario in new_loads
        for metric in _METRICS
    ]
    notes += [f"load scenario {name!r} is only in the old report" for name in old_loads if name not in new_loads]
    notes += [f"load scenario {name!r} is only in the new report" for name in new_loads if name not in old_loads]
    return Comparison(
        tolerance_pct=tolerance_pct,
        old_verdict=old.verdict.status,
        new_verdict=new.verdict.status,
        newly_failing=newly_failing,
        newly_passing=newly_passing,
        metrics=metrics,
        notes=notes,
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int]) -> list[str]:
    """Rows as indented, aligned lines; columns in `right` are right-aligned (numbers)."""
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    return [
        "  "
        + "  ".join(
            cell.rjust(width) if column in right else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]


def format_comparison(comparison: Comparison, old_label: str = "old", new_label: str = "new") -> str:
    """The comparison as plain ASCII text: verdicts, rule changes, a metrics table, and the decision last."""
    lines = [
        f"old: {old_label}",
        f"new: {new_label}",
        f"verdict: {comparison.old_verdict} -> {comparison.new_verdict}",
        "",
    ]
    for heading, changes in (
        ("Newly failing rules", comparison.newly_failing),
        ("Newly passing rules", comparison.newly_passing),
    ):
        lines.append(f"{heading} ({len(changes)})")
        rows = [
            [change.rule_id, f"{change.old or 'absent'} -> {change.new or 'absent'}", change.title]
            for change in changes
        ]
        lines += _table(["rule", "outcome", "title"], rows, frozenset()) if rows else ["  none"]
        lines.append("")
    lines.append(f"Load metrics (tolerance {comparison.tolerance_pct:g}%)")
    rows = [
        [
            change.scenario,
            change.metric,
            f"{change.better} is better",
            _number(change.old),
            _number(change.new),
            "-" if change.change_pct is None else f"{change.change_pct:+.1f}%",
            change.status.upper() if change.status == "regressed" else change.status,
        ]
        for change in comparison.metrics
    ]
    header = ["scenario", "metric", "direction", "old", "new", "change", "status"]
    lines += _table(header, rows, frozenset({3, 4, 5})) if rows else ["  none compared"]
    if comparison.notes:
        lines += ["", "Notes", *(f"  - {note}" for note in comparison.notes)]
    lines.append("")
    if comparison.is_regression:
        lines.append(f"REGRESSION ({len(comparison.regressions)}):")
        lines += [f"  - {reason}" for reason in comparison.regressions]
    else:
        lines.append("no regression")
    return "\n".join(lines) + "\n"
