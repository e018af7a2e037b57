"""`llamacert load`: run a Locust load scenario against an endpoint and summarise it.

Exit status: 0 done (and any rate-limit verdict passed, any baseline held); 1 rate-limit verdict failed or
a gate metric regressed beyond the tolerance; 2 bad arguments or scenario; 3 Locust failed to run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from perf.baseline import BaselineError, compare, format_comparison, load_baseline, parse_tolerance, save_baseline
from perf.metrics import DEFAULT_BURST_SECONDS
from perf.runner import LoadRequest, PlanError, format_summary, run_load
from perf.scenarios import ScenarioError, builtin_scenarios, load_scenario, parse_duration
from perf.settings import API_KEY_ENV
from perf.workload import LengthRange, parse_mix
from spec.profiles import get_profile

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamacert load", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoint", required=True, help="Base URL of the endpoint, e.g. http://127.0.0.1:8000")
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
    retry = parser.add_mutually_exclusive_group()
    retry.add_argument("--honour-retry-after", dest="honour_retry_after", action="store_true", default=None)
    retry.add_argument("--no-honour-retry-after", dest="honour_retry_after", action="store_false")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="Seconds before a request is hung.")
    parser.add_argument("--out", type=Path, default=Path("perf-results"), help="Directory for the run's files.")
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
    gates.add_argument("--tolerance", type=parse_tolerance, default=0.10, help="e.g. 10%% (default).")
    gates.add_argument("--save-baseline", type=Path, help="Write this run's gate metrics as a baseline.")
    locust = parser.add_argument_group("locust")
    locust.add_argument("--workers", type=int, default=0, help="Run a Locust master and N local workers.")
    locust.add_argument("--web", action="store_true", help="Keep Locust's web UI up (Ctrl-C ends the run).")
    locust.add_argument("--web-port", type=int, default=8089)
    locust.add_argument("--seed", type=int, default=0, help="Seed of prompts and mix draws (0: random).")
    return parser


def _profile_limits(name: str | None) -> tuple[int | None, int | None]:
    if name is None:
        return None, None
    profile = get_profile(name)
    return profile.requests_per_minute, profile.tokens_per_minute


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        # argparse exits on --help and on bad arguments; main returns the status instead.
        return int(exit_.code or 0)
    try:
        scenario = load_scenario(args.scenario)
        baseline = load_baseline(args.baseline) if args.baseline else None
        request = LoadRequest(
            endpoint=args.endpoint.rstrip("/"),
            scenario=scenario,
            out_dir=args.out,
            api_key=args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV, ""),
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
        )
        if request.web:
            print(f"Locust web UI: http://127.0.0.1:{request.web_port} (Ctrl-C ends the run)", file=sys.stderr)
        result = run_load(request, profile_limits=_profile_limits(args.profile))
    except (ScenarioError, BaselineError, PlanError, ValueError) as error:
        print(f"llamacert load: {error}", file=sys.stderr)
        return 2
    print(format_summary(result))
    if result.locust_returncode != 0 and not result.records:
        return 3
    status = 1 if result.rate_limit_failed else 0
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
