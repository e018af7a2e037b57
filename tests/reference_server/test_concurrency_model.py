"""Many users at once, over real HTTP on the embedded model, on llama.cpp and on vLLM: requests
interleave, the conformance relations hold while others run, and a client that leaves stops its work."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from typing import Any

import httpx
import pytest

from launch import ReferenceServer
from spec.sse import DONE, SseDecoder
from tests.conftest import ServerFactory, skip_unless_installed

pytestmark = [pytest.mark.model, pytest.mark.slow]
PROMPT = "The capital of France is"
# one request generating at a time, none waiting beyond the one the test puts there
ONE_SLOT_BACKENDS = [
    pytest.param(["--backend", "llamacpp", "--parallel", "1"], id="llamacpp"),
    pytest.param(["--backend", "vllm", "--engine-arg", "max_num_seqs=1"], id="vllm", marks=pytest.mark.vllm),
]


def _headers(server: ReferenceServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}"}


def _post(server: ReferenceServer, body: dict[str, Any], timeout: float = 120) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/completions", json=body, headers=_headers(server), timeout=timeout)


def _stream_events(server: ReferenceServer, body: dict[str, Any]) -> list[tuple[float, str]]:
    """(arrival time, data) of every SSE event of a streamed completion."""
    events: list[tuple[float, str]] = []
    with httpx.stream(
        "POST",
        f"{server.url}/v1/completions",
        json={**body, "stream": True},
        headers=_headers(server),
        timeout=120,
    ) as response:
        assert response.status_code == 200, response.read()
        decoder = SseDecoder()
        for piece in response.iter_text():
            events.extend((time.monotonic(), message.data) for message in decoder.feed(piece))
    return events


def _in_flight(server: ReferenceServer) -> int:
    count: int = httpx.get(f"{server.url}/health", timeout=10).json()["in_flight"]
    return count


def _wait_idle(server: ReferenceServer, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while _in_flight(server):
        assert time.monotonic() < deadline, "requests are still in flight"
        time.sleep(0.1)


def test_a_second_request_streams_before_the_first_ends(model_server: ReferenceServer) -> None:
    started = threading.Event()
    long_events: list[tuple[float, str]] = []

    def long_request() -> None:
        body = {"prompt": PROMPT, "max_tokens": 96, "ignore_eos": True}
        with httpx.stream(
            "POST",
            f"{model_server.url}/v1/completions",
            json={**body, "stream": True},
            headers=_headers(model_server),
            timeout=120,
        ) as response:
            decoder = SseDecoder()
            for piece in response.iter_text():
                for message in decoder.feed(piece):
                    long_events.append((time.monotonic(), message.data))
                    started.set()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(long_request)
        assert started.wait(60)
        short = _stream_events(model_server, {"prompt": "Once upon a time", "max_tokens": 4})
        running.result()
    first_short_token = short[0][0]
    long_end = long_events[-1][0]
    assert short[-1][1] == DONE and long_events[-1][1] == DONE
    assert first_short_token < long_end, "the second request waited for the first to finish"


def _greedy(server: ReferenceServer, prompt: str) -> tuple[str, str]:
    """A greedy completion's text, non-streamed and streamed."""
    body = {"prompt": prompt, "max_tokens": 24, "temperature": 0, "ignore_eos": True}
    response = _post(server, body)
    assert response.status_code == 200, response.text
    events = _stream_events(server, body)
    streamed = "".join(json.loads(data)["choices"][0]["text"] for _, data in events[:-1])
    return response.json()["choices"][0]["text"], streamed


def test_conformance_relations_hold_while_other_requests_run(model_server: ReferenceServer) -> None:
    prompts = [PROMPT, "Water boils at", "The best way to learn"]
    quiet = {prompt: _greedy(model_server, prompt) for prompt in prompts}
    for whole, streamed in quiet.values():
        assert whole == streamed
    stop = threading.Event()

    def background(worker: int) -> int:
        sent = 0
        while not stop.is_set():
            body = {"prompt": f"Story {worker}.{sent}: once", "max_tokens": 12 + 5 * worker, "temperature": 1.0}
            assert _post(model_server, {**body, "stream": bool(sent % 2)}).status_code == 200
            sent += 1
        return sent

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        others = [pool.submit(background, worker) for worker in range(3)]
        try:
            busy = {prompt: _greedy(model_server, prompt) for prompt in prompts * 2}
        finally:
            stop.set()
        assert all(other.result() > 0 for other in others)
    # determinism and stream == non-stream, with other requests in the same batches (D50)
    assert busy == quiet
    _wait_idle(model_server, within_s=10)


@pytest.mark.parametrize("backend_args", ONE_SLOT_BACKENDS)
def test_a_non_streamed_request_whose_client_leaves_is_aborted(
    start_server: ServerFactory, backend_args: list[str]
) -> None:
    skip_unless_installed(backend_args[1])
    server = start_server(*backend_args, "--max-waiting", "0", "--context-length", "2048")
    body = {"prompt": PROMPT, "max_tokens": 1500, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        _post(server, body, timeout=1.5)  # the client gives up and closes its connection
    # 1,500 tokens take many seconds here; the only slot must come back within about a step
    deadline = time.monotonic() + 5
    while (response := _post(server, {"prompt": PROMPT, "max_tokens": 4})).status_code == 503:
        assert time.monotonic() < deadline, "the abandoned request still holds the only slot"
        time.sleep(0.1)
    assert response.status_code == 200
    _wait_idle(server, within_s=5)


@pytest.mark.parametrize("backend_args", ONE_SLOT_BACKENDS)
def test_a_waiting_request_whose_client_leaves_never_starts(
    start_server: ServerFactory, backend_args: list[str]
) -> None:
    skip_unless_installed(backend_args[1])
    server = start_server(*backend_args, "--max-waiting", "1", "--context-length", "2048")
    holder = {"prompt": PROMPT, "max_tokens": 2000, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=holder, headers=_headers(server), timeout=60) as r:
        lines = r.iter_lines()
        next(lines)  # the holder is generating: the next request waits
        with pytest.raises(httpx.ReadTimeout):
            _post(server, {"prompt": PROMPT, "max_tokens": 1500, "ignore_eos": True}, timeout=1.0)
    # holder closed, waiter gone: had the waiter started, its 1,500 tokens would hold the slot now
    start = time.monotonic()
    response = _post(server, {"prompt": PROMPT, "max_tokens": 4}, timeout=60)
    assert response.status_code == 200, response.text
    assert time.monotonic() - start < 5, "the abandoned waiting request ran"
    _wait_idle(server, within_s=5)
