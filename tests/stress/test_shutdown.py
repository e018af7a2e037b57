"""SIGTERM with streams in flight (D57): every stream ends with [DONE], in time, and the exit is clean."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import httpx
import pytest

from launch import ReferenceServer
from spec.sse import DONE, SseDecoder
from tests.stress.figures import idle_cpu_percent, record, scaled

pytestmark = pytest.mark.stress
DRAIN_S = 3.0


async def _stream(
    client: httpx.AsyncClient, server: ReferenceServer, max_tokens: int, first: asyncio.Event
) -> list[Any]:
    body = {"prompt": "hello", "max_tokens": max_tokens, "ignore_eos": True, "stream": True}
    headers = {"Authorization": f"Bearer {server.api_key}"}
    events: list[Any] = []
    decoder = SseDecoder()
    async with client.stream("POST", f"{server.url}/v1/completions", json=body, headers=headers) as response:
        assert response.status_code == 200
        async for piece in response.aiter_text():
            for message in decoder.feed(piece):
                events.append(message.data if message.data == DONE else json.loads(message.data))
                first.set()
    assert decoder.finish() == []
    return events


async def _in_flight_then_sigterm(
    server: ReferenceServer, finishing: int, cut: int
) -> tuple[list[list[Any]], list[list[Any]], float]:
    limits = httpx.Limits(max_connections=finishing + cut)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        started = [asyncio.Event() for _ in range(finishing + cut)]
        # at 20 ms a token: 50 tokens end inside the drain deadline, 5,000 cannot
        short = [asyncio.create_task(_stream(client, server, 50, started[i])) for i in range(finishing)]
        long = [asyncio.create_task(_stream(client, server, 5000, started[finishing + i])) for i in range(cut)]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started)), timeout=60)
        signalled = time.monotonic()
        server.process.process.send_signal(signal.SIGTERM)
        short_events = await asyncio.gather(*short)
        long_events = await asyncio.gather(*long)
        return short_events, long_events, time.monotonic() - signalled


def test_sigterm_with_streams_in_flight() -> None:
    finishing, cut = int(scaled(10, 2)), int(scaled(20, 3))
    server = ReferenceServer(
        ["--backend", "simulated", "--simulated-token-s", "0.02", "--drain-timeout-s", str(DRAIN_S)]
    )
    server.wait_ready()
    try:
        short, long, ended_s = asyncio.run(_in_flight_then_sigterm(server, finishing, cut))
        server.process.process.wait(timeout=DRAIN_S + 10)
        exited_s = ended_s
        log = server.log_tail()
    finally:
        status = server.stop()
    finished = sum(
        1 for events in short if events[-1] == "[DONE]" and events[-2]["choices"][0]["finish_reason"] == "length"
    )
    ended_in_band = sum(
        1 for events in long if events[-1] == "[DONE]" and events[-2].get("error", {}).get("code") == "shutting_down"
    )
    record(
        "SIGTERM with streams in flight",
        f"{finishing} short streams finished {finished}; {cut} long streams ended in-band with shutting_down + [DONE] "
        f"{ended_in_band}; last stream ended {exited_s:.2f} s after SIGTERM (drain deadline {DRAIN_S:g} s); "
        f"exit status {status}; traceback in log: {'Traceback' in log}; idle CPU {idle_cpu_percent():.0f} %",
    )
    assert finished == finishing
    assert ended_in_band == cut
    assert DRAIN_S - 0.5 < exited_s < DRAIN_S + 2.5
    assert "Traceback" not in log and "CancelledError" not in log, log
    assert status in (0, -signal.SIGTERM)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health", timeout=2)
