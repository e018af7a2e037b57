"""perf.workload: request mix syntax, length ranges, the bodies that are sent, shared prefixes, conversations."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from perf.settings import LoadSettings
from perf.trace import TraceEntry, TraceReplay
from perf.workload import (
    LengthRange,
    RequestKind,
    SharedPrefix,
    Workload,
    format_mix,
    load_prompts,
    parse_mix,
    request_body,
)


def test_mix_syntax_round_trips() -> None:
    mix = parse_mix("chat+stream:3, completion@azure ,chat@azure:0.5")
    assert mix == [
        RequestKind("chat", stream=True, route_family="llama", weight=3.0),
        RequestKind("completion", stream=False, route_family="azure", weight=1.0),
        RequestKind("chat", stream=False, route_family="azure", weight=0.5),
    ]
    assert [kind.route for kind in mix] == ["/v1/chat/completions", "/completions", "/chat/completions"]
    assert mix[0].stats_name == "/v1/chat/completions (stream)"
    assert parse_mix(format_mix(mix)) == mix


@pytest.mark.parametrize("text", ["", "embeddings", "chat+fast", "chat@openai", "chat:-1", "chat:x"])
def test_bad_mixes_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_mix(text)


def test_length_ranges() -> None:
    assert LengthRange.parse("32") == LengthRange(32, 32) == LengthRange.parse(32)
    assert LengthRange.parse("16..64") == LengthRange(16, 64)
    assert str(LengthRange(16, 64)) == "16..64" and LengthRange(16, 64).mean == 40
    rng = random.Random(1)
    assert {LengthRange(2, 4).sample(rng) for _ in range(100)} == {2, 3, 4}
    for bad in ("0", "9..3", "a..b"):
        with pytest.raises(ValueError):
            LengthRange.parse(bad)


def test_bodies_follow_the_mix() -> None:
    workload = Workload(tuple(parse_mix("chat+stream:3,completion:1")), LengthRange(5, 5), LengthRange(7, 9))
    rng = random.Random(7)
    planned = [workload.plan(rng) for _ in range(400)]
    counts = Counter(plan.kind.api for plan in planned)
    assert 250 < counts["chat"] < 350
    for plan in planned:
        body = json.loads(plan.body)
        assert 7 <= body["max_tokens"] <= 9 and body["ignore_eos"] is True
        if plan.kind.api == "chat":
            assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
            assert len(body["messages"][0]["content"].split()) == 5
        else:
            assert "stream" not in body and len(body["prompt"].split()) == 5


def test_prompts_from_a_dataset(tmp_path: Path) -> None:
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text('{"prompt": "one"}\n\n{"prompt": "two"}\n')
    text = tmp_path / "prompts.txt"
    text.write_text("alpha beta\ngamma\n")
    assert load_prompts(jsonl) == ["one", "two"]
    assert load_prompts(text) == ["alpha beta", "gamma"]
    workload = Workload(
        (RequestKind("completion"),), LengthRange(1, 1), LengthRange(1, 1), ("alpha beta", "gamma"), False
    )
    body = json.loads(workload.plan(random.Random(0)).body)
    assert body["prompt"] in ("alpha beta", "gamma") and "ignore_eos" not in body
    assert workload.mean_tokens_per_request() == 2.5
    (tmp_path / "bad.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        load_prompts(tmp_path / "bad.jsonl")


def _chat(tokens: int = 6) -> Workload:
    return Workload((RequestKind("chat"),), LengthRange(tokens, tokens), LengthRange(4, 4))


def test_shared_prefixes_depend_only_on_the_seed() -> None:
    prefix = SharedPrefix(tokens=12, share=1.0, count=3, seed=5)
    assert len(prefix.prefixes) == 3 and len(set(prefix.prefixes)) == 3
    assert all(len(text.split()) == 12 for text in prefix.prefixes)
    # every user, worker and run with the seed draws from the same prefixes; another seed gets others
    assert SharedPrefix(12, 1.0, 3, seed=5).prefixes == prefix.prefixes
    assert set(SharedPrefix(12, 1.0, 3, seed=6).prefixes).isdisjoint(prefix.prefixes)
    # seed 0 (random prompts) still gives every process the same prefixes
    assert SharedPrefix(12, seed=0).prefixes == SharedPrefix(12, seed=0).prefixes


def test_a_share_of_prompts_starts_with_a_shared_prefix() -> None:
    prefix = SharedPrefix(tokens=10, share=0.3, count=2, seed=1)
    workload = replace(_chat(), prefix=prefix)
    rng = random.Random(3)
    prompts = [json.loads(workload.plan(rng).body)["messages"][0]["content"] for _ in range(1000)]
    starts = Counter(next((p for p in prefix.prefixes if prompt.startswith(p + " ")), None) for prompt in prompts)
    assert 250 < sum(starts[p] for p in prefix.prefixes) < 350
    assert starts[prefix.prefixes[0]] > 100 and starts[prefix.prefixes[1]] > 100
    # the prefix comes before a prompt of the configured length
    with_prefix = [prompt for prompt in prompts if prompt.startswith(prefix.prefixes[0])]
    assert all(len(prompt.split()) == 10 + 6 for prompt in with_prefix)
    without = [prompt for prompt in prompts if not any(prompt.startswith(p) for p in prefix.prefixes)]
    assert len(without) == starts[None] and all(len(prompt.split()) == 6 for prompt in without)
    assert workload.mean_tokens_per_request() == pytest.approx(6 + 10 * 0.3 + 4)


def test_the_same_seed_plans_the_same_requests() -> None:
    workload = replace(_chat(), prefix=SharedPrefix(8, 0.5, 2, seed=9))
    first, second = random.Random(9), random.Random(9)
    assert [workload.plan(first).body for _ in range(20)] == [workload.plan(second).body for _ in range(20)]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tokens": 0}, "--prefix-tokens"),
        ({"tokens": 4, "share": 0}, "--prefix-share"),
        ({"tokens": 4, "share": 1.5}, "--prefix-share"),
        ({"tokens": 4, "count": 0}, "--prefix-count"),
    ],
)
def test_bad_prefixes_are_refused(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SharedPrefix(**fields)  # type: ignore[arg-type]  # the test passes numbers of either kind


def test_a_conversation_grows_its_history_with_the_answers() -> None:
    workload = replace(_chat(), turns=3, mix=(RequestKind("chat", stream=True),))
    rng = random.Random(2)
    conversation = workload.conversation(rng)
    sent = []
    for answer in ("first answer", "second answer", "third answer"):
        planned = conversation.next_request(rng)
        sent.append(planned)
        conversation.answered(answer)
    assert conversation.done and [planned.turn for planned in sent] == [1, 2, 3]
    assert [planned.stats_name for planned in sent] == [
        "/v1/chat/completions (stream) turn 1",
        "/v1/chat/completions (stream) turn 2+",
        "/v1/chat/completions (stream) turn 2+",
    ]  # fmt: skip
    histories = [json.loads(planned.body)["messages"] for planned in sent]
    assert [[message["role"] for message in history] for history in histories] == [
        ["user"], ["user", "assistant", "user"], ["user", "assistant", "user", "assistant", "user"]
    ]  # fmt: skip
    assert histories[2][1]["content"] == "first answer" and histories[2][3]["content"] == "second answer"
    # each turn's history is the previous turn's messages plus its answer
    assert histories[2][:3] == histories[1] and histories[1][:1] == histories[0]
    assert all(len(history[-1]["content"].split()) == 6 for history in histories)
    assert all(planned.keep_answer for planned in sent)
    with pytest.raises(ValueError, match="3 turns"):
        conversation.next_request(rng)


def test_conversations_need_the_chat_api() -> None:
    with pytest.raises(ValueError, match="chat API"):
        Workload(tuple(parse_mix("chat,completion")), LengthRange(4, 4), LengthRange(4, 4), turns=2)
    with pytest.raises(ValueError, match="--turns"):
        replace(_chat(), turns=0)
    with pytest.raises(ValueError, match="--think-time"):
        replace(_chat(), think_time_s=-1)


def test_request_bodies() -> None:
    body = json.loads(request_body(RequestKind("completion", stream=True), "a b", 5, ignore_eos=False))
    assert body == {"prompt": "a b", "max_tokens": 5, "stream": True, "stream_options": {"include_usage": True}}
    history = [{"role": "user", "content": "x"}]
    assert json.loads(request_body(RequestKind("chat"), history, 3, ignore_eos=True)) == {
        "messages": history, "max_tokens": 3, "ignore_eos": True
    }  # fmt: skip


def test_calibrated_words_are_the_only_words_of_prompts_prefixes_and_trace_blocks() -> None:
    words = ("river", "stone", "house")
    settings = LoadSettings(prefix_tokens=6, prompt_tokens=LengthRange(3, 9), prompt_words=words)
    rng = random.Random(5)
    for _ in range(20):
        prompt = settings.workload().draw_prompt(rng).split()
        assert set(prompt) <= set(words) and 6 + 3 <= len(prompt) <= 6 + 9
    replay = TraceReplay((TraceEntry(1, 0.0, 20, 2, (4, 5)),), block_tokens=8, words=words)
    assert set(replay.prompt(replay.entries[0], rng).split()) <= set(words)
