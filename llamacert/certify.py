"""`llamacert certify`: conformance suite + short load test (+ rate-limit compliance) -> report directory.

With no endpoint it certifies the embedded reference server (llama.cpp + SmolLM2). Its rate-limit
compliance is measured on the same server code and profile over the simulated backend, because a
135M model on two cores cannot be offered 1,000+ requests per minute. The report directory also
holds every exchange of the suite (exchanges.jsonl; re-judge it with `llamacert check`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import httpx

from conformance.exchange import EXCHANGES_FILE
from launch import PROJECT_ROOT, ReferenceServer, project_environment
from spec.profiles import get_profile

__all__ = ["EXIT_CODES", "EXIT_COULD_NOT_RUN", "certify_main"]

ROOT = PROJECT_ROOT
EXIT_CODES = {"PASS": 0, "FAIL": 1, "INCOMPLETE": 2}
EXIT_COULD_NOT_RUN = 3
EXIT_HELP = """exit status:
  0  PASS        every rule the profile requires passed, with evidence, and the load test ran
  1  FAIL        a required rule or the rate-limit check failed
  2  INCOMPLETE  nothing failed, but a required rule errored, was skipped or did not run, or a part did not run
  3  could not run: bad arguments, the endpoint is unreachable, or the embedded server did not start
"""


class CouldNotRun(Exception):
    """certify cannot start: the verdict would mean nothing."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_COULD_NOT_RUN, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="llamacert certify",
        description=__doc__,
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--endpoint", help="base URL; default: start the embedded reference server")
    parser.add_argument("--api-key", default=os.environ.get("LLAMACERT_API_KEY"))
    parser.add_argument("--profile", default="serverless-llama31", help="deployment profile (spec/profiles.yaml)")
    parser.add_argument("--strictness", choices=["docs", "compat"], default="docs")
    parser.add_argument("--routes", choices=["llama", "azure", "both"], default="both")
    parser.add_argument("--model-kind", choices=["chat", "completion", "both", "auto"], default="auto")
    parser.add_argument("--out", type=Path, help="report directory (default llamacert-reports/<time>)")
    parser.add_argument("--quick", action="store_true", help="the quick conformance subset")
    parser.add_argument("--harmful-prompts", type=Path, help="harmful prompts for the content-safety rule, one a line")
    parser.add_argument("--load-duration", default="20s", help="duration of the throughput load test")
    parser.add_argument("--no-load", action="store_true", help="skip the load tests")
    parser.add_argument(
        "--rate-limit-test",
        choices=["auto", "on", "off"],
        default="auto",
        help="offer load above the profile's limits (auto: only for the embedded reference server)",
    )
    return parser


def _step(title: str) -> None:
    print(f"\n=== llamacert certify: {title} ===", flush=True)


def _run_conformance(args: argparse.Namespace, endpoint: str, api_key: str | None, out: Path) -> dict[str, Any] | None:
    """The suite's results, with pytest's own exit status; None when it wrote none (it could not start)."""
    results = out / "conformance-results.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "conformance"),
        "--endpoint",
        endpoint,
        "--profile",
        args.profile,
        "--strictness",
        args.strictness,
        "--routes",
        args.routes,
        "--model-kind",
        args.model_kind,
        "--results-json",
        str(results),
        "--exchanges",
        str(out / EXCHANGES_FILE),
        "--junitxml",
        str(out / "conformance-junit.xml"),
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
    ]
    if api_key:
        command.append(f"--api-key={api_key}")  # `=`: a key may begin with "-"
    if args.quick:
        command.append("--quick")
    if args.harmful_prompts:
        command += ["--harmful-prompts", str(args.harmful_prompts.resolve())]
    results.unlink(missing_ok=True)
    # pytest prints each rule group's file with its progress as it goes
    status = subprocess.run(command, cwd=ROOT, env=project_environment(), check=False).returncode
    if not results.is_file():
        print(f"llamacert certify: the conformance suite wrote no results (pytest exit {status})", file=sys.stderr)
        return None
    document: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
    document["pytest_exit_status"] = status  # the process's own word outranks what the plugin wrote before exiting
    return document


def _check_reachable(endpoint: str) -> None:
    try:
        httpx.get(endpoint.rstrip("/") + "/health", timeout=10)
    except httpx.HTTPError as error:
        raise CouldNotRun(f"the endpoint {endpoint} is unreachable ({type(error).__name__}: {error})") from None


def _run_load(arguments: list[str], out: Path) -> dict[str, Any] | None:
    from perf.cli import main as load_main

    status = load_main([*arguments, "--out", str(out)])
    summary = out / "load-summary.json"
    if not summary.is_file():
        print(f"llamacert certify: the load test wrote no summary (exit {status})", file=sys.stderr)
        return None
    document: dict[str, Any] = json.loads(summary.read_text(encoding="utf-8"))
    return document


def certify_main(argv: list[str]) -> int:
    """Certify; the exit status is the verdict (EXIT_CODES) or EXIT_COULD_NOT_RUN."""
    args = _parser().parse_args(argv)
    try:
        return _certify(args)
    except CouldNotRun as exc:
        print(f"llamacert certify: could not run: {exc}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN


def _certify(args: argparse.Namespace) -> int:
    try:
        profile = get_profile(args.profile)
    except ValueError as exc:
        raise CouldNotRun(str(exc)) from None
    if args.harmful_prompts is not None and not args.harmful_prompts.is_file():
        raise CouldNotRun(f"--harmful-prompts {args.harmful_prompts}: no such file")
    started = time.monotonic()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    # absolute: the suite runs in a subprocess whose working directory is the installed package
    out: Path = (args.out or Path("llamacert-reports") / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    servers: list[ReferenceServer] = []
    try:
        endpoint, api_key = args.endpoint, args.api_key
        embedded = endpoint is None
        if embedded:
            _step(f"starting the embedded reference server (llama.cpp + SmolLM2, profile {profile.name})")
            server = ReferenceServer(["--context-length", "2048"], profile.name)
            servers.append(server)
            try:
                server.wait_ready()
            except RuntimeError as exc:
                raise CouldNotRun(f"the embedded reference server did not start: {exc}") from None
            endpoint, api_key = server.url, server.api_key
        else:
            _check_reachable(endpoint)
        _step(f"conformance suite against {endpoint} ({args.strictness}, {args.routes} routes)")
        conformance = _run_conformance(args, endpoint, api_key, out)
        loads: list[dict[str, Any]] = []
        if not args.no_load:
            _step(f"throughput load test, {args.load_duration}")
            throughput = _run_load(
                [
                    "--endpoint",
                    endpoint,
                    f"--api-key={api_key or ''}",
                    "--scenario",
                    "smoke",
                    "--duration",
                    args.load_duration,
                    # the responses under load are judged by the rules the profile requires
                    "--check",
                    "--profile",
                    profile.name,
                ],
                out / "load-throughput",
            )
            if throughput:
                loads.append(throughput)
            wants_rate_test = args.rate_limit_test == "on" or (args.rate_limit_test == "auto" and embedded)
            if profile.has_rate_limits and wants_rate_test:
                target, target_key = endpoint, api_key
                if embedded:
                    _step("rate-limit compliance: the reference server's limiter on the simulated backend")
                    simulated = ReferenceServer(
                        ["--backend", "simulated", "--simulated-token-s", "0.005"], profile.name
                    )
                    servers.append(simulated)
                    simulated.wait_ready()
                    target, target_key = simulated.url, simulated.api_key
                else:
                    _step("rate-limit compliance: offering load above the profile's limits")
                rate = _run_load(
                    [
                        "--endpoint",
                        target,
                        f"--api-key={target_key or ''}",
                        "--scenario",
                        "rate-limit",
                        "--profile",
                        profile.name,
                        "--duration",
                        "40s",
                    ],
                    out / "load-rate-limit",
                )
                if rate:
                    if embedded:
                        rate["endpoint"] = endpoint
                        rate["scenario"] = "rate-limit (same server and profile, simulated backend)"
                    loads.append(rate)
        _step("writing the report")
        from reports.model import Report
        from reports.writer import write_report_dir

        report = Report.from_parts(conformance, loads, profile.name)
        paths = write_report_dir(report, out)
    finally:
        for server in servers:
            server.stop()
    verdict = report.verdict
    print(f"\nverdict for {profile.name}: {verdict.status}")
    for reason in verdict.reasons[:10]:
        print(f"  - {reason}")
    print(f"report: {paths['html'].resolve()}")
    print(f"        {paths['json'].resolve()}")
    print(f"        {paths['junit'].resolve()}")
    print(f"        {(out / EXCHANGES_FILE).resolve()} (llamacert check FILE re-judges it)")
    print(f"took {time.monotonic() - started:.0f} s")
    return EXIT_CODES[verdict.status]
