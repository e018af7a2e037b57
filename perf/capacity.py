"""The capacity scenario: the highest open-loop request rate at which the objectives hold, errors stay under a
bound and the deployment's published RPM/TPM are respected.

Each probe is an ordinary `llamacert load` run at one Poisson rate. The search brackets (doubling up from the
start rate until a probe fails, or halving down until one holds), then bisects the bracket until it is
narrower than the resolution, never running more than `max_steps` probes and never offering more than the
published limits allow. A probe stops early once over-saturation is evident (the median of an objective's
metric already twice its threshold, or most requests failing): its verdict cannot change by waiting.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from perf.objectives import Objectives
from perf.runner import CSV_PREFIX, LoadRequest, LoadResult, plan_run, run_load
from perf.scenarios import CapacityPlan, Scenario
from spec.load_summary import CapacitySearch, CapacityStep, LoadSummary

__all__ = ["CapacityOutcome", "format_capacity", "judge_probe", "next_rate", "saturation_monitor", "search_capacity"]

_KEEP_UP: Final = 0.9
"""A probe whose generator sent under this share of the offered rate could not offer it (users all blocked)."""
_STATS_ROWS: Final = {"ttft": ("METRIC", "TTFT"), "itl": ("METRIC", "ITL")}


@dataclass(frozen=True)
class CapacityOutcome:
    """The search: every probe, and the summary (with its `capacity` section) of the probe at the answer."""

    summary: LoadSummary
    result: LoadResult


def next_rate(held: float | None, failed: float | None, plan: CapacityPlan, ceiling: float) -> float | None:
    """The next rate to probe given the highest that held and the lowest that failed; None: the search is done."""
    if held is None and failed is None:
        return min(plan.start_rate, ceiling)
    if failed is None:
        assert held is not None
        return None if held >= ceiling else min(held * plan.growth, ceiling)
    if held is None:
        lower = failed / plan.growth
        return None if lower < plan.min_rate else lower
    if failed - held <= plan.resolution * failed:
        return None
    return (held + failed) / 2


def judge_probe(
    summary: LoadSummary, offered: float, max_error_rate: float, stopped_early: str | None
) -> tuple[bool, list[str], str | None]:
    """Whether a probe held, why not, and the name of the first thing that failed."""
    reasons: list[tuple[str, str]] = [(objective.name, objective.text) for objective in summary.missed_objectives]
    if summary.error_rate > max_error_rate:
        reasons.append(("errors", f"error rate {summary.error_rate:.2%} above the {max_error_rate:.2%} bound"))
    if summary.rejected_429:
        reasons.append(("rate limit", f"{summary.rejected_429} requests refused with 429 at {offered:g} requests/s"))
    sent = summary.requests / summary.duration_s if summary.duration_s > 0 else 0.0
    # Poisson counts vary by about their square root: only a shortfall beyond three of those is a backlog
    expected = offered * summary.duration_s
    short = summary.requests < expected - 3 * math.sqrt(expected) and sent < _KEEP_UP * offered
    if short and stopped_early is None:
        reasons.append(("saturation", f"only {sent:.2f} of {offered:g} requests/s could be sent: requests pile up"))
    if stopped_early is not None:
        reasons.append(("saturation", f"stopped early: {stopped_early}"))
    return not reasons, [text for _, text in reasons], reasons[0][0] if reasons else None


def _stats_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as file:
            return list(csv.DictReader(file))
    except (OSError, csv.Error):
        return []


def saturation_monitor(
    objectives: Objectives, started: float, min_s: float, factor: float = 2.0
) -> Callable[[Path], str | None]:
    """A check of Locust's live statistics (its CSV, rewritten every second) for evident over-saturation."""

    def evident(out_dir: Path) -> str | None:
        if time.monotonic() - started < min_s:
            return None
        rows = _stats_rows(out_dir / f"{CSV_PREFIX}_stats.csv")
        requests = [row for row in rows if row.get("Type") not in ("METRIC", "", None) and row.get("Name")]
        sent = sum(int(row.get("Request Count") or 0) for row in requests)
        failed = sum(int(row.get("Failure Count") or 0) for row in requests)
        if sent >= 20 and failed > sent / 2:
            return f"{failed} of {sent} requests failed"
        for metric, threshold in objectives.goodput_thresholds_ms.items():
            if metric in _STATS_ROWS:
                kind, name = _STATS_ROWS[metric]
                candidates = [row for row in rows if row.get("Type") == kind and row.get("Name") == name]
            else:
                candidates = requests
            for row in candidates:
                median = float(row.get("Median Response Time") or 0)
                if int(row.get("Request Count") or 0) >= 10 and median > factor * threshold:
                    return f"median {metric} {median:,.0f} ms is over {factor:g}x its {threshold:g} ms objective"
        return None

    return evident


def _limit_ceiling(plan: CapacityPlan, limits: tuple[int | None, int | None], mean_tokens: float) -> float:
    rpm, tpm = limits
    ceilings = [plan.max_rate]
    if rpm:
        ceilings.append(rpm / 60)
    if tpm:
        ceilings.append(tpm / 60 / mean_tokens)
    return min(ceilings)


def _probe_scenario(scenario: Scenario, plan: CapacityPlan, rate: float) -> Scenario:
    # enough open-loop users that slow answers do not throttle the offered rate until far past the knee
    users = max(scenario.users, min(plan.max_users, math.ceil(rate * plan.users_per_rate)))
    return scenario.model_copy(update={"rate": rate, "users": users, "duration": plan.step_duration})


def search_capacity(
    request: LoadRequest,
    *,
    profile_limits: tuple[int | None, int | None] = (None, None),
    log: Callable[[str], None] = print,
) -> CapacityOutcome:
    """Run the search the request's scenario describes; every probe's files go to out_dir/probe-N."""
    scenario = request.scenario
    plan = scenario.capacity
    if plan is None:
        raise ValueError(f"scenario {scenario.name} has no capacity plan")
    objectives = request.effective_objectives
    max_error_rate = objectives.max_error_rate if objectives.max_error_rate is not None else plan.max_error_rate
    limits = (request.limit_rpm or profile_limits[0], request.limit_tpm or profile_limits[1])
    first_probe = replace(request, scenario=_probe_scenario(scenario, plan, plan.start_rate))
    mean_tokens = plan_run(first_probe, limits).settings.workload().mean_tokens_per_request()
    ceiling = _limit_ceiling(plan, limits, mean_tokens)
    steps: list[CapacityStep] = []
    results: dict[float, LoadResult] = {}
    first_failures: dict[float, str] = {}
    held_rate: float | None = None
    failed_rate: float | None = None
    while len(steps) < plan.max_steps:
        rate = next_rate(held_rate, failed_rate, plan, ceiling)
        if rate is None:
            break
        monitor = saturation_monitor(objectives, time.monotonic(), plan.step_duration / 3) if plan.early_stop else None
        probe = replace(
            request,
            scenario=_probe_scenario(scenario, plan, rate),
            out_dir=request.out_dir / f"probe-{len(steps) + 1}",
            duration_s=None,
            rate=None,
            runs=1,
            stop_early=monitor,
        )
        result = run_load(probe, profile_limits=profile_limits)
        summary = result.summary
        held, reasons, first_failure = judge_probe(summary, rate, max_error_rate, result.stopped_early)
        sent = summary.requests / summary.duration_s if summary.duration_s > 0 else 0.0
        steps.append(
            CapacityStep(
                offered_rate=rate,
                achieved_rate=sent,
                requests_per_s=summary.requests_per_s,
                goodput_requests_per_s=summary.goodput.requests_per_s if summary.goodput else None,
                error_rate=summary.error_rate,
                ttft_p95_ms=summary.ttft_ms.p95 if summary.ttft_ms else None,
                itl_p95_ms=summary.itl_ms.p95 if summary.itl_ms else None,
                e2e_p95_ms=summary.e2e_ms.p95 if summary.e2e_ms else None,
                held=held,
                reasons=reasons,
                stopped_early=result.stopped_early is not None,
            )
        )
        results[rate] = result
        verdict = "held" if held else "did not hold: " + "; ".join(reasons)
        log(f"capacity probe {len(steps)}: {rate:.3g} requests/s {verdict}")
        if held:
            held_rate = rate
        else:
            failed_rate = rate
            first_failures[rate] = first_failure or "?"
    if failed_rate is not None:
        limiting: str | None = first_failures[failed_rate]
    elif held_rate is not None and held_rate >= ceiling:
        limiting = "published rate limit" if ceiling < plan.max_rate else "the search's max_rate"
    else:
        limiting = None  # the step budget ran out while still bracketing upwards
    answer = results[held_rate] if held_rate is not None else results[min(results)]
    search = CapacitySearch(
        objectives=[part for part in str(objectives).split(",") if part],
        max_error_rate=max_error_rate,
        limit_rpm=limits[0],
        limit_tpm=limits[1],
        steps=steps,
        capacity_rate=held_rate,
        capacity_goodput=answer.summary.goodput.requests_per_s
        if held_rate is not None and answer.summary.goodput
        else None,
        limiting=limiting,
        resolution=(failed_rate - held_rate) if failed_rate is not None and held_rate is not None else 0.0,
    )
    summary = answer.summary.model_copy(update={"capacity": search, "scenario": scenario.name})
    request.out_dir.mkdir(parents=True, exist_ok=True)
    (request.out_dir / "load-summary.json").write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return CapacityOutcome(summary, replace(answer, summary=summary, out_dir=request.out_dir))


def format_capacity(search: CapacitySearch) -> str:
    """The search as a plain-text table, the answer last."""
    lines = [f"{'probe':>5}  {'offered/s':>9}  {'sent/s':>7}  {'ok/s':>7}  {'goodput/s':>9}  {'p95 TTFT':>9}  result"]
    for number, step in enumerate(search.steps, start=1):
        goodput = "-" if step.goodput_requests_per_s is None else f"{step.goodput_requests_per_s:.2f}"
        ttft = "-" if step.ttft_p95_ms is None else f"{step.ttft_p95_ms:,.0f} ms"
        result = "held" if step.held else "failed: " + "; ".join(step.reasons)
        lines.append(
            f"{number:>5}  {step.offered_rate:>9.3g}  {step.achieved_rate:>7.2f}  {step.requests_per_s:>7.2f}  "
            f"{goodput:>9}  {ttft:>9}  {result}"
        )
    objectives = ", ".join(search.objectives) or "none (errors and limits only)"
    if search.capacity_rate is None:
        lines.append(f"capacity: even the lowest rate probed did not hold ({objectives})")
    else:
        goodput = "-" if search.capacity_goodput is None else f"{search.capacity_goodput:.2f}"
        lines.append(
            f"capacity: {search.capacity_rate:.3g} requests/s (goodput {goodput} requests/s) within {objectives}; "
            f"limited by {search.limiting or 'the step budget'}"
            + (f", bracket {search.resolution:.3g} requests/s wide" if search.resolution else "")
        )
    return "\n".join(lines)
