"""Each workload kind run for real through `llamacert load` against the reference server (simulated backend),
checked against what the server was sent (its request bodies) and what it counted (usage)."""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from perf.cli import main
from perf.records import RequestRecord, read_records
from perf.trace import TraceReplay, load_trace
from perf.workload import SharedPrefix
from reference_server.backends.simulated import SimulatedTokenModel
from tests.perf.conftest import API_KEY, ReferenceFactory, TrivialFactory

pytestmark = pytest.mark.slow


def _load(out: Path, endpoint: str, *arguments: str) -> tuple[int, dict[str, Any], list[RequestRecord]]:
    status = main(
        ["--endpoint", endpoint, "--api-key", API_KEY, "--out", str(out), "--request-timeout", "20",
         "--no-scrape-metrics", *arguments]
    )  # fmt: skip
    summary = json.loads((out / "load-summary.json").read_text())
    return status, summary, sorted(read_records(out / "records.jsonl"), key=lambda record: record.t_send)


def _stats_names(out: Path) -> set[str]:
    with (out / "locust_stats.csv").open(newline="") as file:
        return {row["Name"] for row in csv.DictReader(file) if row["Type"] == "POST"}


def test_shared_prefixes_reach_the_server(tmp_path: Path, start_reference: ReferenceFactory) -> None:
    server = start_reference()
    status, summary, records = _load(
        tmp_path, server.url, "--scenario", "shared-prefix", "--duration", "3s", "--users", "2", "--seed", "11",
        "--prefix-tokens", "24", "--prefix-share", "0.5", "--prefix-count", "2", "--prompt-tokens", "8",
        "--output-tokens", "4",
    )  # fmt: skip
    assert status == 0 and summary["errors"] == 0 and len(records) > 40
    prompts = [body["messages"][0]["content"] for body in server.bodies()]
    assert len(prompts) == len(records)
    prefixes = SharedPrefix(24, 0.5, 2, seed=11).prefixes
    starts = Counter(next((p for p in prefixes if prompt.startswith(p + " ")), None) for prompt in prompts)
    assert starts[prefixes[0]] > 0 and starts[prefixes[1]] > 0
    assert 0.3 < (starts[prefixes[0]] + starts[prefixes[1]]) / len(prompts) < 0.7, starts
    # the server counted the prefix: two prompt sizes, 24 tokens apart
    sizes = sorted({record.prompt_tokens or 0 for record in records})
    assert len(sizes) == 2 and sizes[1] - sizes[0] == 24, sizes
    assert summary["workload"]["kind"] == "shared-prefix"
    # the reference server answers /tokenize: the prefix is exactly 24 tokens of text, the rest exactly 8
    assert summary["workload"]["prompt_lengths"].startswith("exact (the endpoint's /tokenize)")


def test_conversations_carry_their_history(
    tmp_path: Path, start_reference: ReferenceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_reference()
    status, summary, records = _load(
        tmp_path, server.url, "--scenario", "multi-turn", "--duration", "4s", "--users", "1", "--turns", "3",
        "--think-time", "0.3", "--prompt-tokens", "10", "--output-tokens", "8",
    )  # fmt: skip
    assert status == 0 and summary["errors"] == 0 and len(records) >= 6
    bodies = server.bodies()
    assert len(bodies) == len(records)
    tokenizer = SimulatedTokenModel()
    for earlier, later in itertools.pairwise(bodies):
        messages = later["messages"]
        assert len(messages) in (1, 3, 5) and messages[-1]["role"] == "user"
        if len(messages) > 1:
            # the previous turn's messages, then the assistant's answer to it (8 tokens, ignore_eos), then more
            assert messages[:-2] == earlier["messages"] and messages[-2]["role"] == "assistant"
            # 8 tokens (ignore_eos); a newline or comma token joins a word when the text is split again
            assert 6 <= len(tokenizer.tokenize(messages[-2]["content"])) - 1 <= 8
    turns = [record.turn for record in records]
    assert turns[:6] == [1, 2, 3, 1, 2, 3]
    # the server saw each turn's prompt grow by the answer (8 tokens, give or take how the server re-tokenizes
    # its own text), the new user message (10) and the chat markup
    for earlier_record, later_record in itertools.pairwise(records):
        if later_record.turn != 1:
            assert earlier_record.prompt_tokens is not None and later_record.prompt_tokens is not None
            assert 10 + 6 <= later_record.prompt_tokens - earlier_record.prompt_tokens <= 10 + 8 + 8
    by_turn: dict[int, list[int]] = {}
    for record in records:
        assert record.turn is not None and record.prompt_tokens is not None
        by_turn.setdefault(record.turn, []).append(record.prompt_tokens)
    means = [sum(by_turn[turn]) / len(by_turn[turn]) for turn in (1, 2, 3)]
    # think time between turns, none between one conversation's end and the next one's start
    for earlier_record, later_record in itertools.pairwise(records):
        gap = later_record.t_send - earlier_record.t_end
        assert gap >= 0.29 if later_record.turn != 1 else gap < 0.29
    assert [turn["turn"] for turn in summary["turns"]] == [1, 2, 3]
    assert [turn["prompt_tokens_mean"] for turn in summary["turns"]] == pytest.approx(means)
    assert all(turn["ttft_ms"] is not None for turn in summary["turns"])
    assert _stats_names(tmp_path) == {"/v1/chat/completions (stream) turn 1", "/v1/chat/completions (stream) turn 2+"}
    output = capsys.readouterr().out
    assert "turn 3:" in output and "prompt lengths exact (the endpoint's /tokenize)" in output


def test_a_trace_is_replayed_at_its_times(tmp_path: Path, start_reference: ReferenceFactory) -> None:
    server = start_reference()
    trace = tmp_path / "trace.jsonl"
    lines = [
        {"timestamp": 200 * index + (60 if index % 3 else 0), "input_length": 20 + 7 * index,
         "output_length": 3 + index, "hash_ids": [index % 2, 10 + index, 20 + index]}
        for index in range(12)
    ]  # fmt: skip
    trace.write_text("".join(json.dumps(line) + "\n" for line in lines))
    status, summary, records = _load(
        tmp_path, server.url, "--scenario", "trace-replay", "--trace", str(trace), "--trace-block-tokens", "16",
        "--trace-time-scale", "1.5", "--users", "8",
    )  # fmt: skip
    assert status == 0 and summary["errors"] == 0
    entries = load_trace(trace)
    replay = TraceReplay(entries, time_scale=1.5, block_tokens=16)
    assert len(records) == len(entries) == server.seen()["requests"]
    start = records[0].t_send
    for record, entry in zip(records, entries, strict=True):
        # sent at the recorded time (gaps x1.5), within the tolerance of a busy machine
        assert record.t_send - start == pytest.approx(replay.due_s(entry), abs=0.15)
        assert record.t_due is not None and record.t_send - record.t_due < 0.15
        # the server counted the recorded lengths: the prompt's words plus its start token, the output exactly
        assert record.prompt_tokens == entry.input_length + 1 and record.completion_tokens == entry.output_length
    prompts = [body["prompt"].split() for body in server.bodies()]
    assert [body["max_tokens"] for body in server.bodies()] == [entry.output_length for entry in entries]
    # entries whose hash_ids start alike share their first block of 16 words; the others do not
    assert prompts[0][:16] == prompts[2][:16] != prompts[1][:16] == prompts[3][:16]
    assert prompts[0][16:32] != prompts[2][16:32]
    assert summary["workload"]["kind"] == "trace" and summary["workload"]["late_requests"] == 0
    assert summary["workload"]["prompt_lengths"].startswith("exact")
    # the run lasts as long as the trace (plus a second), not the scenario's duration
    assert records[-1].t_send - start == pytest.approx(replay.span_s, abs=0.15)


def test_synthetic_prompts_have_the_asked_length_exactly(
    tmp_path: Path, start_reference: ReferenceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_reference()
    status, summary, records = _load(
        tmp_path, server.url, "--scenario", "smoke", "--duration", "2s", "--users", "1", "--mix", "completion",
        "--prompt-tokens", "5..40", "--output-tokens", "2",
    )  # fmt: skip
    assert status == 0 and summary["errors"] == 0 and len(records) > 10
    asked = [len(body["prompt"].split()) for body in server.bodies()]
    assert len(asked) == len(records) and len(set(asked)) > 3 and all(5 <= length <= 40 for length in asked)
    # one user sends one request at a time: records and bodies are in the same order; usage counts the asked
    # length plus the simulated model's one start token, which the summary names
    assert [record.prompt_tokens for record in records] == [length + 1 for length in asked]
    assert "adds the model's 1 start token on completions" in summary["workload"]["prompt_lengths"]
    assert "prompt lengths exact" in capsys.readouterr().out


def test_without_a_tokenize_route_lengths_stay_approximate(
    tmp_path: Path, start_trivial: TrivialFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    status, summary, records = _load(tmp_path, start_trivial(), "--scenario", "smoke", "--duration", "2s")
    assert status == 0 and records
    assert summary["workload"]["prompt_lengths"] == (
        "approximate: prompts are common English words, about one token each (the endpoint has no tokenize route)"
    )
    assert "note: prompt lengths are approximate" in capsys.readouterr().out
