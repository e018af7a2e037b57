"""Graceful drain on SIGTERM (D57), with streams and a non-streamed request in flight, over real HTTP."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import signal
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from launch import ReferenceServer
from reference_server.server import build_app
from reference_server.settings import ServerSettings
from spec.sse import DONE, SseDecoder, decode_all

pytestmark = pytest.mark.slow
DRAIN_S = 2.0


def _stream(server: ReferenceServer, max_tokens: int, first_event: threading.Event) -> list[Any]:
    """Every event of one stream ("[DONE]" for the terminator); `first_event` is set once one arrived."""
    body = {"prompt": "hello", "max_tokens": max_tokens, "ignore_eos": True, "stream": True}
    headers = {"Authorization": f"Bearer {server.api_key}"}
    events: list[Any] = []
    decoder = SseDecoder()
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200
        for piece in response.iter_text():
            for message in decoder.feed(piece):
                events.append(message.data if message.data == DONE else json.loads(message.data))
                first_event.set()
    assert decoder.finish() == []
    return events


def test_sigterm_lets_short_streams_finish_and_ends_long_ones_in_band() -> None:
    server = ReferenceServer(
        ["--backend", "simulated", "--simulated-token-s", "0.05", "--drain-timeout-s", str(DRAIN_S)]
    )
    server.wait_ready()
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            started = [threading.Event() for _ in range(3)]
            # 20 tokens (~1 s) finish inside the drain deadline; 2,000 tokens (~100 s) cannot
            short = pool.submit(_stream, server, 20, started[0])
            long = [pool.submit(_stream, server, 2000, event) for event in started[1:]]
            headers = {"Authorization": f"Bearer {server.api_key}"}
            whole = pool.submit(
                httpx.post,
                f"{server.url}/v1/completions",
                json={"prompt": "hello", "max_tokens": 2000, "ignore_eos": True},
                headers=headers,
                timeout=60,
            )
            assert all(event.wait(30) for event in started)
            signalled = time.monotonic()
            server.process.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            with pytest.raises(httpx.ConnectError):  # no longer accepting
                httpx.get(f"{server.url}/health", timeout=5)

            short_events = short.result(timeout=30)
            assert short_events[-1] == "[DONE]"
            assert short_events[-2]["choices"][0]["finish_reason"] == "length"
            for future in long:
                events = future.result(timeout=30)
                assert events[-1] == "[DONE]"
                assert events[-2]["error"]["code"] == "shutting_down"
                assert len(events) > 3
            ended = time.monotonic() - signalled
            assert DRAIN_S - 0.5 < ended < DRAIN_S + 2.5
            answer = whole.result(timeout=30)
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "shutting_down"
            assert answer.headers["retry-after"].isdigit()
        server.process.process.wait(timeout=15)
        log = server.log_tail()
        assert "Traceback" not in log and "CancelledError" not in log, log
    finally:
        server.stop()


async def test_requests_arriving_while_draining_get_503() -> None:
    app = build_app(ServerSettings(backend="simulated"), api_key="k")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        app.state.llamacert.drain.begin(5.0)
        for stream in (False, True):
            body = {"prompt": "hi", "max_tokens": 2, "stream": stream}
            response = await client.post("/v1/completions", json=body, headers={"Authorization": "Bearer k"})
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "shutting_down"


@contextlib.asynccontextmanager
async def _served() -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = build_app(ServerSettings(backend="simulated", simulated_token_s=0.02), api_key="k")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield app, client


async def test_a_stream_under_way_at_the_deadline_ends_with_an_error_and_done() -> None:
    async with _served() as (app, client):
        body = {"prompt": "hi", "max_tokens": 500, "ignore_eos": True, "stream": True}

        async def drain_soon() -> None:
            await asyncio.sleep(0.3)
            app.state.llamacert.drain.begin(0.2)

        # ASGITransport hands over the body once complete: 500 tokens would take 10 s undrained
        drainer = asyncio.create_task(drain_soon())
        started = time.monotonic()
        response = await client.post("/v1/completions", json=body, headers={"Authorization": "Bearer k"})
        await drainer
        assert time.monotonic() - started < 2
        events = [message.data for message in decode_all(response.text)]
        assert events[-1] == DONE
        assert json.loads(events[-2])["error"]["code"] == "shutting_down"
        assert len(events) > 5
        health = await client.get("/health")
        assert health.json()["in_flight"] == 0
