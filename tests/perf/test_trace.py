"""perf.trace: reading Mooncake-style traces (every bad line named file:line) and planning their requests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from perf.trace import MOONCAKE_BLOCK_TOKENS, TraceEntry, TraceError, TraceReplay, load_trace
from perf.workload import RequestKind

EXAMPLE = Path(__file__).resolve().parents[2] / "perf" / "traces" / "example-mooncake.jsonl"


def _trace(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_trace_is_read_in_order(tmp_path: Path) -> None:
    path = _trace(
        tmp_path,
        '{"timestamp": 0, "input_length": 30, "output_length": 5, "hash_ids": [0, 1]}',
        "",
        '{"timestamp": 250.5, "input_length": 12, "output_length": 1, "session_id": "kept out"}',
    )
    assert load_trace(path) == (
        TraceEntry(line=1, timestamp_ms=0.0, input_length=30, output_length=5, hash_ids=(0, 1)),
        TraceEntry(line=3, timestamp_ms=250.5, input_length=12, output_length=1),
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "trace.jsonl:2: not JSON"),
        ("[1, 2]", "trace.jsonl:2: expected a JSON object, got list"),
        ('{"input_length": 4, "output_length": 4}', "trace.jsonl:2: timestamp must be a number of milliseconds"),
        ('{"timestamp": "5", "input_length": 4, "output_length": 4}', "trace.jsonl:2: timestamp must be a number"),
        ('{"timestamp": 5, "output_length": 4}', "trace.jsonl:2: input_length must be an integer number of tokens"),
        ('{"timestamp": 5, "input_length": 4.5, "output_length": 4}', "trace.jsonl:2: input_length must be an integer"),
        ('{"timestamp": 5, "input_length": 0, "output_length": 4}', "trace.jsonl:2: input_length must be at least 1"),
        ('{"timestamp": 5, "input_length": 4, "output_length": true}', "trace.jsonl:2: output_length must be an"),
        ('{"timestamp": 5, "input_length": 4, "output_length": 4, "hash_ids": [1, -2]}', "trace.jsonl:2: hash_ids"),
        ('{"timestamp": 5, "input_length": 4, "output_length": 4, "hash_ids": 3}', "trace.jsonl:2: hash_ids"),
        ('{"timestamp": 1, "input_length": 4, "output_length": 4}', "trace.jsonl:2: timestamp 1 ms is before"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    path = _trace(tmp_path, '{"timestamp": 2, "input_length": 4, "output_length": 4}', line)
    with pytest.raises(TraceError, match=message):
        load_trace(path)


def test_an_empty_or_missing_trace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no requests"):
        load_trace(_trace(tmp_path, "", " "))
    with pytest.raises(TraceError, match="cannot read the trace"):
        load_trace(tmp_path / "missing.jsonl")


def test_due_times_follow_the_trace_and_its_time_scale() -> None:
    entries = (TraceEntry(1, 1000.0, 4, 4), TraceEntry(2, 1500.0, 4, 4), TraceEntry(3, 3000.0, 4, 4))
    assert [TraceReplay(entries).due_s(entry) for entry in entries] == [0.0, 0.5, 2.0]
    slower = TraceReplay(entries, time_scale=2.0)
    assert [slower.due_s(entry) for entry in entries] == [0.0, 1.0, 4.0] and slower.span_s == 4.0
    with pytest.raises(ValueError, match="--trace-time-scale"):
        TraceReplay(entries, time_scale=0)
    with pytest.raises(ValueError, match="--trace-block-tokens"):
        TraceReplay(entries, block_tokens=0)


def test_prompts_have_the_recorded_length_and_share_their_blocks() -> None:
    replay = TraceReplay((TraceEntry(1, 0, 1, 1),), block_tokens=8, seed=3)
    rng = random.Random(1)
    long_one = TraceEntry(1, 0.0, input_length=20, output_length=3, hash_ids=(0, 1, 2))
    sibling = TraceEntry(2, 0.0, input_length=20, output_length=3, hash_ids=(0, 1, 7))
    cut = TraceEntry(5, 0.0, input_length=13, output_length=3, hash_ids=(0, 1))
    stranger = TraceEntry(3, 0.0, input_length=16, output_length=3, hash_ids=(5, 6))
    beyond = TraceEntry(4, 0.0, input_length=30, output_length=3, hash_ids=(0,))
    entries = (long_one, sibling, stranger, beyond, cut)
    words = {entry.line: replay.prompt(entry, rng).split() for entry in entries}
    assert {line: len(prompt) for line, prompt in words.items()} == {1: 20, 2: 20, 3: 16, 4: 30, 5: 13}
    # two shared blocks of 8 tokens: the same first 16 words, then different ones
    assert words[1][:16] == words[2][:16] and words[1][16:] != words[2][16:]
    assert words[3][:8] != words[1][:8]
    # a prompt shorter than its blocks ends inside the last one
    assert words[5] == words[1][:13]
    # a prompt longer than its blocks goes on with random words after them
    assert words[4][:8] == words[1][:8]
    # the blocks' text depends on the seed alone, so another replay of the trace sends the same prefixes
    assert (
        TraceReplay((long_one,), block_tokens=8, seed=3).prompt(long_one, random.Random(99)).split()[:16]
        == (words[1][:16])
    )


def test_a_planned_request_asks_for_the_recorded_output() -> None:
    entry = TraceEntry(1, 0.0, input_length=9, output_length=17)
    planned = TraceReplay((entry,)).plan(entry, RequestKind("completion", stream=True), random.Random(0))
    body = json.loads(planned.body)
    assert body["max_tokens"] == 17 and body["ignore_eos"] is True and len(body["prompt"].split()) == 9
    assert body["stream_options"] == {"include_usage": True} and planned.turn is None


def test_the_shipped_example_trace() -> None:
    entries = load_trace(EXAMPLE)
    assert len(entries) == 40 and 5 < TraceReplay(entries).span_s < 10
    blocks = [entry.hash_ids for entry in entries]
    # it exercises shared prefixes: some requests start with the same blocks
    assert len({ids[0] for ids in blocks}) < len(blocks)
    assert all(
        (len(entry.hash_ids) - 1) * MOONCAKE_BLOCK_TOKENS < entry.input_length <= len(entry.hash_ids) * 512
        for entry in entries
    )
