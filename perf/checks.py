"""`llamacert load --check`: a sample of the load test's exchanges, recorded whole, judged by the conformance rules.

In Locust, each process samples a fraction of its requests (seeded), records each sampled one as a
conformance `Exchange` (request, status, headers, body or every SSE event with its framing) and appends it
to a JSONL file, as `conformance.exchange.save_exchanges` writes them; a worker sends its lines to the master
with its records. No rule runs inside Locust, so checking costs the load generator only the recording. After
the run `check_exchanges` judges the saved exchanges with the single-exchange rules (`conformance.rules.judge`)
and lists every rule: passed, failed (with counts and the first failing example), or not run, with why.
"""

from __future__ import annotations

import json
import os
import random
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from conformance.exchange import (
    Exchange,
    RecordedRequest,
    SseEvent,
    encode_exchange,
    load_exchanges,
    save_exchanges,
    sse_event,
)
from conformance.rules import RULES, JudgeContext, Rule, RuleOutcome, judge
from perf.records import RecordWriter
from spec.load_summary import CheckExample, CheckFinding
from spec.profiles import Profile
from spec.sse import SseDecoder, SseFraming

__all__ = [
    "DEFAULT_CHECK_FRACTION",
    "EXCHANGE_FILE_PATTERN",
    "NOT_RUN_PROBE",
    "NOT_RUN_UNEXERCISED",
    "ExchangeRecorder",
    "ExchangeSampler",
    "ExchangeWriter",
    "check_exchanges",
    "combine_findings",
    "exchange_file_name",
    "merge_exchange_files",
    "parse_check_fraction",
]

DEFAULT_CHECK_FRACTION: Final = 0.1
"""`--check` without a value: one request in ten is recorded and judged."""
EXCHANGE_FILE_PATTERN: Final = "exchanges-*.jsonl"
"""Each Locust process appends its sampled exchanges to its own file in the records directory."""
_SECRET_HEADERS: Final = frozenset({"authorization", "api-key"})
_REDACTED: Final = "<redacted>"
_EXCERPT_CHARS: Final = 600

NOT_RUN_PROBE: Final = "needs a probe (a second, related request) that a load test does not send"
NOT_RUN_UNEXERCISED: Final = "no sampled response exercised it (the workload does not use what it judges)"


def parse_check_fraction(text: str) -> float:
    """The share of requests `--check=FRACTION` samples: a number in (0, 1] or a percentage such as 10%."""
    value = text.strip()
    percent = value.endswith("%")
    try:
        number = float(value.removesuffix("%"))
    except ValueError:
        raise ValueError(f"--check: expected a share such as 0.1 or 10%, not {text!r}") from None
    fraction = number / 100 if percent else number
    if not 0 < fraction <= 1:
        raise ValueError(f"--check: the share of requests to check must be above 0 and at most 1 (100%), got {text!r}")
    return fraction


def exchange_file_name() -> str:
    """This process's exchanges file name: unique per host and process, so workers never share a file."""
    return f"exchanges-{socket.gethostname()}-{os.getpid()}.jsonl"


class ExchangeSampler:
    """Decides which requests are recorded: each with probability `fraction`, from a seeded generator.

    Its own generator, so checking never changes which prompts and request kinds the workload draws.
    """

    def __init__(self, fraction: float, seed: int = 0) -> None:
        self.fraction = fraction
        self._rng = random.Random(seed * 7_919 + 17 if seed else None)

    def take(self) -> bool:
        return self.fraction >= 1 or self._rng.random() < self.fraction


class ExchangeWriter:
    """Appends sampled exchanges, already encoded, to this process's JSONL file (opened on the first one)."""

    def __init__(self, path: Path) -> None:
        self._writer = RecordWriter(path)

    @property
    def written(self) -> int:
        return self._writer.written

    def write_exchange(self, line: bytes) -> None:
        self._writer.write_line(line)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


@dataclass
class ExchangeRecorder:
    """One sampled request as the load test sends and reads it; `exchange()` makes the conformance Exchange.

    Times are the load test's stamps (wall-clock epoch seconds, monotonic within the request).
    """

    path: str
    body: bytes
    headers: Mapping[str, str]
    sent_at: float
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    first_byte_at: float | None = None
    body_text: str = ""
    stream_lines: list[tuple[str, float]] | None = None
    """Each line of an event stream as it arrived, with its time; None for a body that is not a stream."""
    transport_error: str | None = None

    def answered(self, status: int, headers: Iterable[tuple[str, str]], at: float) -> None:
        self.status, self.first_byte_at = status, at
        for name, value in headers:
            key = name.lower()
            earlier = self.response_headers.get(key)
            self.response_headers[key] = value if earlier is None else f"{earlier}, {value}"

    def line(self, raw: bytes, at: float) -> None:
        if self.stream_lines is None:
            self.stream_lines = []
        self.stream_lines.append((raw.decode("utf-8", errors="replace"), at))

    def exchange(self, finished_at: float) -> Exchange:
        try:
            body = json.loads(self.body)
        except ValueError:
            body = None
        sent_headers = {
            name: _REDACTED if name.lower() in _SECRET_HEADERS else value for name, value in self.headers.items()
        }
        request = RecordedRequest("POST", self.path, body, None if body is not None else self.body, sent_headers)
        events: list[SseEvent] | None = None
        framing: SseFraming | None = None
        body_text = self.body_text
        if self.stream_lines is not None:
            decoder = SseDecoder()
            events = []
            for text, at in self.stream_lines:
                events.extend(sse_event(message, at) for message in decoder.feed(text))
            events.extend(sse_event(message, finished_at) for message in decoder.finish())
            body_text = "".join(text for text, _ in self.stream_lines)
            framing = decoder.framing
        return Exchange(
            request=request,
            status=self.status or None,
            headers=self.response_headers,
            body_text=body_text,
            events=events,
            started_at=self.sent_at,
            first_byte_at=self.first_byte_at,
            finished_at=finished_at,
            transport_error=self.transport_error,
            framing=framing,
            sent_at_unix=self.sent_at,
        )

    def encode(self, finished_at: float) -> bytes:
        return encode_exchange(self.exchange(finished_at))


def merge_exchange_files(directory: Path, destination: Path) -> list[Exchange]:
    """Every process's sampled exchanges in `directory`, in send order, saved to `destination` (`llamacert check`
    judges that file again)."""
    files = sorted(directory.glob(EXCHANGE_FILE_PATTERN))
    exchanges = [exchange for path in files for exchange in load_exchanges(path)]
    exchanges.sort(key=lambda exchange: exchange.sent_at_unix or 0.0)
    save_exchanges(destination, exchanges)
    return exchanges


def _describe_request(exchange: Exchange) -> str:
    described = exchange.describe_request()
    body = json.dumps(described["body"]) if described["body"] is not None else ""
    text = f"{described['method']} {described['url']} {body}".rstrip()
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


def _example(outcome: RuleOutcome) -> CheckExample:
    exchange = outcome.exchanges[0]
    return CheckExample(
        message=outcome.message or "",
        request=_describe_request(exchange),
        response=f"HTTP {exchange.status}: {exchange.excerpt(_EXCERPT_CHARS)}",
    )


def _not_run_reason(rule: Rule, context: JudgeContext) -> str | None:
    """Why a rule cannot judge a load test's exchanges at all; None when it could have."""
    if rule.probe is not None:
        return NOT_RUN_PROBE
    if not rule.applies(context):
        profile = context.profile
        if profile is not None and not profile.requires_rule(rule.rule_id):
            return f"not required by profile {profile.name}"
        return f"not judged at strictness {context.strictness.value}"
    return None


def check_exchanges(exchanges: Sequence[Exchange], profile: Profile | None = None) -> list[CheckFinding]:
    """Every registered rule over the exchanges (unlabelled, so only exchange rules can judge them), in id order.

    A rule that judged none of them is 'not run' with the reason, never 'passed'.
    """
    context = JudgeContext(profile=profile)
    outcomes: dict[str, list[RuleOutcome]] = {}
    for outcome in judge(exchanges, context):
        outcomes.setdefault(outcome.rule_id, []).append(outcome)
    findings = []
    for rule_id, rule in sorted(RULES.items()):
        judged = outcomes.get(rule_id, [])
        failures = [outcome for outcome in judged if not outcome.passed]
        reason = None
        if not judged:
            reason = _not_run_reason(rule, context) or NOT_RUN_UNEXERCISED
        findings.append(
            CheckFinding(
                rule_id=rule_id,
                title=rule.title,
                severity=rule.severity,
                outcome="failed" if failures else "passed" if judged else "not run",
                passed=len(judged) - len(failures),
                failed=len(failures),
                reason=reason,
                first_failure=_example(failures[0]) if failures else None,
            )
        )
    return findings


def combine_findings(runs: Sequence[Sequence[CheckFinding]]) -> list[CheckFinding]:
    """The findings of repeated runs as one list: counts summed, the first run's first failure, a rule not run
    only if it ran in none."""
    combined: dict[str, CheckFinding] = {}
    for findings in runs:
        for finding in findings:
            earlier = combined.get(finding.rule_id)
            if earlier is None:
                combined[finding.rule_id] = finding
                continue
            passed, failed = earlier.passed + finding.passed, earlier.failed + finding.failed
            combined[finding.rule_id] = earlier.model_copy(
                update={
                    "passed": passed,
                    "failed": failed,
                    "outcome": "failed" if failed else "passed" if passed else "not run",
                    "reason": None if passed or failed else earlier.reason,
                    "first_failure": earlier.first_failure or finding.first_failure,
                }
            )
    return [combined[rule_id] for rule_id in sorted(combined)]
