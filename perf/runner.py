"""Runs a load scenario with Locust as a subprocess (headless, master + local workers, or with its web UI),
then merges the raw records, computes the load summary, and writes the run's files.

`plan_run` and `locust_commands` are pure (what will run, and how), so they are tested without Locust;
`run_load` does the I/O: probing limits, starting processes, collecting their output.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Final, TypeVar

import httpx

from conformance.exchange import EXCHANGES_FILE, iter_exchanges
from launch import free_loopback_port, project_environment
from perf.checks import check_exchanges, combine_findings, merge_exchange_files
from perf.metrics import (
    DEFAULT_BURST_SECONDS,
    RateLimitExpectation,
    RunWindow,
    late_requests,
    limits_from_headers,
    measured_window,
    summarize,
    summary_notes,
)
from perf.objectives import Objectives, evaluate_objectives, goodput, parse_objectives
from perf.records import RECORD_FILE_PATTERN, RequestRecord, merge_record_files
from perf.responses import parse_header_int
from perf.scenarios import Scenario
from perf.scrape import Scraper
from perf.settings import API_KEY_ENV, Arrival, AuthHeader, LoadSettings
from perf.tokenize import PromptCalibration, calibrate_prompt_words, probe_tokenizer
from perf.workload import APPROXIMATE_LENGTHS, PROMPT_WORDS, LengthRange, RequestKind
from spec.load_regression import run_statistics
from spec.load_summary import CheckFinding, LatencyStats, LoadSummary, ServerMetrics, WorkloadInfo
from spec.profiles import Profile

__all__ = [
    "LOCUSTFILE",
    "SHAPEFILE",
    "LoadRequest",
    "LoadResult",
    "PlanError",
    "RunPlan",
    "calibrate_prompts",
    "format_summary",
    "locust_commands",
    "plan_run",
    "probe_limits",
    "prompt_lengths",
    "run_load",
    "run_worker",
    "subprocess_environment",
    "summarize_records",
    "worker_command",
    "workload_info",
]

T = TypeVar("T")

PERF_DIR: Final = Path(__file__).resolve().parent
LOCUSTFILE: Final = PERF_DIR / "locustfile.py"
SHAPEFILE: Final = PERF_DIR / "shapes.py"
CSV_PREFIX: Final = "locust"
_STARTUP_MARGIN_S: Final = 60.0
"""Time allowed beyond run time and stop timeout for Locust to start, gather workers, and write its files."""


@dataclass(frozen=True)
class LoadRequest:
    """What `llamacert load` was asked for: a scenario and the overrides given on the command line."""

    endpoint: str
    scenario: Scenario
    out_dir: Path
    api_key: str = field(default="", repr=False)
    auth_header: AuthHeader = "bearer"
    duration_s: float | None = None
    users: int | None = None
    spawn_rate: float | None = None
    rate: float | None = None
    mix: tuple[RequestKind, ...] | None = None
    prompt_tokens: LengthRange | None = None
    output_tokens: LengthRange | None = None
    honour_retry_after: bool | None = None
    limit_rpm: int | None = None
    limit_tpm: int | None = None
    burst_seconds: float = DEFAULT_BURST_SECONDS
    request_timeout_s: float = 120.0
    workers: int = 0
    web: bool = False
    web_port: int = 8089
    seed: int = 0
    warmup_s: float | None = None
    """Seconds left out of every figure at the start (None: the scenario's); the run is longer by as much."""
    objectives: Objectives | None = None
    """None: the scenario's `slo`, if any."""
    runs: int = 1
    scrape_metrics: bool = True
    scrape_interval_s: float = 1.0
    expect_workers: int = 0
    """Workers on other machines (`--master`): the master waits for them and binds `master_bind_host`."""
    master_bind_host: str = "127.0.0.1"
    master_bind_port: int = 5557
    prefix_tokens: int | None = None
    """None: the scenario's; likewise for the workload fields below."""
    prefix_share: float | None = None
    prefix_count: int | None = None
    turns: int | None = None
    think_time_s: float | None = None
    trace: Path | None = None
    trace_time_scale: float | None = None
    trace_block_tokens: int | None = None
    stop_early: Callable[[Path], str | None] | None = None
    """Polled each second with the run's directory: a reason ends the run early (a capacity probe that saturated)."""
    check_fraction: float = 0.0
    """`--check`: the share of requests recorded whole and judged by the conformance rules after the run (0: none)."""
    check_profile: Profile | None = None
    """The deployment profile the checks judge for (None: every rule; with one, the rules it requires)."""
    exact_prompts: bool = True
    """Probe the endpoint's /tokenize before the run and, where it answers, make prompt lengths exact."""

    def __post_init__(self) -> None:
        if self.runs < 1:
            raise PlanError("--runs must be at least 1")
        if not 0 <= self.check_fraction <= 1:
            raise PlanError("--check: the share of requests to check must be between 0 and 1")
        if self.workers < 0 or self.expect_workers < 0:
            raise PlanError("worker counts must not be negative")
        if self.warmup_s is not None and self.warmup_s < 0:
            raise PlanError("--warmup must not be negative")

    @property
    def effective_objectives(self) -> Objectives:
        if self.objectives is not None:
            return self.objectives
        return parse_objectives(self.scenario.slo) if self.scenario.slo else Objectives()

    @property
    def effective_warmup_s(self) -> float:
        return self.scenario.warmup if self.warmup_s is None else self.warmup_s

    @property
    def distributed(self) -> bool:
        return bool(self.workers or self.expect_workers)


@dataclass(frozen=True)
class RunPlan:
    """How the scenario will run: Locust's users, timing and shape, and the locustfile's settings."""

    users: int
    spawn_rate: float
    run_time_s: float
    steps: tuple[int, ...]
    settings: LoadSettings
    offered_rate: float | None
    """Requests/s in all for open-loop arrivals; None for closed loop."""
    rate_limit: RateLimitExpectation | None
    warmup_s: float = 0.0


class PlanError(ValueError):
    """The scenario and overrides do not make a runnable plan."""


def _limited_rate(scenario: Scenario, limits: tuple[int | None, int | None], mean_tokens: float) -> float:
    """Requests/s the endpoint's limits allow for this workload: the tighter of its RPM and TPM."""
    rpm, tpm = limits
    allowed = [rate for rate in (rpm and rpm / 60, tpm and tpm / 60 / mean_tokens) if rate]
    if not allowed:
        raise PlanError(
            f"scenario {scenario.name} offers load relative to the endpoint's rate limits, and none is known: "
            "pass --rpm/--tpm or --profile, or the endpoint must send x-ratelimit-limit-* headers"
        )
    return min(allowed)


def _given(value: T | None, default: T) -> T:
    return default if value is None else value


def plan_run(request: LoadRequest, limits: tuple[int | None, int | None] = (None, None)) -> RunPlan:
    """The plan for a request; `limits` (RPM, TPM) size rate-limit scenarios."""
    scenario = request.scenario
    if request.rate is not None and scenario.shape not in ("constant", "poisson"):
        raise PlanError(f"--rate applies to open-loop scenarios (shape constant or poisson), not {scenario.shape}")
    users = request.users or scenario.users
    mix = request.mix or scenario.mix
    base = LoadSettings(
        endpoint_key=request.api_key,
        auth_header=request.auth_header,
        mix=mix,
        prompt_tokens=request.prompt_tokens or LengthRange.parse(scenario.prompt_tokens),
        output_tokens=request.output_tokens or LengthRange.parse(scenario.output_tokens),
        prompt_file=scenario.prompt_file,
        honour_retry_after=scenario.honour_retry_after
        if request.honour_retry_after is None
        else request.honour_retry_after,
        request_timeout=request.request_timeout_s,
        seed=request.seed,
        check_fraction=request.check_fraction,
        prefix_tokens=_given(request.prefix_tokens, scenario.prefix_tokens),
        prefix_share=_given(request.prefix_share, scenario.prefix_share),
        prefix_count=_given(request.prefix_count, scenario.prefix_count),
        turns=_given(request.turns, scenario.turns),
        think_time=_given(request.think_time_s, scenario.think_time),
        trace=request.trace or scenario.trace,
        trace_time_scale=_given(request.trace_time_scale, scenario.trace_time_scale),
        trace_block_tokens=_given(request.trace_block_tokens, scenario.trace_block_tokens),
    )
    base.workload()  # a bad combination of workload settings fails here, before Locust starts
    ignored = [
        problem
        for problem, given in (
            (
                "--prefix-share and --prefix-count need --prefix-tokens",
                (request.prefix_share, request.prefix_count) != (None, None) and not base.prefix_tokens,
            ),
            ("--think-time needs --turns above 1", request.think_time_s is not None and base.turns == 1),
            (
                "--trace-time-scale and --trace-block-tokens need --trace",
                (request.trace_time_scale, request.trace_block_tokens) != (None, None) and base.trace is None,
            ),
        )
        if given
    ]
    if ignored:
        raise PlanError("; ".join(ignored))
    arrival: Arrival = "closed"
    rate: float | None = None
    steps: tuple[int, ...] = ()
    run_time = request.duration_s or scenario.duration
    if scenario.shape in ("constant", "poisson"):
        arrival = scenario.shape
        rate = request.rate or scenario.rate
        if rate is None:
            assert scenario.rate_limit is not None, "the scenario format requires rate or rate_limit"
            mean_tokens = base.workload().mean_tokens_per_request()
            rate = scenario.rate_limit.multiple * _limited_rate(scenario, limits, mean_tokens)
    elif scenario.shape == "steps":
        step_duration = request.duration_s / len(scenario.steps) if request.duration_s else scenario.step_duration
        run_time = step_duration * len(scenario.steps)
        rates = [step.rate for step in scenario.steps if step.rate is not None]
        if rates:
            # A rate sweep is a sweep of open-loop users at a fixed rate each: the top step uses all the users.
            arrival = scenario.step_arrival
            per_user = max(rates) / users
            steps = tuple(max(1, math.ceil(step_rate / per_user - 1e-9)) for step_rate in rates)
            rate = max(rates)
        else:
            steps = tuple(step.users or 0 for step in scenario.steps)
        users = max(steps)
        base = replace(base, steps=steps, step_duration=step_duration)
    trace = base.trace_replay()
    if trace is not None:
        if request.distributed:
            raise PlanError("trace replay runs in one Locust process (its users share the trace): drop the workers")
        # the trace's span plus a second; --duration cuts the replay short
        run_time = request.duration_s or trace.span_s + 1.0
    warmup_s = request.effective_warmup_s
    if scenario.shape != "steps":
        # the warm-up comes on top of the measured duration
        run_time += warmup_s
    settings = replace(base, arrival=arrival, user_rate=rate / users if rate else 0.0)
    expectation = None
    if scenario.rate_limit is not None:
        expectation = RateLimitExpectation(
            mode=scenario.rate_limit.mode,
            limit_rpm=limits[0],
            limit_tpm=limits[1],
            burst_seconds=request.burst_seconds,
            request_timeout_s=request.request_timeout_s,
        )
    return RunPlan(
        users=users,
        spawn_rate=request.spawn_rate or scenario.spawn_rate or float(users),
        run_time_s=run_time,
        steps=steps,
        settings=settings,
        offered_rate=rate,
        rate_limit=expectation,
        warmup_s=warmup_s,
    )


def locust_commands(
    plan: RunPlan, request: LoadRequest, *, csv_prefix: Path, records_dir: Path, master_port: int = 5557
) -> list[list[str]]:
    """The Locust command lines: [standalone or master, *local workers].

    The locustfile stops the test itself after the run time (its --stop-after, not Locust's -t), so that with
    workers (local or on other machines) every worker's last records reach the master before it quits.
    """
    locustfiles = str(LOCUSTFILE) + (f",{SHAPEFILE}" if plan.steps else "")
    settings = replace(plan.settings, records_dir=records_dir)
    main = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        locustfiles,
        "--host",
        request.endpoint,
        "--csv",
        str(csv_prefix),
        # 429s and errors are results to measure, not a failed run; our exit code judges them.
        "--exit-code-on-error",
        "0",
        # Let requests in flight at the end finish (or time out as hung) instead of being cut off.
        "--stop-timeout",
        str(math.ceil(request.request_timeout_s)),
        *settings.locust_arguments(),
    ]
    if not plan.steps:
        main += ["-u", str(plan.users), "-r", f"{plan.spawn_rate:g}"]
    if request.distributed or not plan.steps:
        # one clock for every mode: from the test's start, as the master of distributed runs must keep it
        main.append(f"--stop-after={plan.run_time_s:g}")
    if request.web:
        main += ["--web-host", "127.0.0.1", "--web-port", str(request.web_port), "--autostart"]
    else:
        main += ["--headless", "--only-summary"]
    if not request.distributed:
        return [main]
    bind_host = request.master_bind_host if request.expect_workers else "127.0.0.1"
    main += [
        "--master",
        "--expect-workers",
        str(request.workers + request.expect_workers),
        "--expect-workers-max-wait",
        str(int(_STARTUP_MARGIN_S)),
        "--master-bind-host",
        bind_host,
        "--master-bind-port",
        str(master_port),
    ]
    worker = worker_command("127.0.0.1", master_port, locustfiles)
    return [main, *([*worker] for _ in range(request.workers))]


def worker_command(master_host: str, master_port: int = 5557, locustfiles: str = str(LOCUSTFILE)) -> list[str]:
    """A Locust worker of perf/locustfile.py: the host and llamacert options come from the master."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        locustfiles,
        "--worker",
        "--master-host",
        master_host,
        "--master-port",
        str(master_port),
    ]


def run_worker(master_host: str, master_port: int, api_key: str) -> int:
    """Run one worker for a master on another machine until the master ends the test; Locust's exit code."""
    return subprocess.run(
        worker_command(master_host, master_port), env=subprocess_environment(api_key), check=False
    ).returncode


def _auth_headers(api_key: str, auth_header: AuthHeader) -> dict[str, str]:
    if not api_key:
        return {}
    return {"Authorization": f"Bearer {api_key}"} if auth_header == "bearer" else {"api-key": api_key}


def calibrate_prompts(endpoint: str, api_key: str, auth_header: AuthHeader = "bearer") -> PromptCalibration:
    """Probe the endpoint's /tokenize once and calibrate the prompt words on it (perf/tokenize.py); a few calls,
    all before the run, so Locust's users never tokenize."""
    headers = _auth_headers(api_key, auth_header)
    with httpx.Client(base_url=endpoint.rstrip("/"), headers=headers, timeout=30) as client:
        tokenizer, reason = probe_tokenizer(client)
        if tokenizer is None:
            return PromptCalibration(None, reason=reason)
        try:
            return calibrate_prompt_words(tokenizer, PROMPT_WORDS)
        except (httpx.HTTPError, ValueError) as error:
            return PromptCalibration(None, reason=f"the tokenize route failed during calibration: {error}")


def prompt_lengths(calibration: PromptCalibration | None) -> str:
    """How prompt lengths were made, as the summary says it."""
    if calibration is None:
        return APPROXIMATE_LENGTHS
    if calibration.words is None:
        return f"approximate: prompts are common English words, about one token each ({calibration.reason})"
    start = f"{calibration.start_tokens} start token" + ("" if calibration.start_tokens == 1 else "s")
    return (
        "exact (the endpoint's /tokenize): a prompt, shared prefix or trace block of N tokens is N tokens of text; "
        f"usage.prompt_tokens adds the model's {start} on completions, and the chat template's tokens on chat"
    )


def probe_limits(
    endpoint: str, api_key: str, auth_header: AuthHeader = "bearer", kind: RequestKind | None = None
) -> tuple[int | None, int | None]:
    """The (RPM, TPM) limits the endpoint announces in x-ratelimit-limit-*.

    GET /info first; an endpoint that sends the headers only on generation routes costs one 1-token request
    (of `kind`), which the endpoint counts against its limits like any other.
    """
    kind = kind or RequestKind("completion")
    base = endpoint.rstrip("/")
    headers = _auth_headers(api_key, auth_header)
    body: dict[str, Any] = {"max_tokens": 1}
    body.update({"messages": [{"role": "user", "content": "hi"}]} if kind.api == "chat" else {"prompt": "hi"})
    probes = [("GET", f"{base}/info", None), ("POST", f"{base}{kind.route}", body)]
    with httpx.Client(headers=headers, timeout=30) as client:
        for method, url, payload in probes:
            try:
                response = client.request(method, url, json=payload)
            except httpx.HTTPError:
                continue
            limits = (
                parse_header_int(response.headers.get("x-ratelimit-limit-requests")),
                parse_header_int(response.headers.get("x-ratelimit-limit-tokens")),
            )
            if limits != (None, None):
                return limits
    return None, None


@dataclass
class LoadResult:
    """What a run produced."""

    summary: LoadSummary
    notes: list[str]
    records: list[RequestRecord]
    out_dir: Path
    locust_returncode: int
    record_files: int
    """How many Locust processes' records were merged (the master's file holds its workers')."""
    stopped_early: str | None = None

    @property
    def summary_path(self) -> Path:
        return self.out_dir / "load-summary.json"

    @property
    def rate_limit_failed(self) -> bool:
        limit = self.summary.rate_limit
        return limit is not None and limit.verdict == "fail"

    @property
    def objectives_missed(self) -> bool:
        return not self.summary.objectives_met

    @property
    def checks_failed(self) -> bool:
        """A required conformance rule broke on a response sampled under load."""
        return self.summary.checks_failed


def subprocess_environment(api_key: str) -> dict[str, str]:
    """This process's environment for a Locust (or helper) subprocess: perf importable, the key in its variable."""
    # The locustfile imports perf.*; the project root must be importable whether or not llamacert is installed.
    environment = project_environment()
    environment[API_KEY_ENV] = api_key
    return environment


def _stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run_processes(
    commands: Sequence[Sequence[str]],
    environment: dict[str, str],
    log: IO[bytes],
    timeout_s: float,
    stop_early: Callable[[], str | None] | None = None,
) -> tuple[int, str | None]:
    """Run the main Locust process and its workers; the main one's exit code, and why it was stopped early."""
    processes: list[subprocess.Popen[bytes]] = []
    stopped: str | None = None
    try:
        for command in commands:
            processes.append(subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT))
        main, workers = processes[0], processes[1:]
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    returncode = main.wait(min(1.0, max(0.0, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        log.write(f"\nllamacert: Locust ran past {timeout_s:.0f} s; stopping it\n".encode())
                        _stop(main)
                        returncode = main.returncode if main.returncode is not None else -1
                        break
                    reason = stop_early() if stop_early is not None and stopped is None else None
                    if reason is not None:
                        stopped = reason
                        log.write(f"\nllamacert: stopping early: {reason}\n".encode())
                        # SIGTERM: Locust shuts down as at the end of its run time, writing its files
                        main.send_signal(signal.SIGTERM)
        except KeyboardInterrupt:
            # Ctrl-C reached Locust too (same process group); let it shut down and write its files.
            main.wait(30)
            returncode = main.returncode
        # Workers quit when the master does; they must have closed their records files before the merge.
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                _stop(worker)
        return returncode, stopped
    finally:
        for process in processes:
            _stop(process, grace_s=5)


def summarize_records(
    records: Sequence[RequestRecord],
    *,
    request: LoadRequest,
    users: int,
    window: RunWindow,
    warmup_s: float,
    rate_limit: RateLimitExpectation | None = None,
    server_metrics: ServerMetrics | None = None,
    checks: Sequence[CheckFinding] | None = None,
    checked_responses: int = 0,
    settings: LoadSettings | None = None,
    lengths: str = APPROXIMATE_LENGTHS,
) -> LoadSummary:
    """The summary of a run's records: the measured window's metrics, objectives and goodput, what the
    workload was (from `settings`, when given), and the checks' findings, carried as given."""
    objectives = request.effective_objectives
    measured, measured_span = measured_window(records, window, warmup_s)
    return summarize(
        records,
        endpoint=request.endpoint,
        scenario=request.scenario.name,
        users=users,
        window=window,
        rate_limit=rate_limit,
        warmup_s=warmup_s,
        objectives=evaluate_objectives(measured, objectives),
        goodput=goodput(measured, objectives, measured_span.duration_s) if objectives else None,
        server_metrics=server_metrics,
        checks=checks,
        checked_responses=checked_responses,
        workload=None if settings is None else workload_info(settings, measured, lengths),
    )


def workload_info(
    settings: LoadSettings, records: Sequence[RequestRecord], lengths: str = APPROXIMATE_LENGTHS
) -> WorkloadInfo:
    """The summary's account of what was sent; `lengths` says how prompt lengths were made (`prompt_lengths`)."""
    if settings.trace is not None:
        scale = f", gaps x{settings.trace_time_scale:g}" if settings.trace_time_scale != 1 else ""
        return WorkloadInfo(
            kind="trace",
            prompt_lengths=lengths,
            description=f"replay of {settings.trace.name}{scale}, {settings.trace_block_tokens}-token blocks",
            late_requests=late_requests(records),
        )
    prompts = f"prompts of {settings.prompt_tokens} tokens"
    if settings.prompt_file is not None:
        prompts = f"prompts from {settings.prompt_file.name}"
    if settings.turns > 1:
        think = f", {settings.think_time:g} s think time" if settings.think_time else ""
        return WorkloadInfo(
            kind="multi-turn",
            prompt_lengths=lengths,
            description=f"conversations of {settings.turns} turns{think}; each turn adds {prompts} to the history",
        )
    if settings.prefix_tokens:
        prefix = settings.workload().prefix
        return WorkloadInfo(
            kind="shared-prefix",
            prompt_lengths=lengths,
            description=f"shared prefix of {prefix}; then {prompts}",
        )
    if settings.prompt_file is not None:
        return WorkloadInfo(kind="prompt-file", prompt_lengths="as in the file", description=prompts)
    return WorkloadInfo(kind="synthetic", prompt_lengths=lengths, description=prompts)


def _write_summary(path: Path, summary: LoadSummary) -> None:
    path.write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")


def run_load(request: LoadRequest, *, profile_limits: tuple[int | None, int | None] = (None, None)) -> LoadResult:
    """Run the scenario (`request.runs` times) and write load-summary.json, records.jsonl, Locust's CSVs and
    locust.log to out_dir; repeated runs each get their own run-N directory, and the summary in out_dir is the
    last run's with every gate metric's median and range over the runs."""
    calibration = None
    if request.exact_prompts and request.scenario.prompt_file is None:
        calibration = calibrate_prompts(request.endpoint, request.api_key, request.auth_header)
    if request.runs == 1:
        return _run_once(request, request.out_dir, profile_limits, calibration)
    results = [
        _run_once(request, request.out_dir / f"run-{number}", profile_limits, calibration)
        for number in range(1, request.runs + 1)
    ]
    last = results[-1]
    update: dict[str, Any] = {"runs": run_statistics([result.summary for result in results])}
    if request.check_fraction:
        # a rule broken in any run is broken: the checks of every run count, not only the last run's
        update["checks"] = combine_findings([result.summary.checks or [] for result in results])
        update["checked_responses"] = sum(result.summary.checked_responses for result in results)
    summary = last.summary.model_copy(update=update)
    request.out_dir.mkdir(parents=True, exist_ok=True)
    _write_summary(request.out_dir / "load-summary.json", summary)
    returncode = next((result.locust_returncode for result in results if result.locust_returncode), 0)
    return LoadResult(summary, last.notes, last.records, request.out_dir, returncode, last.record_files)


def _run_once(
    request: LoadRequest,
    out_dir: Path,
    profile_limits: tuple[int | None, int | None],
    calibration: PromptCalibration | None = None,
) -> LoadResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    limits = (request.limit_rpm or profile_limits[0], request.limit_tpm or profile_limits[1])
    if request.scenario.rate_limit is not None and limits == (None, None):
        kind = (request.mix or request.scenario.mix)[0]
        limits = probe_limits(request.endpoint, request.api_key, request.auth_header, kind)
    plan = plan_run(request, limits)
    if calibration is not None and calibration.words is not None:
        plan = replace(plan, settings=replace(plan.settings, prompt_words=calibration.words))
    records_dir = out_dir / ".records"
    shutil.rmtree(records_dir, ignore_errors=True)
    # remote workers connect to the port the user gave; local ones to any free port
    master_port = request.master_bind_port if request.expect_workers else free_loopback_port()
    commands = locust_commands(
        plan, request, csv_prefix=out_dir / CSV_PREFIX, records_dir=records_dir, master_port=master_port
    )
    (out_dir / "locust-command.json").write_text(json.dumps(commands, indent=2) + "\n", encoding="utf-8")
    scraper = None
    if request.scrape_metrics:
        scraper = Scraper(
            f"{request.endpoint.rstrip('/')}/metrics",
            request.scrape_interval_s,
            headers=_auth_headers(request.api_key, request.auth_header),
        )
        scraper.start()
    started = time.time()
    timeout = math.inf if request.web else plan.run_time_s + request.request_timeout_s + _STARTUP_MARGIN_S
    try:
        with (out_dir / "locust.log").open("wb") as log:
            monitor = request.stop_early
            returncode, stopped = _run_processes(
                commands,
                subprocess_environment(request.api_key),
                log,
                timeout,
                None if monitor is None else lambda: monitor(out_dir),
            )
    finally:
        if scraper is not None:
            scraper.stop()
    record_files = len(list(records_dir.glob(RECORD_FILE_PATTERN)))
    records = merge_record_files(records_dir, out_dir / "records.jsonl")
    checks: list[CheckFinding] | None = None
    checked = 0
    if request.check_fraction:
        checked = merge_exchange_files(records_dir, out_dir / EXCHANGES_FILE)
        checks = check_exchanges(iter_exchanges(out_dir / EXCHANGES_FILE), request.check_profile)
    shutil.rmtree(records_dir, ignore_errors=True)

    window = RunWindow.of(records) if records else RunWindow(started, 0.0)
    expectation = plan.rate_limit
    if expectation is not None:
        seen_rpm, seen_tpm = limits_from_headers(records)
        expectation = replace(
            expectation,
            limit_rpm=expectation.limit_rpm or seen_rpm,
            limit_tpm=expectation.limit_tpm or seen_tpm,
            # Requests still running this long after sending stopped are hung.
            stopped_at=window.start + plan.run_time_s,
        )
    measured_start = window.start + plan.warmup_s
    summary = summarize_records(
        records,
        request=request,
        users=plan.users,
        window=window,
        warmup_s=plan.warmup_s,
        rate_limit=expectation,
        server_metrics=None if scraper is None else scraper.result(measured_start),
        checks=checks,
        checked_responses=checked,
        settings=plan.settings,
        lengths=prompt_lengths(calibration),
    )
    _write_summary(out_dir / "load-summary.json", summary)
    return LoadResult(summary, summary_notes(records), records, out_dir, returncode, record_files, stopped)


def _stats_row(label: str, stats: LatencyStats | None) -> str:
    if stats is None:
        return f"{label:<8} {'-':>9}"
    values = (stats.mean, stats.p50, stats.p90, stats.p95, stats.p99, stats.max)
    return f"{label:<8}" + "".join(f" {value:>9,.1f}" for value in values)


def format_summary(result: LoadResult) -> str:
    """A short plain-text table of the run."""
    summary = result.summary
    warmup = f" (after a {summary.warmup_s:g} s warm-up of {summary.warmup_requests:,} requests)"
    lines = [
        f"scenario {summary.scenario} on {summary.endpoint}: {summary.duration_s:.1f} s measured"
        + (warmup if summary.warmup_s else "")
        + f", {summary.users} users",
        f"requests {summary.requests:,}: ok {summary.ok:,}, 429 {summary.rejected_429:,}, "
        f"errors {summary.errors:,}; ok requests/s {summary.requests_per_s:,.2f}; "
        f"output tokens/s {summary.output_tokens_per_s:,.1f}",
    ]
    if summary.goodput is not None:
        thresholds = ", ".join(f"{name} <= {value:g} ms" for name, value in summary.goodput.thresholds_ms.items())
        lines.append(
            f"goodput {summary.goodput.requests_per_s:,.2f} requests/s, "
            f"{summary.goodput.output_tokens_per_s:,.1f} output tokens/s "
            f"({summary.goodput.good_requests:,} requests with {thresholds or 'no per-request threshold'})"
        )
    lines += [
        f"{'':<8}" + "".join(f" {key:>9}" for key in ("mean", "p50", "p90", "p95", "p99", "max")),
        _stats_row("TTFT ms", summary.ttft_ms),
        _stats_row("ITL ms", summary.itl_ms),
        _stats_row("e2e ms", summary.e2e_ms),
    ]
    workload = summary.workload
    if workload is not None and workload.kind != "synthetic":
        lines.append(f"workload {workload.kind}: {workload.description}")
    for turn in summary.turns or ():
        prompt = "-" if turn.prompt_tokens_mean is None else f"{turn.prompt_tokens_mean:,.0f}"
        ttft = "-" if turn.ttft_ms is None else f"{turn.ttft_ms.p50:,.1f}"
        e2e = "-" if turn.e2e_ms is None else f"{turn.e2e_ms.p50:,.1f}"
        lines.append(
            f"  turn {turn.turn}: {turn.requests:,} requests, mean prompt {prompt} tokens, "
            f"TTFT p50 {ttft} ms, e2e p50 {e2e} ms"
        )
    if workload is not None and workload.late_requests:
        lines.append(
            f"note: {workload.late_requests:,} trace requests went out over 100 ms late (every user was busy): "
            "give more --users"
        )
    if workload is not None and workload.prompt_lengths.startswith("approximate"):
        lines.append(f"note: prompt lengths are {workload.prompt_lengths}; token counts are the endpoint's usage")
    elif workload is not None and workload.prompt_lengths.startswith("exact"):
        lines.append(f"prompt lengths {workload.prompt_lengths}")
    for objective in summary.objectives:
        lines.append(f"objective {objective.name}: {'met' if objective.met else 'MISSED'}: {objective.text}")
    limit = summary.rate_limit
    if limit is not None:
        rpm = "-" if limit.limit_rpm is None else f"{limit.limit_rpm:,}"
        tpm = "-" if limit.limit_tpm is None else f"{limit.limit_tpm:,}"
        lines.append(
            f"rate limit {rpm} requests/min, {tpm} tokens/min: offered {limit.offered_rpm:,.1f} requests/min, "
            f"accepted {limit.accepted_rpm:,.1f} requests/min and {limit.accepted_tpm:,.0f} tokens/min: "
            f"{limit.verdict.upper()}"
        )
        lines += [f"  - {reason}" for reason in limit.reasons]
    if summary.runs is not None:
        lines.append(f"{summary.runs.runs} runs (median, range):")
        for name, runs in summary.runs.metrics.items():
            lines.append(f"  {name}: {runs.median:,.2f} ({runs.low:,.2f} to {runs.high:,.2f})")
    server = summary.server_metrics
    if server is not None:
        found = ", ".join(series.name for series in server.series) or "no known series"
        lines.append(f"server metrics: {server.scrapes} scrapes of {server.url}: {found}")
        if server.note:
            lines.append(f"  - {server.note}")
    lines += _check_lines(summary)
    lines += [f"note: {note}" for note in result.notes]
    if result.locust_returncode != 0:
        lines.append(f"note: Locust exited with {result.locust_returncode}; see {result.out_dir / 'locust.log'}")
    checked = f", {EXCHANGES_FILE} (the checked responses)" if summary.checks is not None else ""
    lines.append(
        f"files: {result.out_dir}/load-summary.json, records.jsonl (from {result.record_files} Locust processes), "
        f"{CSV_PREFIX}_stats.csv, locust.log{checked}"
    )
    return "\n".join(lines)


def _check_lines(summary: LoadSummary) -> list[str]:
    """The checks under load: counts of rules by outcome, and each failed rule with its first failing example."""
    if summary.checks is None:
        return []
    outcomes = [finding.outcome for finding in summary.checks]
    lines = [
        f"checks: {summary.checked_responses:,} sampled responses judged by {len(outcomes)} conformance rules: "
        f"{outcomes.count('passed')} passed, {outcomes.count('failed')} failed, {outcomes.count('not run')} not run"
    ]
    for finding in summary.failed_checks:
        judged = finding.passed + finding.failed
        lines.append(
            f"  FAILED {finding.rule_id} ({finding.severity}): {finding.failed:,} of {judged:,} sampled responses: "
            f"{finding.title}"
        )
        if finding.first_failure is not None:
            lines += [
                f"    first: {finding.first_failure.message}",
                f"    request: {finding.first_failure.request[:200]}",
                f"    response: {finding.first_failure.response[:200]}",
            ]
    return lines
