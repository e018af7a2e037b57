"""`llamacert load`: run a Locust load scenario against an endpoint and summarise it.

Exit status: 0 done (every objective met, any rate-limit verdict passed, any baseline held, no checked
response broke a required rule); 1 an objective missed, the rate-limit verdict failed, a gate metric regressed
beyond the tolerance and the run-to-run spread, or (--check) a sampled response broke a required conformance
rule; 2 bad arguments or scenario; 3 Locust failed to run.
Past one machine: `llamacert load --master --expect-workers N --master-bind-host 0.0.0.0 ...` here, and
`llamacert load --worker --master-host HOST` on each other machine.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from perf.baseline import BaselineError, compare, format_comparison, load_baseline, save_baseline
from perf.capacity import format_capacity, search_capacity
from perf.checks import DEFAULT_CHECK_FRACTION, parse_check_fraction
from perf.metrics import DEFAULT_BURST_SECONDS
from perf.objectives import parse_objectives
from perf.runner import LoadRequest, PlanError, format_summary, run_load, run_worker
from perf.scenarios import ScenarioError, builtin_scenarios, load_scenario, parse_duration
from perf.settings import API_KEY_ENV
from perf.workload import LengthRange, parse_mix
from spec.load_regression import DEFAULT_TOLERANCE_PCT, parse_tolerance_pct
from spec.load_summary import LoadSummary
from spec.profiles import Profile, get_profile

__all__ = ["main"]

T = TypeVar("T")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamacert load", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoint", help="Base URL of the endpoint, e.g. http://127.0.0.1:8000 (not with --worker)")
    parser.add_argument("--api-key", default=None, help=f"The endpoint's key (default: ${API_KEY_ENV}).")
    parser.add_argument("--auth-header", choices=["bearer", "api-key"], default="bearer")
    parser.add_argument(
        "--scenario", default="smoke", help=f"Built-in ({', '.join(builtin_scenarios())}) or a .yaml file."
    )
    parser.add_argument("--duration", type=parse_duration, help="Run time, e.g. 60s or 2m (a sweep's total).")
    parser.add_argument("--users", type=int, help="Override the scenario's user count.")
    parser.add_argument("--spawn-rate", type=float, help="Users started per second (default: all at once).")
    parser.add_argument("--rate", type=float, help="Open-loop scenarios: requests/s in all.")
    parser.add_argument("--mix", type=parse_mix, help="Override the request mix, e.g. chat+stream:3,completion@azure")
    parser.add_argument("--prompt-tokens", type=LengthRange.parse, help="N or MIN..MAX")
    parser.add_argument("--output-tokens", type=LengthRange.parse, help="N or MIN..MAX (max_tokens)")
    workload = parser.add_argument_group("workloads (shared prefixes, conversations, trace replay)")
    workload.add_argument("--prefix-tokens", type=_non_negative_int, help="Shared prefix of N tokens (0: none).")
    workload.add_argument(
        "--prefix-share", type=float, help="Fraction of requests that start with a shared prefix (default 1)."
    )
    workload.add_argument("--prefix-count", type=int, help="Distinct shared prefixes (default 1).")
    workload.add_argument("--turns", type=int, help="Chat conversations of N turns; history grows per turn.")
    workload.add_argument("--think-time", type=float, help="Seconds a user waits between turns.")
    workload.add_argument(
        "--trace",
        type=Path,
        help="Replay a Mooncake-style JSONL trace (timestamp ms, input_length, output_length, "
        "hash_ids) at its recorded times.",
    )
    workload.add_argument("--trace-time-scale", type=float, help="Multiply the trace's gaps (0.5: twice as fast).")
    workload.add_argument("--trace-block-tokens", type=int, help="Tokens per hash_ids block (default 512).")
    retry = parser.add_mutually_exclusive_group()
    retry.add_argument("--honour-retry-after", dest="honour_retry_after", action="store_true", default=None)
    retry.add_argument("--no-honour-retry-after", dest="honour_retry_after", action="store_false")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="Seconds before a request is hung.")
    parser.add_argument("--out", type=Path, default=Path("perf-results"), help="Directory for the run's files.")
    parser.add_argument(
        "--warmup", type=_warmup, help="Leave the first seconds out of every figure, e.g. 10s (added to the run)."
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="Repeat the scenario; report each metric's median and range."
    )
    objectives = parser.add_argument_group("objectives")
    objectives.add_argument(
        "--slo",
        type=_objectives,
        help="Objectives, e.g. ttft_p95=500ms,itl_p95=50ms,e2e_p99=8s,errors=1%%; a metric without a percentile "
        "(ttft=2s) is a per-request threshold for goodput. A missed objective exits 1.",
    )
    checks = parser.add_argument_group("checks under load")
    checks.add_argument(
        "--check",
        nargs="?",
        const=DEFAULT_CHECK_FRACTION,
        default=0.0,
        type=_typed(parse_check_fraction),
        metavar="FRACTION",
        help=f"Record a share of the requests whole (default {DEFAULT_CHECK_FRACTION:g}; 1 or 100%% for all) and "
        "judge them with the conformance rules after the run; a required rule broken under load exits 1. Rules "
        "that need a second request, or that the workload does not exercise, are reported as not run.",
    )
    metrics = parser.add_argument_group("server metrics")
    metrics.add_argument(
        "--no-scrape-metrics",
        dest="scrape_metrics",
        action="store_false",
        help="Do not scrape the endpoint's /metrics.",
    )
    metrics.add_argument("--scrape-interval", type=float, default=1.0, help="Seconds between scrapes (default 1).")
    parser.add_argument(
        "--no-exact-prompts",
        dest="exact_prompts",
        action="store_false",
        help="Do not probe the endpoint's /tokenize: synthetic prompt lengths stay approximate (N words).",
    )
    limits = parser.add_argument_group("rate limits (rate-limit scenarios)")
    limits.add_argument("--rpm", type=int, help="The endpoint's requests/min limit.")
    limits.add_argument("--tpm", type=int, help="The endpoint's tokens/min limit.")
    limits.add_argument("--profile", help="Take the limits from a deployment profile of spec/profiles.yaml.")
    limits.add_argument(
        "--burst-seconds",
        type=float,
        default=DEFAULT_BURST_SECONDS,
        help="Requests the endpoint may accept at once, in seconds of its limit (default 10, Azure's window).",
    )
    gates = parser.add_argument_group("baselines")
    gates.add_argument("--baseline", type=Path, help="Compare with this baseline; exit 1 on a regression.")
    gates.add_argument(
        "--tolerance",
        type=_tolerance,
        default=DEFAULT_TOLERANCE_PCT,
        help=f"A percentage of the baseline, e.g. 10%% (default {DEFAULT_TOLERANCE_PCT:g}%%); repeated runs' "
        "spread widens it.",
    )
    gates.add_argument("--save-baseline", type=Path, help="Write this run's gate metrics as a baseline.")
    locust = parser.add_argument_group("locust")
    locust.add_argument("--workers", type=int, default=0, help="Run a Locust master and N local workers.")
    locust.add_argument("--web", action="store_true", help="Keep Locust's web UI up (Ctrl-C ends the run).")
    locust.add_argument("--web-port", type=int, default=8089)
    locust.add_argument("--seed", type=int, default=0, help="Seed of prompts and mix draws (0: random).")
    machines = parser.add_argument_group("several machines (Locust master and workers)")
    machines.add_argument("--master", action="store_true", help="Run the master here for workers on other machines.")
    machines.add_argument("--expect-workers", type=int, default=0, help="--master: wait for this many workers.")
    machines.add_argument("--master-bind-host", default="127.0.0.1", help="--master: address to listen on.")
    machines.add_argument("--master-bind-port", type=int, default=5557, help="--master: port to listen on.")
    machines.add_argument("--worker", action="store_true", help="Run one worker for a master elsewhere.")
    machines.add_argument("--master-host", help="--worker: the master's address.")
    machines.add_argument("--master-port", type=int, default=5557, help="--worker: the master's port.")
    return parser


def _typed(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises ValueError: its message becomes argparse's."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _parse_non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
    return value


_non_negative_int = _typed(_parse_non_negative_int)
_objectives = _typed(parse_objectives)
_tolerance = _typed(parse_tolerance_pct)
_warmup = _typed(lambda text: 0.0 if text.strip() in ("0", "0s") else parse_duration(text))


def _check_machines(args: argparse.Namespace) -> str | None:
    """What is wrong with the master/worker options, if anything."""
    if args.worker:
        if not args.master_host:
            return "--worker needs --master-host"
        if args.master:
            return "--worker and --master exclude each other"
        return None
    if args.endpoint is None:
        return "--endpoint is required (except with --worker)"
    if args.master and args.expect_workers < 1:
        return "--master needs --expect-workers N (N >= 1)"
    if args.expect_workers and not args.master:
        return "--expect-workers is for --master"
    if args.master and args.workers:
        return "--master waits for workers on other machines; --workers starts local ones: choose one"
    return None


def _profile_limits(profile: Profile | None) -> tuple[int | None, int | None]:
    if profile is None:
        return None, None
    return profile.requests_per_minute, profile.tokens_per_minute


def _report_checks(summary: LoadSummary) -> int:
    """Name each rule broken under load on stderr; 1 when a required one broke."""
    for finding in summary.failed_checks:
        example = f": {finding.first_failure.message}" if finding.first_failure is not None else ""
        print(
            f"llamacert load: rule {finding.rule_id} ({finding.severity}) broken by {finding.failed:,} sampled "
            f"responses under load{example}",
            file=sys.stderr,
        )
    return 1 if summary.checks_failed else 0


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        # argparse exits on --help and on bad arguments; main returns the status instead.
        return int(exit_.code or 0)
    problem = _check_machines(args)
    if problem:
        print(f"llamacert load: {problem}", file=sys.stderr)
        return 2
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV, "")
    if args.worker:
        return run_worker(args.master_host, args.master_port, api_key)
    try:
        profile = get_profile(args.profile) if args.profile else None
        scenario = load_scenario(args.scenario)
        baseline = load_baseline(args.baseline) if args.baseline else None
        request = LoadRequest(
            endpoint=args.endpoint.rstrip("/"),
            scenario=scenario,
            out_dir=args.out,
            api_key=api_key,
            auth_header=args.auth_header,
            duration_s=args.duration,
            users=args.users,
            spawn_rate=args.spawn_rate,
            rate=args.rate,
            mix=tuple(args.mix) if args.mix else None,
            prompt_tokens=args.prompt_tokens,
            output_tokens=args.output_tokens,
            honour_retry_after=args.honour_retry_after,
            limit_rpm=args.rpm,
            limit_tpm=args.tpm,
            burst_seconds=args.burst_seconds,
            request_timeout_s=args.request_timeout,
            workers=args.workers,
            web=args.web,
            web_port=args.web_port,
            seed=args.seed,
            warmup_s=args.warmup,
            objectives=args.slo,
            runs=args.runs,
            scrape_metrics=args.scrape_metrics,
            exact_prompts=args.exact_prompts,
            scrape_interval_s=args.scrape_interval,
            expect_workers=args.expect_workers if args.master else 0,
            master_bind_host=args.master_bind_host,
            master_bind_port=args.master_bind_port,
            check_fraction=args.check,
            check_profile=profile,
            prefix_tokens=args.prefix_tokens,
            prefix_share=args.prefix_share,
            prefix_count=args.prefix_count,
            turns=args.turns,
            think_time_s=args.think_time,
            trace=args.trace,
            trace_time_scale=args.trace_time_scale,
            trace_block_tokens=args.trace_block_tokens,
        )
        if request.web:
            print(f"Locust web UI: http://127.0.0.1:{request.web_port} (Ctrl-C ends the run)", file=sys.stderr)
        if scenario.capacity is not None:
            outcome = search_capacity(request, profile_limits=_profile_limits(profile))
            result = outcome.result
        else:
            result = run_load(request, profile_limits=_profile_limits(profile))
    except (ScenarioError, BaselineError, PlanError, ValueError) as error:
        print(f"llamacert load: {error}", file=sys.stderr)
        return 2
    print(format_summary(result))
    if result.summary.capacity is not None:
        print(format_capacity(result.summary.capacity))
        # the answer is the summary of the probe at the capacity; a search where nothing held exits 1
        held = result.summary.capacity.capacity_rate is not None
        return max(0 if held else 1, _report_checks(result.summary))
    if result.locust_returncode != 0 and not result.records:
        return 3
    status = 1 if result.rate_limit_failed or result.objectives_missed else 0
    for objective in result.summary.missed_objectives:
        print(f"llamacert load: objective {objective.name} missed: {objective.text}", file=sys.stderr)
    status = max(status, _report_checks(result.summary))
    if args.save_baseline:
        save_baseline(args.save_baseline, result.summary)
        print(f"baseline written to {args.save_baseline}")
    if baseline is not None:
        comparison = compare(baseline, result.summary, args.tolerance)
        print(format_comparison(comparison))
        status = max(status, 1 if comparison.regressed else 0)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
