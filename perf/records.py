"""Raw per-request records of a load run, and the JSONL files that hold them.

A record holds only what was observed while one request ran (times, status, usage, headers); every metric is
computed later from records by `perf.metrics`, so a run can be re-analysed without re-running it.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Final, Self

from pydantic import ConfigDict, TypeAdapter, ValidationError

__all__ = [
    "INTERRUPTED",
    "RECORD_FILE_PATTERN",
    "TIMEOUT",
    "RecordReadError",
    "RecordWriter",
    "RequestRecord",
    "encode_record",
    "merge_record_files",
    "read_records",
    "record_file_name",
    "write_records",
]

TIMEOUT: Final = "timeout"
"""Error prefix of a request that ran past the request timeout: one of the 'hung' requests a verdict looks for."""
INTERRUPTED: Final = "interrupted"
"""Error prefix of a request still running when the load test stopped (it outlived --stop-timeout)."""
RECORD_FILE_PATTERN: Final = "records-*.jsonl"
"""Each Locust process writes its own file in the records directory; merging reads every file that matches."""


@dataclasses.dataclass(slots=True)
class RequestRecord:
    """What one request did, as stamped by the load generator.

    Times are wall-clock epoch seconds so that records from several worker processes share one time axis;
    within a request they are taken as monotonic offsets from `t_send`, so durations keep perf_counter
    precision. Token counts come only from the response's `usage` (None when the server sent none):
    counting SSE chunks as tokens would be wrong for any server that puts several tokens in one chunk.
    """

    # Unknown fields are an error when reading, so a drifting writer fails loudly.
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    route: str
    stream: bool
    t_send: float
    t_end: float
    status: int
    """HTTP status; 0 when no response arrived."""
    t_first_byte: float | None = None
    """Response headers received."""
    t_first_token: float | None = None
    """First SSE event carrying generated text (streaming only)."""
    token_event_times: list[float] = dataclasses.field(default_factory=list)
    """Arrival time of every SSE event that carried generated text; one event may carry several tokens."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    retry_after: float | None = None
    """Seconds, from the Retry-After header (429, 503); None when absent or not a non-negative number."""
    retry_after_ms: int | None = None
    """From the retry-after-ms header; None when absent or invalid."""
    limit_requests: int | None = None
    """From x-ratelimit-limit-requests; None when absent."""
    limit_tokens: int | None = None
    """From x-ratelimit-limit-tokens; None when absent."""
    missing_rate_limit_headers: list[str] = dataclasses.field(default_factory=list)
    """The x-ratelimit-* headers a 429 answer lacked (spec.profiles.RATE_LIMIT_HEADERS, D26); empty otherwise."""
    turn: int | None = None
    """A conversation's turn, from 1; None outside multi-turn conversations."""
    t_due: float | None = None
    """Trace replay: when the trace said to send it (t_send - t_due is how late it went)."""

    @property
    def ok(self) -> bool:
        """A 2xx answer delivered whole, with no in-band error."""
        return 200 <= self.status < 300 and self.error is None

    @property
    def rejected(self) -> bool:
        """Refused by rate limiting (429)."""
        return self.status == 429

    @property
    def hung(self) -> bool:
        """Never finished: ran past the request timeout or was still running when the test stopped."""
        return self.error is not None and self.error.startswith((TIMEOUT, INTERRUPTED))


_RECORD: Final = TypeAdapter(RequestRecord)


class RecordReadError(ValueError):
    """A records file holds a line that is not a valid record."""


def encode_record(record: RequestRecord) -> bytes:
    """One record as a line of a records file (without the newline)."""
    return _RECORD.dump_json(record)


def record_file_name() -> str:
    """This process's records file name: unique per host and process, so workers never share a file."""
    return f"records-{socket.gethostname()}-{os.getpid()}.jsonl"


class RecordWriter:
    """Appends records to a JSONL file, opened on the first record (a Locust master sends none, so writes none)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self.written = 0

    def write(self, record: RequestRecord) -> None:
        self.write_line(encode_record(record))

    def write_line(self, line: bytes) -> None:
        """One record already encoded by `encode_record` (a worker's, forwarded to its master)."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        self._file.write(line + b"\n")
        self.written += 1

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def write_records(path: Path, records: Iterable[RequestRecord]) -> int:
    """Write `records` to a new JSONL file; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("wb") as file:
        for record in records:
            file.write(_RECORD.dump_json(record) + b"\n")
            count += 1
    return count


def _iter_file(path: Path) -> Iterator[RequestRecord]:
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                yield _RECORD.validate_json(line)
            except ValidationError as error:
                raise RecordReadError(f"{path}:{number}: not a request record: {error}") from None


def read_records(*paths: Path) -> list[RequestRecord]:
    """All records of the given JSONL files, in send order."""
    records = [record for path in paths for record in _iter_file(path)]
    records.sort(key=lambda record: record.t_send)
    return records


def merge_record_files(directory: Path, destination: Path) -> list[RequestRecord]:
    """Merge every process's records file in `directory` into `destination`, in send order."""
    records = read_records(*sorted(directory.glob(RECORD_FILE_PATTERN)))
    write_records(destination, records)
    return records
