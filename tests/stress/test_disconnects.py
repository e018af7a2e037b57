"""A disconnect storm: streams abandoned after 1-3 events, then the server must be idle and as before.

After 1,000 abandoned streams (full scale) on the simulated backend, and 100 on the real model: the
in-flight count returns to zero, the next request's first token comes within a second, and the
server's memory (RSS) is within 10 % of what it was before the storm.
"""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import psutil
import pytest

from launch import ReferenceServer
from spec.sse import SseDecoder
from tests.stress.figures import idle_cpu_percent, record, scaled

pytestmark = pytest.mark.stress


async def _abandon(client: httpx.AsyncClient, server: ReferenceServer, events: int, max_tokens: int) -> int:
    """One stream read for `events` events and then dropped; the status it got."""
    body = {"prompt": "Tell me a long story.", "max_tokens": max_tokens, "ignore_eos": True, "stream": True}
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with client.stream("POST", f"{server.url}/v1/completions", json=body, headers=headers) as response:
        if response.status_code != 200:
            return response.status_code
        seen = 0
        decoder = SseDecoder()
        async for piece in response.aiter_text():
            seen += len(decoder.feed(piece))
            if seen >= events:
                break
    return 200


async def _storm(server: ReferenceServer, count: int, concurrency: int, max_tokens: int) -> dict[int, int]:
    chooser = random.Random(17)
    gate = asyncio.Semaphore(concurrency)
    statuses: dict[int, int] = {}
    # a client per stream: an abandoned stream's connection is closed, never reused
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one() -> None:
            async with gate:
                status = await _abandon(client, server, chooser.randint(1, 3), max_tokens)
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(one() for _ in range(count)))
    return statuses


def _in_flight(server: ReferenceServer) -> int:
    count: int = httpx.get(f"{server.url}/health", timeout=10).json()["in_flight"]
    return count


def _first_token_s(server: ReferenceServer) -> float:
    body = {"prompt": "Hello", "max_tokens": 4, "stream": True}
    headers = {"Authorization": f"Bearer {server.api_key}"}
    started = time.monotonic()
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200
        decoder = SseDecoder()
        for piece in response.iter_text():
            if decoder.feed(piece):
                return time.monotonic() - started
    raise AssertionError("the stream carried no event")


def _rss(server: ReferenceServer) -> int:
    return int(psutil.Process(server.process.pid).memory_info().rss)


def _storm_and_settle(server: ReferenceServer, name: str, count: int, concurrency: int, max_tokens: int) -> None:
    # warm up with a share of the same storm, so allocator pools and caches are counted in "before"
    asyncio.run(_storm(server, max(10, count // 5), concurrency, max_tokens))
    deadline = time.monotonic() + 30
    while _in_flight(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    rss_before = _rss(server)
    started = time.monotonic()
    statuses = asyncio.run(_storm(server, count, concurrency, max_tokens))
    storm_s = time.monotonic() - started
    settled = time.monotonic()
    while (busy := _in_flight(server)) and time.monotonic() - settled < 10:
        time.sleep(0.05)
    settle_s = time.monotonic() - settled
    first_token_s = _first_token_s(server)
    rss_after = _rss(server)
    growth = rss_after / rss_before - 1
    record(
        name,
        f"{count} streams dropped after 1-3 events ({concurrency} at a time) in {storm_s:.1f} s, statuses {statuses}; "
        f"in flight after: {busy} ({settle_s:.2f} s to settle); next first token {first_token_s * 1000:.0f} ms; "
        f"RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB ({growth:+.1%}); "
        f"idle CPU {idle_cpu_percent():.0f} %",
    )
    assert busy == 0
    assert first_token_s < 1.0
    assert abs(growth) <= 0.10
    assert set(statuses) == {200}, statuses


def test_a_thousand_abandoned_streams_leave_the_simulated_server_idle(simulated_server: ReferenceServer) -> None:
    _storm_and_settle(simulated_server, "disconnect storm, simulated", int(scaled(1000, 50)), 50, 400)


def test_abandoned_streams_leave_the_real_model_idle(model_server: ReferenceServer) -> None:
    # one llama.cpp slot: four at a time keep it busy and some waiting, none refused
    _storm_and_settle(model_server, "disconnect storm, model", int(scaled(100, 10)), 4, 200)
