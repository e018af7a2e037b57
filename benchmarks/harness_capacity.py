"""How many requests/s one Locust process running perf/locustfile.py can drive: the load generator's own ceiling.

Runs a closed-loop scenario with no think time, through the same runner as `llamacert load`, against one of
  - `--target trivial` (the default): benchmarks/trivial_server.py, canned answers on raw asyncio, so the figure is
    Locust's own ceiling;
  - `--target simulated`: the reference server, `llamacert serve --backend simulated` with zero latency and
    no rate limits (profile managed-compute), so the figure is what the harness drives against the real HTTP
    layer when the model costs nothing (issue 6);
  - `--endpoint URL`: any endpoint.
Both targets are started here. It reports requests/s, the CPU the Locust process used, the CPU the started
server used, and the CPU everything else on the machine used meanwhile (a busy machine lowers the figure).
A load test whose target rate is near this figure measures the harness, not the endpoint: add --workers.

--overhead measures, in one run and interleaved round by round (so a machine growing busier weighs on each
alike), four configurations: plain, scraping /metrics, checking responses (`--check`), and both; it prints
each one's median requests/s and its cost against plain (issue 15: scraping and checking must cost < 10 %).
Use --target simulated for it: the trivial server has no /metrics to scrape.

    python -m benchmarks.harness_capacity --seconds 10 --users 32 [--stream] [--runs 5]
        [--target trivial|simulated | --endpoint URL --api-key KEY] [--overhead [--check-fraction F]]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch import ManagedProcess, ReferenceServer
from perf.checks import DEFAULT_CHECK_FRACTION
from perf.cpu_usage import finished_children_cpu_s, machine_busy_cpu_s, process_cpu_s
from perf.runner import PERF_DIR, LoadRequest, run_load, subprocess_environment
from perf.scenarios import RequestMixEntry, Scenario

__all__ = [
    "OVERHEAD_CONFIGURATIONS",
    "StartedEndpoint",
    "measure",
    "overhead",
    "reference_simulated_endpoint",
    "trivial_endpoint",
]

# what benchmarks/trivial_server.py prints once it listens (it binds port 0)
LISTENING = re.compile(r"listening on (\d+)")

OVERHEAD_CONFIGURATIONS: tuple[tuple[str, bool, bool], ...] = (
    ("plain", False, False),
    ("scrape", True, False),
    ("check", False, True),
    ("scrape+check", True, True),
)
"""--overhead's configurations: (name, scrape /metrics, check responses)."""


@dataclass(frozen=True)
class StartedEndpoint:
    """An endpoint this process started: where it listens, its key, and its process (for its CPU time)."""

    url: str
    api_key: str
    pid: int


@contextmanager
def trivial_endpoint(*extra_arguments: str) -> Iterator[str]:
    """Start benchmarks/trivial_server.py on a free port; yields its base URL and always stops it."""
    with _trivial_server(*extra_arguments) as started:
        yield started.url


@contextmanager
def _trivial_server(*extra_arguments: str) -> Iterator[StartedEndpoint]:
    process = ManagedProcess(
        [sys.executable, "-m", "benchmarks.trivial_server", "--port", "0", *extra_arguments],
        name="the trivial server",
        environment=subprocess_environment(""),
        cwd=PERF_DIR.parent,
    )
    with process:
        process.wait_until(lambda: LISTENING.search(process.log_tail()) is not None, timeout_s=30, poll_s=0.05)
        match = LISTENING.search(process.log_tail())
        assert match is not None
        yield StartedEndpoint(f"http://127.0.0.1:{match[1]}", "", process.pid)


@contextmanager
def reference_simulated_endpoint() -> Iterator[StartedEndpoint]:
    """Start `llamacert serve --backend simulated` (zero latency, no rate limits) on a free port; always stops it."""
    server = ReferenceServer(["--backend", "simulated"], profile="managed-compute")
    try:
        server.wait_ready()
        yield StartedEndpoint(server.url, server.api_key, server.process.pid)
    finally:
        server.stop()


def measure(
    endpoint: str,
    *,
    seconds: float,
    users: int,
    stream: bool,
    api_key: str = "",
    out_dir: Path | None = None,
    server_pid: int | None = None,
    scrape_metrics: bool = True,
    check_fraction: float = 0.0,
) -> dict[str, Any]:
    """Drive `endpoint` flat out for `seconds` with one Locust process; requests/s and who used the CPU.

    With `server_pid` (a server this process started), the server's CPU share is reported too, and
    what neither Locust, that server nor this process used is reported as the rest of the machine's share.
    `scrape_metrics` and `check_fraction` are `llamacert load`'s scraping and `--check`.
    """
    scenario = Scenario(
        name="harness-capacity",
        description="closed loop, no think time, short requests",
        users=users,
        duration=seconds,
        requests=(RequestMixEntry(api="completion", stream=stream),),
        prompt_tokens="8",
        output_tokens="16",
        honour_retry_after=False,
    )
    with tempfile.TemporaryDirectory(prefix="llamacert-capacity-") as scratch:
        request = LoadRequest(
            endpoint=endpoint,
            scenario=scenario,
            out_dir=out_dir or Path(scratch),
            api_key=api_key,
            scrape_metrics=scrape_metrics,
            check_fraction=check_fraction,
        )
        locust_before, own_before, machine_before = finished_children_cpu_s(), process_cpu_s(), machine_busy_cpu_s()
        server_before = 0.0 if server_pid is None else process_cpu_s(server_pid)
        started = time.perf_counter()
        result = run_load(request)
        wall_s = time.perf_counter() - started
        # Only the Locust process has ended (a server started here is still running), so this is Locust's CPU.
        locust_cpu_s = finished_children_cpu_s() - locust_before
        server_cpu_s = 0.0 if server_pid is None else process_cpu_s(server_pid) - server_before
        # this process reads and summarises Locust's records after the run
        own_cpu_s = process_cpu_s() - own_before
        machine_cpu_s = machine_busy_cpu_s() - machine_before
    summary = result.summary
    duration = summary.duration_s or 1.0
    report: dict[str, Any] = {
        "endpoint": endpoint,
        "users": users,
        "stream": stream,
        "requests": summary.requests,
        "ok": summary.ok,
        "errors": summary.errors,
        "duration_s": round(duration, 2),
        "requests_per_s": round(summary.requests / duration, 1),
        "locust_cpu_s": round(locust_cpu_s, 2),
        "locust_cpu_share": round(locust_cpu_s / duration, 2),
        "scrape_metrics": scrape_metrics,
        "check_fraction": check_fraction,
        "checked_responses": summary.checked_responses,
        # the whole call: Locust's start and end, and judging the checked responses after the run
        "wall_s": round(wall_s, 2),
    }
    if server_pid is not None:
        report["server_cpu_share"] = round(server_cpu_s / duration, 2)
        # over the whole call: the machine's busy time also covers Locust's start-up and shut-down
        others_cpu_s = machine_cpu_s - locust_cpu_s - server_cpu_s - own_cpu_s
        report["other_cpu_share"] = round(max(0.0, others_cpu_s) / wall_s, 2)
    return report


def _spread(reports: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [report["requests_per_s"] for report in reports]
    return {
        "runs": len(rates),
        "median_requests_per_s": round(statistics.median(rates), 1),
        "min_requests_per_s": min(rates),
        "max_requests_per_s": max(rates),
    }


def overhead(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Each configuration's median requests/s over its rounds, and its cost against plain (a percentage)."""
    medians = {
        name: statistics.median(report["requests_per_s"] for report in reports if report["configuration"] == name)
        for name, _, _ in OVERHEAD_CONFIGURATIONS
    }
    plain = medians["plain"]
    return {
        name: {
            "median_requests_per_s": round(median, 1),
            "cost_pct": round(100 * (1 - median / plain), 1) if plain else None,
        }
        for name, median in medians.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.harness_capacity", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--stream", action="store_true", help="streamed completions (16 SSE events each)")
    parser.add_argument("--runs", type=int, default=1, help="measure this many times; then also print the spread")
    parser.add_argument(
        "--target",
        choices=["trivial", "simulated"],
        default="trivial",
        help="the endpoint to start: the trivial server, or the reference server's simulated backend",
    )
    parser.add_argument("--endpoint", help="measure against this endpoint instead of starting one")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--out", type=Path, help="keep the (last) run's files here")
    parser.add_argument(
        "--overhead",
        action="store_true",
        help="measure plain, scraping, checking and both side by side (--runs rounds, interleaved)",
    )
    parser.add_argument(
        "--check-fraction",
        type=float,
        default=DEFAULT_CHECK_FRACTION,
        help=f"--overhead: the share of requests checked (default {DEFAULT_CHECK_FRACTION:g}, `--check`'s)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.check_fraction <= 1:
        parser.error("--check-fraction must be above 0 and at most 1")

    def side_by_side(endpoint: str, api_key: str, server_pid: int | None) -> None:
        reports = []
        for round_number in range(args.runs):
            # each round starts with another configuration, so none always runs first (or last) in a round
            shift = round_number % len(OVERHEAD_CONFIGURATIONS)
            for name, scrape, check in OVERHEAD_CONFIGURATIONS[shift:] + OVERHEAD_CONFIGURATIONS[:shift]:
                report = measure(
                    endpoint,
                    seconds=args.seconds,
                    users=args.users,
                    stream=args.stream,
                    api_key=api_key,
                    server_pid=server_pid,
                    scrape_metrics=scrape,
                    check_fraction=args.check_fraction if check else 0.0,
                )
                report = {"configuration": name, **report}
                print(json.dumps(report), flush=True)
                reports.append(report)
        print(json.dumps({"runs": args.runs, "overhead": overhead(reports)}))

    def run(endpoint: str, api_key: str, server_pid: int | None) -> None:
        if args.overhead:
            side_by_side(endpoint, api_key, server_pid)
            return
        reports = []
        for _ in range(args.runs):
            report = measure(
                endpoint,
                seconds=args.seconds,
                users=args.users,
                stream=args.stream,
                api_key=api_key,
                out_dir=args.out,
                server_pid=server_pid,
            )
            print(json.dumps(report), flush=True)
            reports.append(report)
        if len(reports) > 1:
            print(json.dumps(_spread(reports)))

    if args.endpoint:
        run(args.endpoint, args.api_key, None)
        return 0
    starter = _trivial_server() if args.target == "trivial" else reference_simulated_endpoint()
    with starter as started:
        run(started.url, started.api_key, started.pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
