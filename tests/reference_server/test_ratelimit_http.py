"""Rate limiting over real HTTP on the simulated backend: 2x the limit is accepted at the limit."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.conftest import ServerFactory

pytestmark = pytest.mark.slow
RPM = 600  # 10 requests/s; the bucket holds 10 s of it (reference_server/ratelimit.py)
BURST = RPM // 6


async def _offer(url: str, key: str, rate_per_s: float, duration_s: float) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {key}"}
    body = {"prompt": "hello", "max_tokens": 2}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        started = time.monotonic()
        tasks = []
        for i in range(int(rate_per_s * duration_s)):
            # open loop: each request leaves on schedule, whatever happened to the others
            delay = started + i / rate_per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(client.post("/v1/completions", json=body)))
        return list(await asyncio.gather(*tasks))


def test_twice_the_limit_is_accepted_at_the_limit(start_server: ServerFactory) -> None:
    server = start_server("--backend", "simulated", "--rpm", str(RPM))
    duration = 30.0
    responses = asyncio.run(_offer(server.url, server.api_key, 2 * RPM / 60, duration))
    statuses = [r.status_code for r in responses]
    accepted = statuses.count(200)
    expected = RPM * duration / 60 + BURST
    assert set(statuses) <= {200, 429}
    assert abs(accepted - expected) <= 0.02 * expected, (accepted, expected)
    for response in (r for r in responses if r.status_code == 429):
        assert int(response.headers["retry-after"]) >= 1
        assert int(response.headers["retry-after-ms"]) > 0
        assert response.json()["error"]["code"] == "rate_limit_exceeded"
        assert response.headers["x-ratelimit-limit-requests"] == str(RPM)


def test_under_the_limit_nothing_is_refused(start_server: ServerFactory) -> None:
    server = start_server("--backend", "simulated", "--rpm", str(RPM))
    responses = asyncio.run(_offer(server.url, server.api_key, 0.8 * RPM / 60, 20.0))
    assert [r.status_code for r in responses] == [200] * len(responses)
