"""How many requests/s one Locust process running perf/locustfile.py can drive: the load generator's own ceiling.

Runs a closed-loop scenario with no think time against a trivial endpoint (perf/trivial_server.py, canned
answers, started here) or any --endpoint, through the same runner as `llamacert load`, and reports requests/s
and the CPU the Locust process used. A load test whose target rate is near this figure measures the harness,
not the endpoint: add --workers.

    python -m perf.harness_capacity --seconds 10 --users 32 [--stream] [--endpoint URL --api-key KEY]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from perf.runner import PERF_DIR, LoadRequest, run_load, subprocess_environment
from perf.scenarios import RequestMixEntry, Scenario

__all__ = ["measure", "trivial_endpoint"]


@contextmanager
def trivial_endpoint(*extra_arguments: str) -> Iterator[str]:
    """Start perf/trivial_server.py on a free port; yields its base URL and always stops it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "perf.trivial_server", "--port", "0", *extra_arguments],
        stdout=subprocess.PIPE,
        env=subprocess_environment(""),
        cwd=PERF_DIR.parent,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        match = re.match(r"listening on (\d+)", line)
        if match is None:
            raise RuntimeError(f"trivial server did not start: {line!r}")
        yield f"http://127.0.0.1:{match[1]}"
    finally:
        process.terminate()
        process.wait(10)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    endpoint: str, *, seconds: float, users: int, stream: bool, api_key: str = "", out_dir: Path | None = None
) -> dict[str, Any]:
    """Drive `endpoint` flat out for `seconds` with one Locust process; requests/s and Locust's CPU use."""
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
        request = LoadRequest(endpoint=endpoint, scenario=scenario, out_dir=out_dir or Path(scratch), api_key=api_key)
        cpu_before = _children_cpu_s()
        result = run_load(request)
        # Only the Locust process has ended (the trivial server is still running), so this is Locust's CPU.
        locust_cpu_s = _children_cpu_s() - cpu_before
    summary = result.summary
    duration = summary["duration_s"] or 1.0
    return {
        "endpoint": endpoint,
        "users": users,
        "stream": stream,
        "requests": summary["requests"],
        "ok": summary["ok"],
        "errors": summary["errors"],
        "duration_s": round(duration, 2),
        "requests_per_s": round(summary["requests"] / duration, 1),
        "locust_cpu_s": round(locust_cpu_s, 2),
        "locust_cpu_share": round(locust_cpu_s / duration, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.harness_capacity", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--stream", action="store_true", help="streamed completions (16 SSE events each)")
    parser.add_argument("--endpoint", help="measure against this endpoint instead of the trivial one")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--out", type=Path, help="keep the run's files here")
    args = parser.parse_args(argv)
    if args.endpoint:
        report = measure(
            args.endpoint,
            seconds=args.seconds,
            users=args.users,
            stream=args.stream,
            api_key=args.api_key,
            out_dir=args.out,
        )
    else:
        with trivial_endpoint() as endpoint:
            report = measure(endpoint, seconds=args.seconds, users=args.users, stream=args.stream, out_dir=args.out)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
