"""Locust users that load a Llama API endpoint: completions and chat, streamed or not, on /v1/... or Azure routes.

Run it through `llamacert load`, or with Locust directly from the project root (`python -m locust -f
perf/locustfile.py --host URL --mix chat+stream ...`, with the options of perf/settings.py; the perf package
must be importable, as it is from the root or with llamacert installed).
Per request it stamps raw times and writes a record (perf/records.py); Locust's statistics get the request
itself (its full duration, not just the headers) plus "TTFT" and "ITL" entries of request type METRIC, so the
web UI and the CSVs show them. Add perf/shapes.py to -f for a stepped sweep. A user sends what perf/workload.py
plans (one request, or a conversation turn by turn, its answers appended to the history) or, with --trace, the
trace's entries at their recorded times (perf/trace.py).
Workers (on this machine or others) send their records to the master with Locust's own messages, so the
master's records file holds every request and no disk is shared; with --stop-after the master ends the test
itself and waits for each worker's last records before it quits.
With --check-fraction (`llamacert load --check`) each process records a sample of its requests whole, as
conformance exchanges (perf/checks.py), beside its records and by the same way to the master; the rules judge
them after the run, so no rule slows Locust down.
"""

from __future__ import annotations

import atexit
import csv
import logging
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol

import gevent
from gevent import GreenletExit
from geventhttpclient.header import Headers
from locust import FastHttpUser, events, task
from locust.argument_parser import LocustArgumentParser
from locust.contrib.fasthttp import FAILURE_EXCEPTIONS, ResponseContextManager
from locust.env import Environment
from locust.event import EventHook
from locust.rpc import Message
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from perf.checks import ExchangeRecorder, ExchangeSampler, ExchangeWriter, exchange_file_name
from perf.metrics import itl_ms, ttft_ms
from perf.records import INTERRUPTED, TIMEOUT, RecordWriter, RequestRecord, encode_record, record_file_name
from perf.responses import StreamReader, parse_body, parse_header_int, parse_retry_after
from perf.settings import OPTIONS, LoadSettings
from perf.trace import TraceEntry, TraceReplay
from perf.workload import Conversation, PlannedRequest, Workload
from spec.models import AZURE_PASS_THROUGH
from spec.profiles import RATE_LIMIT_HEADERS

__all__ = ["RECORDS_MESSAGE", "ForwardingWriter", "LlamaUser", "MasterCollector"]

logger = logging.getLogger(__name__)

RECORDS_MESSAGE: Final = "llamacert_records"
"""Worker -> master: {"lines": [encoded records], "exchanges": [encoded sampled exchanges], "final": bool};
final once the worker's users have stopped."""
_FORWARD_INTERVAL_S: Final = 1.0
_FINAL_RECORDS_WAIT_S: Final = 30.0
_TRACE_SPENT_WAIT_S: Final = 3600.0


class ForwardingWriter:
    """A worker's record and exchange sink: batches of encoded records and sampled exchanges go to the master
    every second and when users stop."""

    def __init__(self, runner: WorkerRunner) -> None:
        self.path = Path(f"<master of {record_file_name()}>")
        self._runner = runner
        self._lines: list[bytes] = []
        self._exchanges: list[bytes] = []
        self.written = 0
        self._forwarder = gevent.spawn(self._forward_every_interval)

    def write(self, record: RequestRecord) -> None:
        self._lines.append(encode_record(record))
        self.written += 1

    def write_exchange(self, line: bytes) -> None:
        self._exchanges.append(line)

    def _send(self, *, final: bool) -> None:
        lines, self._lines = self._lines, []
        exchanges, self._exchanges = self._exchanges, []
        if lines or exchanges or final:
            message = {"lines": lines, "exchanges": exchanges, "final": final}
            self._runner.send_message(RECORDS_MESSAGE, message)

    def _forward_every_interval(self) -> None:
        while True:
            gevent.sleep(_FORWARD_INTERVAL_S)
            self._send(final=False)

    def flush(self) -> None:
        """Users have stopped (test_stop): send what is left, marked final."""
        self._send(final=True)

    def close(self) -> None:
        self._forwarder.kill(block=False)


def _close_collector(environment: Environment) -> None:
    assert _collector is not None
    runner = environment.runner
    expected = len(runner.worker_indexes) if isinstance(runner, MasterRunner) else 0
    if len(_collector.finished_workers) < expected:
        logger.error(
            "llamacert: only %d of %d workers sent their last records", len(_collector.finished_workers), expected
        )
    _collector.writer.close()
    _collector.exchanges.close()


class MasterCollector:
    """The master's side: appends every worker's forwarded records (and sampled exchanges) to the master's files."""

    def __init__(self, path: Path) -> None:
        self.writer = RecordWriter(path)
        self.exchanges = ExchangeWriter(path.parent / exchange_file_name())
        self.finished_workers: set[str] = set()
        """Workers whose users have stopped and whose last records are in."""

    def receive(self, environment: Environment, msg: Message, **_: Any) -> None:
        for line in msg.data["lines"]:
            self.writer.write_line(line)
        for line in msg.data.get("exchanges", ()):
            self.exchanges.write_exchange(line)
        if msg.data["final"]:
            self.finished_workers.add(str(msg.node_id))


_collector: MasterCollector | None = None


def _listen(hook: EventHook, handler: Callable[..., None]) -> None:
    hook.add_listener(handler)  # type: ignore[no-untyped-call]  # locust leaves add_listener unannotated


def _add_options(parser: LocustArgumentParser, **_: Any) -> None:
    # On the parser itself, not a group: only LocustArgumentParser.add_argument takes the web-UI flags.
    for option in OPTIONS:
        parser.add_argument(option.flag, **option.kwargs)


_listen(events.init_command_line_parser, _add_options)


def _settings(environment: Environment) -> LoadSettings:
    options = environment.parsed_options
    return LoadSettings.from_options(options, users=getattr(options, "num_users", None))


def _check_options(environment: Environment, **_: Any) -> None:
    # A worker's own options are not the run's: the master sends its options with the first spawn message.
    if environment.parsed_options is None or isinstance(environment.runner, WorkerRunner):
        return
    try:
        settings = _settings(environment)
        settings.workload()
        settings.trace_replay()
    except (ValueError, OSError) as error:
        logger.error("llamacert: %s", error)
        sys.exit(2)
    # Fix --rate's share per user now, so workers (which never see -u) get it with the master's options.
    environment.parsed_options.user_rate = settings.user_rate
    csv_prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if csv_prefix:
        atexit.register(_write_final_csv, environment, csv_prefix)
    if isinstance(environment.runner, MasterRunner):
        global _collector  # noqa: PLW0603  # one collector per Locust process, as Locust has one runner
        _collector = MasterCollector(settings.records_dir / record_file_name())
        environment.runner.register_message(RECORDS_MESSAGE, _collector.receive)
    stop_after = float(getattr(environment.parsed_options, "stop_after", 0) or 0)
    if stop_after > 0:
        _listen(environment.events.test_start, lambda **_: gevent.spawn_later(stop_after, _stop_then_quit, environment))


def _stop_then_quit(environment: Environment) -> None:
    """End the test so that nothing in flight is lost: each worker is told to quit, which makes it stop its users
    (waiting up to --stop-timeout for their requests), send its last records and statistics, and tell the master
    it quit; when the last worker has quit, Locust's master stops and quits by itself (headless)."""
    runner = environment.runner
    assert runner is not None
    if not isinstance(runner, MasterRunner) or not runner.clients.all:
        runner.quit()
        return
    for client in list(runner.clients.all):
        runner.server.send_to_client(Message("quit", None, client.id))  # type: ignore[no-untyped-call]  # locust leaves it unannotated
    # a worker that never answers must not keep the run alive
    gevent.sleep(environment.stop_timeout + _FINAL_RECORDS_WAIT_S)
    logger.error("llamacert: workers did not quit within %.0f s of the end; quitting", _FINAL_RECORDS_WAIT_S)
    runner.quit()


def _write_final_csv(environment: Environment, prefix: str) -> None:
    """Write the final statistics over Locust's CSVs once Locust has closed them.

    Locust's headless CSV writer rewrites the files every second and writes nothing more at shutdown, so the
    files can miss the last second of a run; at interpreter exit the statistics are final (workers included).
    """
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (
        ("_stats.csv", writer.requests_csv),
        ("_failures.csv", writer.failures_csv),
        ("_exceptions.csv", writer.exceptions_csv),
    ):
        with open(f"{prefix}{suffix}", "w", newline="", encoding="utf-8") as file:
            write(csv.writer(file))


_listen(events.init, _check_options)


def _start(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        return  # a master runs no users; its collector writes what the workers send
    settings = _settings(environment)
    writer: RecordSink
    exchanges: ExchangeSink
    if isinstance(environment.runner, WorkerRunner):
        # one forwarder per worker process, reused when the master starts another test
        existing = LlamaUser.writer
        writer = existing if isinstance(existing, ForwardingWriter) else ForwardingWriter(environment.runner)
        exchanges = writer
    else:
        writer = RecordWriter(settings.records_dir / record_file_name())
        exchanges = ExchangeWriter(settings.records_dir / exchange_file_name())
    checked = exchanges if settings.check_fraction else None
    LlamaUser.configure(settings, settings.workload(), writer, settings.trace_replay(), checked)


_listen(events.test_start, _start)


def _flush(environment: Environment, **_: Any) -> None:
    if isinstance(LlamaUser.exchange_sink, ExchangeWriter):
        LlamaUser.exchange_sink.flush()
    if LlamaUser.writer is not None:
        LlamaUser.writer.flush()


_listen(events.test_stop, _flush)


def _close(environment: Environment, **_: Any) -> None:
    if isinstance(LlamaUser.exchange_sink, ExchangeWriter):
        LlamaUser.exchange_sink.close()
    if LlamaUser.writer is not None:
        LlamaUser.writer.close()
    if _collector is not None:
        _close_collector(environment)


_listen(events.quitting, _close)


class RecordSink(Protocol):
    """Where a process's records go: a file (standalone) or the master (a worker)."""

    path: Path
    written: int

    def write(self, record: RequestRecord) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class ExchangeSink(Protocol):
    """Where a process's sampled exchanges go: a file (standalone) or the master (a worker's ForwardingWriter)."""

    def write_exchange(self, line: bytes) -> None: ...


def _header(headers: Headers | None, name: str) -> str | None:
    value = headers.get(name) if headers is not None else None
    return value[0] if isinstance(value, list) else value


class LlamaUser(FastHttpUser):
    """One client of the endpoint: sends requests drawn from the workload, closed-loop or open-loop.

    Open loop (arrival constant or poisson): each user follows its own schedule of sends at `user_rate`, so
    U users make a process of rate U * user_rate, Poisson when each user's gaps are exponential. A user busy
    with a slow request sends late rather than twice, so give open-loop runs users ≫ rate * latency.
    """

    settings: ClassVar[LoadSettings] = LoadSettings()
    workload: ClassVar[Workload | None] = None
    writer: ClassVar[RecordSink | None] = None
    exchange_sink: ClassVar[ExchangeSink | None] = None
    """Set when requests are checked (--check-fraction): sampled requests are recorded whole and sent here."""
    sampler: ClassVar[ExchangeSampler | None] = None
    trace: ClassVar[TraceReplay | None] = None
    """Trace replay: the users of this process take the trace's entries in turn, each sent when it is due."""
    _trace_entries: ClassVar[Iterator[TraceEntry]] = iter(())
    _trace_start: ClassVar[float] = 0.0
    _trace_start_wall: ClassVar[float] = 0.0
    _users_started: ClassVar[int] = 0

    # Each user sends one request at a time; keep-alive connections are reused between requests.
    concurrency = 1

    @classmethod
    def configure(
        cls,
        settings: LoadSettings,
        workload: Workload,
        writer: RecordSink,
        trace: TraceReplay | None = None,
        exchanges: ExchangeSink | None = None,
    ) -> None:
        cls.trace = trace
        if trace is not None:
            # the replay's clock starts with the test: the trace's first request is sent as the users start
            cls._trace_entries = iter(trace.entries)
            cls._trace_start, cls._trace_start_wall = time.perf_counter(), time.time()
        if cls.writer is not None and cls.writer.path != writer.path:
            cls.writer.close()
        cls.settings, cls.workload = settings, workload
        cls.writer = cls.writer if cls.writer is not None and cls.writer.path == writer.path else writer
        if isinstance(cls.exchange_sink, ExchangeWriter) and cls.exchange_sink is not exchanges:
            cls.exchange_sink.close()
        cls.exchange_sink = exchanges
        cls.sampler = None if exchanges is None else ExchangeSampler(settings.check_fraction, settings.seed)
        # A stream may pause between tokens for long; the per-request timeout is the one that counts.
        cls.network_timeout = cls.connection_timeout = settings.request_timeout

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        LlamaUser._users_started += 1
        seed = self.settings.seed
        self._rng = random.Random(seed * 1_000_003 + LlamaUser._users_started if seed else None)
        self._next_send = 0.0
        self._not_before = 0.0
        self._trace_entry: TraceEntry | None = None
        self._conversation: Conversation | None = None
        key = self.settings.endpoint_key
        self._headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if key:
            self._headers.update(
                {"Authorization": f"Bearer {key}"} if self.settings.auth_header == "bearer" else {"api-key": key}
            )

    def on_start(self) -> None:
        # Start open-loop users at random phases, or every user would send its first request at once.
        if self.settings.arrival != "closed":
            self._next_send = time.perf_counter() + self._gap()
            gevent.sleep(max(0.0, self._next_send - time.perf_counter()))

    def _gap(self) -> float:
        rate = self.settings.user_rate
        if self.settings.arrival == "poisson":
            return self._rng.expovariate(rate)
        return self._rng.uniform(0, 1 / rate) if self._next_send == 0.0 else 1 / rate

    def wait_time(self) -> float:
        now = time.perf_counter()
        if self.trace is not None:
            return self._claim_trace_entry(self.trace, now)
        if self._conversation is not None:
            # mid-conversation: the user thinks, then sends the next turn, whatever the arrival schedule
            return max(self.settings.think_time, self._not_before - now)
        if self.settings.arrival == "closed":
            return max(0.0, self._not_before - now)
        # The schedule runs from the previous scheduled send, not from when the answer came (open loop);
        # a user that fell behind resumes now instead of firing a burst to catch up.
        self._next_send = max(self._next_send + self._gap(), now, self._not_before)
        return self._next_send - now

    @task
    def generate(self) -> None:
        assert self.workload is not None, "test_start configures the workload"
        # Locust stops a waiting user by killing it, and the kill lands at the user's next yield; with no wait
        # that can be mid-request, after the user has already moved on from waiting. Yielding once first lets
        # a pending kill land here, before anything is sent.
        gevent.sleep(0)
        if self.trace is not None:
            self._replay_next(self.trace)
        elif self.workload.turns > 1:
            self._converse(self.workload)
        else:
            self._settle(self._send(self.workload.plan(self._rng))[0])

    def _settle(self, record: RequestRecord) -> None:
        if record.rejected and self.settings.honour_retry_after:
            wait = record.retry_after_ms / 1000 if record.retry_after_ms is not None else record.retry_after
            self._not_before = time.perf_counter() + (wait or 0.0)
        self._report_metrics(record)

    def _converse(self, workload: Workload) -> None:
        """One turn of the user's conversation (a new one when none is going on); its answer joins the history.
        The think time before the next turn is Locust's wait (wait_time), so a stopping test need not wait for a
        conversation to end."""
        if self._conversation is None:
            self._conversation = workload.conversation(self._rng)
        conversation = self._conversation
        record, answer = self._send(conversation.next_request(self._rng))
        self._settle(record)
        if not record.ok or answer is None:
            self._conversation = None  # without the assistant's answer the conversation cannot honestly go on
            return
        conversation.answered(answer)
        if conversation.done:
            self._conversation = None

    def _claim_trace_entry(self, trace: TraceReplay, now: float) -> float:
        """Take the trace's next entry and wait until it is due. The wait is Locust's (wait_time), not the task's,
        so that a test stopping kills a waiting user at once instead of waiting for its task to end."""
        self._trace_entry = next(LlamaUser._trace_entries, None)
        if self._trace_entry is None:
            return _TRACE_SPENT_WAIT_S  # nothing left to send; the run ends after the trace's last request
        return max(0.0, LlamaUser._trace_start + trace.due_s(self._trace_entry) - now)

    def _replay_next(self, trace: TraceReplay) -> None:
        """Send the entry claimed while waiting (open loop: whatever earlier requests are still running)."""
        entry, self._trace_entry = self._trace_entry, None
        if entry is None:
            return  # a user's first task comes before any wait: it has claimed nothing yet
        assert self.workload is not None
        planned = trace.plan(entry, self.workload.draw_kind(self._rng), self._rng)
        self._settle(self._send(planned, t_due=LlamaUser._trace_start_wall + trace.due_s(entry))[0])

    def _report_metrics(self, record: RequestRecord) -> None:
        fire = self.environment.events.request.fire
        for name, value in (("TTFT", ttft_ms(record)), ("ITL", itl_ms(record))):
            if value is not None:
                fire(
                    request_type="METRIC", name=name, response_time=value, response_length=0, exception=None, context={}
                )

    def _send(self, planned: PlannedRequest, t_due: float | None = None) -> tuple[RequestRecord, str | None]:
        """Send one request and read its answer, stamping times; report it to Locust with its full duration.

        Returns the record and, when the plan keeps it, the answer's text."""
        kind = planned.kind
        t0 = time.perf_counter()
        t_send = time.time()
        record = RequestRecord(
            route=kind.route, stream=kind.stream, t_send=t_send, t_end=t_send, status=0, turn=planned.turn, t_due=t_due
        )
        answer: str | None = None

        def stamp() -> float:
            # Wall-clock start plus a monotonic offset: comparable across processes, precise within a request.
            return t_send + (time.perf_counter() - t0)

        # the workload's Llama fields (ignore_eos, stream_options) are extras on the Azure routes (D40)
        headers = self._headers if kind.route_family == "llama" else {**self._headers, **AZURE_PASS_THROUGH}
        recorder = None
        if self.sampler is not None and self.sampler.take():
            recorder = ExchangeRecorder(kind.route, planned.body, headers, t_send)
        timer = gevent.Timeout(self.settings.request_timeout)
        timer.start()
        try:
            response = self.client.request(
                "POST",
                kind.route,
                name=planned.stats_name,
                data=planned.body,  # type: ignore[arg-type]  # bytes are sent as they are
                headers=headers,
                stream=True,
                catch_response=True,
            )
            with response:
                answer = self._read(response, record, stamp, recorder, keep_answer=planned.keep_answer)
        # _read reports every outcome it sees, timeouts included; our timer can still fire at another yield
        # point, and the test can stop, and then Locust has not been told about this request yet.
        except gevent.Timeout as error:
            if error is not timer:
                raise
            self._fail_unreported(
                planned, record, f"{TIMEOUT}: no complete answer in {self.settings.request_timeout:g} s", stamp
            )
        except GreenletExit:
            self._fail_unreported(planned, record, f"{INTERRUPTED}: still running when the test stopped", stamp)
            raise
        finally:
            timer.close()
            # Written here so that a request cut off by the test stopping is in the records as in Locust's stats.
            if self.writer is not None:
                self.writer.write(record)
        return record, answer if record.ok else None

    def _read(
        self,
        response: ResponseContextManager,
        record: RequestRecord,
        stamp: Callable[[], float],
        recorder: ExchangeRecorder | None = None,
        *,
        keep_answer: bool = False,
    ) -> str | None:
        """Read the answer into the record (and the recorder of a sampled request); its text when `keep_answer`."""
        record.t_first_byte = stamp()
        answer: str | None = None
        record.status = status = response.status_code
        headers = response.headers
        length = 0
        error = getattr(response, "error", None)
        if recorder is not None and status != 0:
            recorder.answered(status, headers.items() if headers is not None else (), record.t_first_byte)
        record.limit_requests = parse_header_int(_header(headers, "x-ratelimit-limit-requests"))
        record.limit_tokens = parse_header_int(_header(headers, "x-ratelimit-limit-tokens"))
        if status == 429:
            record.missing_rate_limit_headers = [name for name in RATE_LIMIT_HEADERS if _header(headers, name) is None]
        try:
            if status == 0:
                # Locust catches timeouts (ours or the socket's) while waiting for the headers as failures.
                timed_out = isinstance(error, gevent.Timeout | TimeoutError)
                record.error = f"{TIMEOUT if timed_out else 'no response'}: {error!r}"
            elif 200 <= status < 300 and record.stream:
                length, answer = self._read_stream(response, record, stamp, recorder, keep_answer)
            else:
                body = response.content or b""
                length = len(body)
                if recorder is not None:
                    recorder.body_text = body.decode("utf-8", errors="replace")
                outcome = parse_body(body)
                if 200 <= status < 300:
                    record.prompt_tokens, record.completion_tokens = outcome.prompt_tokens, outcome.completion_tokens
                    record.finish_reason, record.error = outcome.finish_reason, outcome.error
                    answer = outcome.text
                else:
                    record.error = f"HTTP {status}" + (f": {outcome.error}" if outcome.error else "")
                    record.retry_after = parse_retry_after(_header(headers, "retry-after"))
                    record.retry_after_ms = parse_header_int(_header(headers, "retry-after-ms"))
        except FAILURE_EXCEPTIONS as failure:
            timed_out = isinstance(failure, gevent.Timeout | TimeoutError)
            record.error = f"{TIMEOUT if timed_out else 'connection failed'} while reading: {failure!r}"
            if recorder is not None:
                recorder.transport_error = f"{type(failure).__name__}: {failure}"
        record.t_end = stamp()
        # No answer, or one past the timeout, is a load figure (errors, hung), not an answer for the rules.
        if recorder is not None and self.exchange_sink is not None and status != 0 and not record.hung:
            self.exchange_sink.write_exchange(recorder.encode(record.t_end))
        # Locust timed only up to the headers (stream=True); report the whole request, as the record has it.
        response.request_meta["response_time"] = (record.t_end - record.t_send) * 1000
        response.request_meta["response_length"] = length
        if record.ok:
            response.success()  # type: ignore[no-untyped-call]  # locust leaves it unannotated
        else:
            # One message per kind of failure keeps Locust's failure table short; the record has the details.
            http_error = not 200 <= status < 300 and status != 0
            message = f"HTTP {status}" if http_error else (record.error or "").partition(":")[0].partition(" while")[0]
            response.failure(message)  # type: ignore[no-untyped-call]  # locust leaves it unannotated
        return answer if keep_answer else None

    @staticmethod
    def _read_stream(
        response: ResponseContextManager,
        record: RequestRecord,
        stamp: Callable[[], float],
        recorder: ExchangeRecorder | None,
        keep_answer: bool,
    ) -> tuple[int, str | None]:
        content_type = _header(response.headers, "content-type") or ""
        if not content_type.startswith("text/event-stream"):
            body = response.content or b""
            record.error = f"stream requested, got {content_type or 'no content type'}"
            if recorder is not None:
                recorder.body_text = body.decode("utf-8", errors="replace")
            return len(body), None
        # FastResponse.iter_content(n) waits until n bytes have arrived (Locust's streaming caveat), which would
        # delay and batch token events; geventhttpclient's readline returns each line as soon as it is complete.
        raw = response._response
        assert raw is not None
        reader = StreamReader(keep_text=keep_answer)
        length = 0
        try:
            while line := raw.readline(b"\n"):
                length += len(line)
                at = stamp()
                reader.feed_line(line, at)
                if recorder is not None:
                    recorder.line(line, at)
            reader.finish(stamp())
        finally:
            # Keep what arrived even when the stream broke off: a hung request's record shows how far it got.
            record.token_event_times = reader.token_event_times
            record.t_first_token = reader.first_token_time
            record.prompt_tokens, record.completion_tokens = reader.prompt_tokens, reader.completion_tokens
            record.finish_reason, record.error = reader.finish_reason, reader.error
        return length, reader.text if keep_answer else None

    def _fail_unreported(
        self, planned: PlannedRequest, record: RequestRecord, error: str, stamp: Callable[[], float]
    ) -> None:
        """A request cut short by our timer or by the test stopping: record it and report it to Locust."""
        record.error = error
        record.t_end = stamp()
        self.environment.events.request.fire(
            request_type="POST",
            name=planned.stats_name,
            response_time=(record.t_end - record.t_send) * 1000,
            response_length=0,
            exception=Exception(error.partition(":")[0]),
            context={},
        )
