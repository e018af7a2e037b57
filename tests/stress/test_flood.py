"""Ten times the profile's request rate for 30 s (full scale): well-formed 429s, the limit held, no 5xx."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator

import httpx
import pytest

from launch import ReferenceServer
from reference_server.ratelimit import DEFAULT_BURST_SECONDS
from spec.profiles import get_profile
from tests.stress.figures import idle_cpu_percent, record, scaled

pytestmark = pytest.mark.stress
PROFILE = "serverless-llama31"
RATE_LIMIT_HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests")


@pytest.fixture(scope="module")
def limited_server() -> Iterator[ReferenceServer]:
    with ReferenceServer(["--backend", "simulated"], profile=PROFILE) as server:
        yield server


def _malformed_429(response: httpx.Response) -> str | None:
    retry_after = response.headers.get("retry-after", "")
    if not retry_after.isdigit():
        return f"Retry-After {retry_after!r}"
    missing = [name for name in RATE_LIMIT_HEADERS if name not in response.headers]
    if missing:
        return f"missing {missing}"
    error = response.json().get("error") or {}
    if error.get("code") != "rate_limit_exceeded" or not error.get("message"):
        return f"body {response.text[:200]}"
    return None


async def _flood(
    server: ReferenceServer, rate_per_s: float, duration_s: float
) -> tuple[collections.Counter[str], list[str], float]:
    statuses: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    headers = {"Authorization": f"Bearer {server.api_key}"}
    body = {"prompt": "hello", "max_tokens": 2}
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60, limits=limits) as client:

        async def one() -> None:
            try:
                response = await client.post("/v1/completions", json=body)
            except httpx.HTTPError as exc:
                statuses["connection error"] += 1
                problems.append(f"{type(exc).__name__}: {exc}")
                return
            statuses[str(response.status_code)] += 1
            if response.status_code == 429 and (problem := _malformed_429(response)):
                problems.append(problem)
            elif response.status_code not in (200, 429):
                problems.append(f"{response.status_code}: {response.text[:200]}")

        tasks: list[asyncio.Task[None]] = []
        started = time.monotonic()
        sent = 0
        # open loop: requests leave on schedule whether or not earlier ones were answered
        while (elapsed := time.monotonic() - started) < duration_s:
            due = int(elapsed * rate_per_s) + 1
            while sent < due:
                tasks.append(asyncio.create_task(one()))
                sent += 1
            await asyncio.sleep(0.005)
        offered_s = time.monotonic() - started
        await asyncio.gather(*tasks)
    return statuses, problems, sent / offered_s


def test_ten_times_the_rate_limit(limited_server: ReferenceServer) -> None:
    rpm = get_profile(PROFILE).requests_per_minute
    assert rpm is not None
    duration_s = scaled(30, 5)
    statuses, problems, offered = asyncio.run(_flood(limited_server, 10 * rpm / 60, duration_s))
    admitted = statuses["200"]
    # a token bucket: the burst (DEFAULT_BURST_SECONDS of the rate) plus the refill over the run
    most = rpm * duration_s / 60 + rpm * DEFAULT_BURST_SECONDS / 60
    record(
        "flood, 10x rate limit",
        f"{sum(statuses.values())} requests over {duration_s:.0f} s at {offered:.0f}/s offered "
        f"(limit {rpm / 60:.1f}/s): {dict(statuses)}; admitted {admitted} of at most {most:.0f}; "
        f"malformed or unexpected answers {len(problems)}; idle CPU {idle_cpu_percent():.0f} %",
    )
    assert not problems, problems[:10]
    assert offered >= 3 * rpm / 60, "the client could not offer a flood: the figures say nothing"
    assert 0.9 * (most - rpm * DEFAULT_BURST_SECONDS / 60) <= admitted <= most + 2
    assert statuses["429"] > 0
