"""Compare two reports: rules that newly fail or pass, load metrics that moved, and whether that is a regression.

A regression is a rule that newly fails, or a load metric worse than before by more than the tolerance and the
run-to-run spread; the metrics, the tolerance and that judgement are spec.load_regression's, the same engine
`llamacert load --baseline` uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from reports.model import LoadSection, Outcome, Report, VerdictStatus
from spec.load_regression import DEFAULT_TOLERANCE_PCT, MetricStatus, MetricVerdict, judge_all, metric_values

__all__ = ["DEFAULT_TOLERANCE_PCT", "Comparison", "MetricChange", "RuleChange", "compare_reports", "format_comparison"]

_BAD_OUTCOMES: frozenset[Outcome | None] = frozenset({"fail", "error"})

Better = Literal["lower", "higher"]


class _ComparisonModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleChange(_ComparisonModel):
    """A rule whose outcome moved between a bad one (fail, error) and a good or absent one."""

    rule_id: str
    title: str
    old: Outcome | None
    new: Outcome | None


class MetricChange(_ComparisonModel):
    """One load metric of one scenario, before and after (medians of repeated runs when there were some)."""

    scenario: str
    metric: str
    better: Better
    old: float | None
    new: float | None
    old_spread: float | None
    new_spread: float | None
    margin: float | None
    """How far the metric could move the worse way without counting: max(tolerance, either spread, floor)."""
    change_pct: float | None
    status: MetricStatus

    @classmethod
    def of(cls, scenario: str, verdict: MetricVerdict) -> MetricChange:
        return cls(
            scenario=scenario,
            metric=verdict.metric.label + (f" ({verdict.metric.unit})" if verdict.metric.unit in ("ms", "%") else ""),
            better=verdict.metric.better,
            old=None if verdict.baseline is None else verdict.baseline.median,
            new=None if verdict.current is None else verdict.current.median,
            old_spread=None if verdict.baseline is None else verdict.baseline.spread,
            new_spread=None if verdict.current is None else verdict.current.spread,
            margin=verdict.margin,
            change_pct=verdict.change_pct,
            status=verdict.status,
        )


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
            f"{change.scenario}: {change.metric} {_worse_by(change)}, beyond the allowed {_number(change.margin)} "
            f"(the {self.tolerance_pct:g}% tolerance or the run-to-run spread, whichever is larger)"
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
    """What changed from `old` to `new`; a metric regresses when it is worse by more than `tolerance_pct` percent
    of the old value and more than the spread either report measured over repeated runs."""
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
        MetricChange.of(scenario, verdict)
        for scenario in old_loads
        if scenario in new_loads
        for verdict in judge_all(metric_values(old_loads[scenario]), metric_values(new_loads[scenario]), tolerance_pct)
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


def _spread(spread: float | None) -> str:
    """` (range 12)` after a median of repeated runs; nothing for a single run."""
    return "" if not spread else f" (range {_number(spread)})"


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
            _number(change.old) + _spread(change.old_spread),
            _number(change.new) + _spread(change.new_spread),
            "-" if change.change_pct is None else f"{change.change_pct:+.1f}%",
            "-" if change.margin is None else f"+-{_number(change.margin)}",
            change.status.upper() if change.status == "regressed" else change.status,
        ]
        for change in comparison.metrics
        if change.status != "n/a" or change.old is not None or change.new is not None
    ]
    header = ["scenario", "metric", "direction", "old", "new", "change", "allowed", "status"]
    lines += _table(header, rows, frozenset({3, 4, 5, 6})) if rows else ["  none compared"]
    if comparison.notes:
        lines += ["", "Notes", *(f"  - {note}" for note in comparison.notes)]
    lines.append("")
    if comparison.is_regression:
        lines.append(f"REGRESSION ({len(comparison.regressions)}):")
        lines += [f"  - {reason}" for reason in comparison.regressions]
    else:
        lines.append("no regression")
    return "\n".join(lines) + "\n"
