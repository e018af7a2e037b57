"""perf/tokenize.py: the /tokenize probe (either shape) and the calibration of the prompt words, against the
reference server (simulated backend), an endpoint without the route (the trivial server), and, for the client
layer's own branches, llama.cpp's answer shape and a tokenizer that merges words (httpx.MockTransport)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import httpx
import pytest

from launch import ReferenceServer
from perf.runner import calibrate_prompts, prompt_lengths
from perf.tokenize import calibrate_prompt_words, probe_tokenizer
from perf.workload import PROMPT_WORDS, synthetic_prompt
from reference_server.backends.simulated import SimulatedTokenModel
from tests.perf.conftest import API_KEY, ReferenceFactory, TrivialFactory

SIMULATED = SimulatedTokenModel()


def test_the_reference_server_makes_lengths_exact(start_reference: ReferenceFactory) -> None:
    calibration = calibrate_prompts(start_reference().url, API_KEY)
    assert calibration.words == PROMPT_WORDS  # the simulated backend counts each of them as one token
    assert calibration.start_tokens == 1
    assert prompt_lengths(calibration).startswith("exact (the endpoint's /tokenize)")
    assert "1 start token on completions" in prompt_lengths(calibration)


def test_a_wrong_key_leaves_lengths_approximate(start_reference: ReferenceFactory) -> None:
    calibration = calibrate_prompts(start_reference().url, "not-the-key")
    assert calibration.words is None and "401" in calibration.reason
    assert prompt_lengths(calibration).startswith("approximate")


def test_an_endpoint_without_the_route_leaves_lengths_approximate(start_trivial: TrivialFactory) -> None:
    calibration = calibrate_prompts(start_trivial(), "")
    assert calibration.words is None
    assert prompt_lengths(calibration) == (
        "approximate: prompts are common English words, about one token each (the endpoint has no tokenize route)"
    )


def _llama_cpp_like(count: Callable[[str], list[int]]) -> httpx.Client:
    """llama.cpp's server as its docs and tests describe it: reads `content`, answers no tokens without it."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/tokenize":
            return httpx.Response(404)
        body = json.loads(request.content)
        tokens = count(body["content"]) if "content" in body else []
        if not body.get("add_special"):
            tokens = tokens[1:]
        return httpx.Response(200, json={"tokens": tokens})

    return httpx.Client(transport=httpx.MockTransport(handle), base_url="http://llama-cpp")


def test_llama_cpp_s_shape_is_found_after_vllm_s_answers_no_tokens() -> None:
    tokenizer, reason = probe_tokenizer(_llama_cpp_like(SIMULATED.tokenize))
    assert tokenizer is not None and tokenizer.shape == "llama.cpp" and reason == ""
    calibration = calibrate_prompt_words(tokenizer, PROMPT_WORDS)
    assert calibration.words == PROMPT_WORDS and calibration.start_tokens == 1


def test_words_the_tokenizer_splits_are_left_out() -> None:
    split = {"garden", "window"}

    def tokenize(text: str) -> list[int]:
        return [1] + [9 for word in text.split() for _ in range(2 if word in split else 1)]

    tokenizer, _ = probe_tokenizer(_llama_cpp_like(tokenize))
    assert tokenizer is not None
    calibration = calibrate_prompt_words(tokenizer, PROMPT_WORDS)
    assert calibration.words == tuple(word for word in PROMPT_WORDS if word not in split)


def test_a_tokenizer_that_merges_words_gives_approximate_lengths() -> None:
    def tokenize(text: str) -> list[int]:
        words = text.split()
        return [1] + [9] * max(1, (len(words) + 1) // 2)  # pairs of words merge into one token

    tokenizer, _ = probe_tokenizer(_llama_cpp_like(tokenize))
    assert tokenizer is not None
    calibration = calibrate_prompt_words(tokenizer, PROMPT_WORDS)
    # alone each word is one token, after another word none is: no word is kept
    assert calibration.words is None and calibration.reason == "only 0 of the prompt words are one token each"


@pytest.mark.parametrize("status", [404, 405])
def test_a_missing_route_is_no_tokenizer(status: int) -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(status)), base_url="http://x")
    assert probe_tokenizer(client) == (None, "the endpoint has no tokenize route")


@pytest.mark.model
@pytest.mark.slow
def test_on_the_real_model_prompts_of_calibrated_words_are_counted_exactly() -> None:
    with ReferenceServer(["--parallel", "1"]) as server:
        calibration = calibrate_prompts(server.url, server.api_key)
        assert calibration.words is not None and len(calibration.words) > 40, calibration
        rng = random.Random(3)
        headers = {"Authorization": f"Bearer {server.api_key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
            for length in (1, 2, 9, 50, 200):
                prompt = synthetic_prompt(length, rng, calibration.words)
                answer = client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 1})
                assert answer.status_code == 200, answer.text
                assert answer.json()["usage"]["prompt_tokens"] == length + calibration.start_tokens
