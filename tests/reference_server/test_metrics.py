"""reference_server.metrics: /metrics in the Prometheus text format, counting what the routes did, in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.reference_server.inprocess import simulated_client

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


async def _client(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    async for client in simulated_client(KEY, **settings):
        yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client():
        yield c


async def _samples(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_requests_by_route_and_status_and_tokens(client: httpx.AsyncClient) -> None:
    body = {"prompt": "the quick brown fox", "max_tokens": 6, "ignore_eos": True}
    for _ in range(3):
        assert (await client.post("/v1/completions", json=body, headers=AUTH)).status_code == 200
    assert (await client.post("/v1/completions", json=body)).status_code == 401
    assert (await client.post("/chat/completions", json={"messages": []}, headers=AUTH)).status_code == 400
    samples = await _samples(client)
    assert samples[("llamacert_requests_total", (("route", "/v1/completions"), ("status", "200")))] == 3
    assert samples[("llamacert_requests_total", (("route", "/v1/completions"), ("status", "401")))] == 1
    assert samples[("llamacert_requests_total", (("route", "/chat/completions"), ("status", "400")))] == 1
    assert samples[("llamacert_generation_tokens_total", ())] == 18
    assert samples[("llamacert_prompt_tokens_total", ())] == 3 * 5  # BOS and four words
    assert samples[("llamacert_requests_running", ())] == 0


async def test_a_stream_is_timed(client: httpx.AsyncClient) -> None:
    body = {"prompt": "hello", "max_tokens": 5, "ignore_eos": True, "stream": True}
    assert (await client.post("/v1/completions", json=body, headers=AUTH)).status_code == 200
    samples = await _samples(client)
    assert samples[("llamacert_time_to_first_token_seconds_count", ())] == 1
    # five token events, four gaps between them; the usage event and [DONE] are not tokens
    assert samples[("llamacert_inter_token_latency_seconds_count", ())] == 4
    assert samples[("llamacert_requests_waiting", ())] == 0


async def test_unknown_paths_share_one_label(client: httpx.AsyncClient) -> None:
    for path in ("/a", "/b", "/c"):
        assert (await client.get(path)).status_code == 404
    samples = await _samples(client)
    assert samples[("llamacert_requests_total", (("route", "other"), ("status", "404")))] == 3


async def test_rate_limiter_buckets_and_refusals_by_reason() -> None:
    async for client in _client(requests_per_minute=6):
        body = {"prompt": "hi", "max_tokens": 1}
        statuses = [(await client.post("/v1/completions", json=body, headers=AUTH)).status_code for _ in range(4)]
        samples = await _samples(client)
        refused = statuses.count(429)
        assert refused >= 1
        assert samples[("llamacert_rate_limit_rejections_total", (("reason", "requests"),))] == refused
        assert samples[("llamacert_rate_limit_remaining_requests", ())] == 0


async def test_no_limiter_no_bucket_gauges(client: httpx.AsyncClient) -> None:
    names = {name for name, _ in await _samples(client)}
    assert "llamacert_rate_limit_remaining_requests" not in names
