"""Trace replay: a Mooncake-style JSONL trace (arrival time, input and output length, shared prefix blocks per
request) parsed, checked line by line, and turned into requests sent open-loop at the recorded times.

The format is the one vLLM's benchmark datasets, GuideLLM and AIPerf read: one object per line with `timestamp`
(milliseconds since the trace began), `input_length` and `output_length` (tokens), and optionally `hash_ids`,
the ids of the prompt's blocks of `block_tokens` tokens (512 in Mooncake's traces); requests whose `hash_ids`
start alike share that many leading blocks, so a server's prefix cache sees what it saw in production.
Pure and Locust-free; perf/locustfile.py sends what `TraceReplay` plans.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from perf.workload import PROMPT_WORDS, PlannedRequest, RequestKind, request_body, seeded_words, synthetic_prompt

__all__ = ["MOONCAKE_BLOCK_TOKENS", "TraceEntry", "TraceError", "TraceReplay", "load_trace"]

MOONCAKE_BLOCK_TOKENS: Final = 512
"""Tokens per `hash_ids` block in Mooncake's published traces."""


@lru_cache(maxsize=4096)
def _block_words(seed: int, hash_id: int, block_tokens: int, vocabulary: tuple[str, ...]) -> tuple[str, ...]:
    """A block's words: fixed by its id and the seed. The cache is bounded, as a long trace has ~10^5 blocks."""
    return tuple(seeded_words(block_tokens, "block", seed, hash_id, vocabulary=vocabulary).split())


class TraceError(ValueError):
    """A trace file that cannot be read, or a line that breaks the format (the message names file:line)."""


@dataclass(frozen=True)
class TraceEntry:
    """One recorded request."""

    line: int
    """Its line in the trace file, for messages."""
    timestamp_ms: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...] = ()


def _count(item: dict[str, Any], name: str, where: str, minimum: int) -> int:
    value = item.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TraceError(f"{where}: {name} must be an integer number of tokens, got {value!r}")
    if value < minimum:
        raise TraceError(f"{where}: {name} must be at least {minimum}, got {value}")
    return value


def _entry(item: Any, where: str, line: int) -> TraceEntry:
    if not isinstance(item, dict):
        raise TraceError(f"{where}: expected a JSON object, got {type(item).__name__}")
    timestamp = item.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float) or not math.isfinite(timestamp):
        raise TraceError(f"{where}: timestamp must be a number of milliseconds, got {timestamp!r}")
    if timestamp < 0:
        raise TraceError(f"{where}: timestamp must not be negative, got {timestamp}")
    hash_ids = item.get("hash_ids", [])
    if not isinstance(hash_ids, list) or any(
        isinstance(block, bool) or not isinstance(block, int) or block < 0 for block in hash_ids
    ):
        raise TraceError(f"{where}: hash_ids must be a list of non-negative integers")
    return TraceEntry(
        line=line,
        timestamp_ms=float(timestamp),
        input_length=_count(item, "input_length", where, 1),
        output_length=_count(item, "output_length", where, 1),
        hash_ids=tuple(hash_ids),
    )


def load_trace(path: Path) -> tuple[TraceEntry, ...]:
    """The entries of a trace file, in order; a TraceError naming file:line for the first line that is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TraceError(f"{path}: cannot read the trace: {error}") from None
    entries: list[TraceEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise TraceError(f"{where}: not JSON: {error.msg} (column {error.colno})") from None
        entry = _entry(item, where, number)
        if entries and entry.timestamp_ms < entries[-1].timestamp_ms:
            raise TraceError(
                f"{where}: timestamp {entry.timestamp_ms:g} ms is before the previous line's "
                f"{entries[-1].timestamp_ms:g} ms; a trace is in arrival order"
            )
        entries.append(entry)
    if not entries:
        raise TraceError(f"{path}: the trace has no requests")
    return tuple(entries)


@dataclass(frozen=True)
class TraceReplay:
    """Plans a trace's requests: when each is due, and its prompt of the recorded length with max_tokens set to
    the recorded output length (with ignore_eos, exactly that many tokens come back).

    `time_scale` stretches the recorded gaps (2: half the rate, 0.5: twice the rate). A block's text depends only
    on its hash id and the seed, so entries that share leading ids share that prompt prefix.
    """

    entries: tuple[TraceEntry, ...]
    time_scale: float = 1.0
    block_tokens: int = MOONCAKE_BLOCK_TOKENS
    seed: int = 0
    ignore_eos: bool = True
    words: tuple[str, ...] = PROMPT_WORDS
    """What prompts are made of (the calibrated one-token words, where the endpoint tokenizes)."""

    def __post_init__(self) -> None:
        if not self.entries:
            raise TraceError("the trace has no requests")
        if not self.time_scale > 0:
            raise ValueError("--trace-time-scale must be positive")
        if self.block_tokens < 1:
            raise ValueError("--trace-block-tokens must be at least 1")

    def due_s(self, entry: TraceEntry) -> float:
        """Seconds after the replay starts at which `entry` is sent."""
        return (entry.timestamp_ms - self.entries[0].timestamp_ms) / 1000 * self.time_scale

    @property
    def span_s(self) -> float:
        """Seconds from the first request's send to the last one's."""
        return self.due_s(self.entries[-1])

    def prompt(self, entry: TraceEntry, rng: random.Random) -> str:
        """`input_length` words: the entry's blocks in order (the last one cut to fit), then random words."""
        words: list[str] = []
        for hash_id in entry.hash_ids:
            if len(words) >= entry.input_length:
                break
            words += _block_words(self.seed, hash_id, self.block_tokens, self.words)[: entry.input_length - len(words)]
        rest = entry.input_length - len(words)
        return (
            " ".join(words)
            + (" " if words and rest else "")
            + (synthetic_prompt(rest, rng, self.words) if rest else "")
        )

    def plan(self, entry: TraceEntry, kind: RequestKind, rng: random.Random) -> PlannedRequest:
        return PlannedRequest(kind, request_body(kind, self.prompt(entry, rng), entry.output_length, self.ignore_eos))

    def mean_tokens_per_request(self) -> float:
        return sum(entry.input_length + entry.output_length for entry in self.entries) / len(self.entries)
