"""The reference server over real HTTP on the real embedded model (SmolLM2), on llama.cpp and on vLLM."""

from __future__ import annotations

import concurrent.futures
import json
import time
from typing import Any

import httpx
import pytest

from launch import ReferenceServer
from spec.sse import DONE, SseDecoder
from tests.conftest import ServerFactory, skip_unless_installed

pytestmark = [pytest.mark.model, pytest.mark.slow]
PROMPT = "The capital of France is"
# Each backend with room for one running request (with --max-waiting 0: none waiting either):
# one sequence at a time in llama.cpp's batch and in vLLM's engine.
ONE_SLOT_BACKENDS = [
    pytest.param(["--backend", "llamacpp", "--parallel", "1"], id="llamacpp"),
    pytest.param(["--backend", "vllm", "--engine-arg", "max_num_seqs=1"], id="vllm", marks=pytest.mark.vllm),
]


def _post(server: ReferenceServer, path: str, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=120, **kwargs)


def _complete(server: ReferenceServer, **params: Any) -> dict[str, Any]:
    response = _post(server, "/v1/completions", {"prompt": PROMPT, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_greedy_is_deterministic_and_usage_counts_real_tokens(model_server: ReferenceServer) -> None:
    first = _complete(model_server, max_tokens=8, temperature=0)
    second = _complete(model_server, max_tokens=8, temperature=0)
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
    assert first["choices"][0]["text"].startswith(" Paris")
    assert first["usage"] == {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}


def test_default_max_tokens_is_16(model_server: ReferenceServer) -> None:
    body = _complete(model_server, temperature=0, ignore_eos=True)
    assert body["usage"]["completion_tokens"] == 16
    assert body["choices"][0]["finish_reason"] == "length"


def test_sampling_parameters_change_the_output(model_server: ReferenceServer) -> None:
    greedy = _complete(model_server, max_tokens=12, temperature=0, ignore_eos=True)["choices"][0]["text"]
    samples = {
        _complete(model_server, max_tokens=12, temperature=1.5, seed=seed, ignore_eos=True)["choices"][0]["text"]
        for seed in range(4)
    }
    assert len(samples) > 1 and samples != {greedy}
    same_seed = {
        _complete(model_server, max_tokens=12, temperature=1.0, seed=11)["choices"][0]["text"] for _ in range(2)
    }
    assert len(same_seed) == 1
    # top_p keeps the fewest tokens whose probabilities reach it; below 1/49,152 (SmolLM2's vocabulary)
    # the most likely token alone always does (0.01 would not: at temperature 1.5 the top token can be
    # less likely than that)
    narrow = _complete(model_server, max_tokens=12, temperature=1.5, top_p=1e-5, seed=5, ignore_eos=True)
    assert narrow["choices"][0]["text"] == greedy
    penalised = _complete(model_server, max_tokens=12, temperature=0, presence_penalty=2.0, ignore_eos=True)
    assert penalised["choices"][0]["text"] != greedy


def test_n_and_best_of(model_server: ReferenceServer) -> None:
    body = _complete(model_server, max_tokens=6, temperature=1.0, n=3, seed=1)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert body["usage"]["completion_tokens"] <= 18
    best = _complete(model_server, max_tokens=6, temperature=1.2, n=2, best_of=4, seed=2, logprobs=0)
    means = [sum(c["logprobs"]["token_logprobs"]) / len(c["logprobs"]["token_logprobs"]) for c in best["choices"]]
    assert means == sorted(means, reverse=True)


def test_beam_search_is_deterministic_and_at_least_as_likely_as_greedy(model_server: ReferenceServer) -> None:
    params = {"max_tokens": 6, "temperature": 0, "ignore_eos": True, "logprobs": 0}
    beams = _complete(model_server, best_of=3, n=1, use_beam_search=True, **params)
    again = _complete(model_server, best_of=3, n=1, use_beam_search=True, **params)
    greedy = _complete(model_server, **params)
    assert beams["choices"][0]["text"] == again["choices"][0]["text"]
    beam_score = sum(beams["choices"][0]["logprobs"]["token_logprobs"])
    greedy_score = sum(greedy["choices"][0]["logprobs"]["token_logprobs"])
    assert beam_score >= greedy_score - 1e-3


def test_stop_strings_and_stop_token_ids(model_server: ReferenceServer) -> None:
    greedy = _complete(model_server, max_tokens=12, temperature=0, ignore_eos=True)["choices"][0]["text"]
    cut = _complete(model_server, max_tokens=12, temperature=0, ignore_eos=True, stop=["\n"], logprobs=1)
    choice = cut["choices"][0]
    assert choice["text"] == greedy[: greedy.index("\n")]
    assert choice["finish_reason"] == "stop"
    assert "".join(choice["logprobs"]["tokens"]) == choice["text"]
    assert cut["usage"]["completion_tokens"] == len(choice["logprobs"]["tokens"])
    # SmolLM2's "." is token 30: generation stops there and keeps it (it is not a special token)
    dot = _complete(model_server, max_tokens=12, temperature=0, ignore_eos=True, stop_token_ids=[30])
    assert dot["choices"][0]["text"] == greedy[: greedy.index(".") + 1]
    assert dot["choices"][0]["finish_reason"] == "stop"


def test_special_tokens_are_shown_only_when_asked(model_server: ReferenceServer) -> None:
    body = {
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 40,
        "temperature": 0,
        "ignore_eos": True,
    }
    hidden = _post(model_server, "/v1/chat/completions", body).json()["choices"][0]["message"]["content"]
    shown = _post(model_server, "/v1/chat/completions", {**body, "skip_special_tokens": False}).json()
    assert "<|im_end|>" not in hidden
    assert "<|im_end|>" in shown["choices"][0]["message"]["content"]


def test_logprobs_object(model_server: ReferenceServer) -> None:
    choice = _complete(model_server, max_tokens=6, temperature=0, logprobs=3)["choices"][0]
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]) == choice["text"]
    offsets = [sum(len(t) for t in logprobs["tokens"][:i]) for i in range(len(logprobs["tokens"]))]
    assert logprobs["text_offsets"] == offsets
    for token, value, top in zip(logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"], strict=True):
        assert len(top) <= 4 and all(v <= 0 for v in top.values())
        assert top[token] == pytest.approx(value)
        assert value == pytest.approx(max(top.values()))  # greedy picks the most likely token


def test_chat_uses_the_models_template_and_stops_naturally(model_server: ReferenceServer) -> None:
    body = {
        "messages": [{"role": "user", "content": "What is 2+2? Answer in one short sentence."}],
        "max_tokens": 60,
        "temperature": 0,
    }
    response = _post(model_server, "/chat/completions", body).json()
    assert response["choices"][0]["finish_reason"] == "stop"
    assert "4" in response["choices"][0]["message"]["content"]
    assert response["usage"]["prompt_tokens"] > 20  # the template's system turn is counted


def test_stream_matches_non_stream_and_ends_with_done(model_server: ReferenceServer) -> None:
    params = {"max_tokens": 10, "temperature": 0, "ignore_eos": True, "logprobs": 1}
    full = _complete(model_server, **params)
    with httpx.stream(
        "POST",
        f"{model_server.url}/v1/completions",
        json={"prompt": PROMPT, "stream": True, **params},
        headers={"Authorization": f"Bearer {model_server.api_key}"},
        timeout=60,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        decoder = SseDecoder()
        events = [message.data for piece in response.iter_text() for message in decoder.feed(piece)]
    assert events[-1] == DONE
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == full["choices"][0]["text"]
    offsets = [o for c in chunks for o in c["choices"][0]["logprobs"]["text_offsets"]]
    assert offsets == full["choices"][0]["logprobs"]["text_offsets"]


def test_concurrent_requests_are_correct(model_server: ReferenceServer) -> None:
    prompts = ["The capital of France is", "Once upon a time", "The best way to learn", "Water boils at"]
    expected = [
        _post(model_server, "/v1/completions", {"prompt": p, "max_tokens": 8, "temperature": 0}).json() for p in prompts
    ]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(
                lambda p: _post(
                    model_server, "/v1/completions", {"prompt": p, "max_tokens": 8, "temperature": 0}
                ).json(),
                prompts * 2,
            )
        )
    for index, result in enumerate(results):
        assert result["choices"][0]["text"] == expected[index % 4]["choices"][0]["text"]


@pytest.mark.parametrize("backend_args", ONE_SLOT_BACKENDS)
def test_a_client_that_disconnects_frees_its_slot(start_server: ServerFactory, backend_args: list[str]) -> None:
    skip_unless_installed(backend_args[1])
    # room for exactly one request: the next one is served only once the abandoned one has let go
    server = start_server(*backend_args, "--max-waiting", "0", "--context-length", "4096")
    headers = {"Authorization": f"Bearer {server.api_key}"}
    body = {"prompt": PROMPT, "max_tokens": 4000, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, headers=headers, timeout=60) as resp:
        # keep the iterator: dropping it would close the connection (the disconnect) too early
        events = resp.iter_lines()
        next(events)
        assert _post(server, "/v1/completions", {"prompt": PROMPT, "max_tokens": 4}).status_code == 503
    # 4,000 tokens take a minute or more here; the slot must come back within seconds of the disconnect
    deadline = time.monotonic() + 10
    while (response := _post(server, "/v1/completions", {"prompt": PROMPT, "max_tokens": 4})).status_code == 503:
        assert time.monotonic() < deadline, "the abandoned stream still holds the only slot"
        time.sleep(0.2)
    assert response.status_code == 200
    assert response.json()["usage"]["completion_tokens"] == 4


@pytest.mark.parametrize("backend_args", ONE_SLOT_BACKENDS)
def test_full_queue_answers_503_with_retry_after(start_server: ServerFactory, backend_args: list[str]) -> None:
    skip_unless_installed(backend_args[1])
    server = start_server(*backend_args, "--max-waiting", "0", "--context-length", "2048")
    body = {"prompt": PROMPT, "max_tokens": 400, "ignore_eos": True}
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda _: _post(server, "/v1/completions", body), range(3)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] == 200 and 503 in statuses
    refused = next(r for r in responses if r.status_code == 503)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "overloaded"


def test_official_openai_sdk_as_client(model_server: ReferenceServer) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{model_server.url}/v1", api_key=model_server.api_key)
    completion = client.completions.create(model="smollm2", prompt=PROMPT, max_tokens=5, temperature=0)
    assert completion.choices[0].text.startswith(" Paris")
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    chat = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hi"}], max_tokens=8, temperature=0
    )
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].message.content
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Say hi"}],
            max_tokens=8,
            temperature=0,
            stream=True,
        )
        if chunk.choices
    ]
    assert "".join(pieces) == chat.choices[0].message.content
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="smollm2", prompt=PROMPT, max_tokens=5, temperature=3)
