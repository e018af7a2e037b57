"""perf.workload: request mix syntax, length ranges, and the bodies that are sent."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from perf.workload import LengthRange, RequestKind, Workload, format_mix, load_prompts, parse_mix


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
