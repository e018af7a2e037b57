"""The fault barrier answers a bug of ours in the error body of the route it happened on: our envelope on the
Llama routes (D14), the Azure.Core form with `x-ms-error-code` on the Azure routes and `/info` (D42). Injected
faults (`--fault-wrong-usage`) strike exactly the share asked for, and only when asked."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from reference_server.backends.base import Generation, SamplingOptions
from reference_server.backends.simulated import create_simulated_backend
from reference_server.faults import REQUEST_ID_HEADER, FaultBarrier, FractionFault
from reference_server.server import build_app
from reference_server.settings import ServerSettings
from spec.document import schema_validator
from spec.models import AZURE_API_VERSIONS
from spec.sse import DONE, decode_all
from tests.reference_server.inprocess import simulated_client

KEY = "faults-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
VERSION = {"api-version": AZURE_API_VERSIONS[0]}
LLAMA_ROUTES = ["/v1/completions", "/v1/chat/completions"]
AZURE_ROUTES = ["/completions", "/chat/completions", "/info"]


async def _a_bug(scope: Scope, receive: Receive, send: Send) -> None:
    raise ZeroDivisionError("a bug behind the barrier")


def _assert_llama_500(response: httpx.Response) -> None:
    assert response.status_code == 500, response.text
    assert "x-ms-error-code" not in response.headers
    body = response.json()
    assert schema_validator("ErrorResponse").is_valid(body), body
    error = body["error"]
    assert error["code"] == "server_error" and "ZeroDivisionError" in error["message"]
    assert response.headers[REQUEST_ID_HEADER] in error["message"]
    # D14's envelope exactly: none of the Azure.Core members
    assert not {"target", "innererror"} & error.keys() and error.get("details") is None


def _assert_azure_500(response: httpx.Response) -> None:
    assert response.status_code == 500, response.text
    assert response.headers["x-ms-error-code"] == "server_error"
    body = response.json()
    assert schema_validator("ErrorResponse").is_valid(body), body
    error = body["error"]
    assert error["code"] == "server_error" and "ZeroDivisionError" in error["message"]
    assert response.headers[REQUEST_ID_HEADER] in error["message"]
    assert error["details"] == [] and error.get("target") is None and error["type"] == "server_error"


@pytest.mark.parametrize("path", LLAMA_ROUTES + AZURE_ROUTES)
async def test_the_barrier_answers_in_the_form_of_the_route(path: str) -> None:
    transport = httpx.ASGITransport(app=FaultBarrier(_a_bug))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.request("GET" if path == "/info" else "POST", path, params=VERSION, json={})
    if path in AZURE_ROUTES:
        _assert_azure_500(response)
    else:
        _assert_llama_500(response)


@pytest.fixture
async def faulty_client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app over a simulated backend whose generate has a bug."""
    backend = create_simulated_backend()

    async def generate(prompt_ids: list[int], options: SamplingOptions, request_id: str) -> Generation:
        raise ZeroDivisionError("a bug in the backend")

    monkeypatch.setattr(backend, "generate", generate)
    app = build_app(ServerSettings(backend="simulated"), backend=backend, api_key=KEY)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        yield client


def _body(path: str) -> dict[str, Any]:
    if "chat" in path:
        return {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return {"prompt": "hi", "max_tokens": 2}


@pytest.mark.parametrize("path", ["/completions", "/chat/completions"])
async def test_a_backend_fault_on_an_azure_route_is_an_azure_core_500(
    faulty_client: httpx.AsyncClient, path: str
) -> None:
    headers = {**AUTH, "x-ms-client-request-id": "fault-1"}
    response = await faulty_client.post(path, params=VERSION, json=_body(path), headers=headers)
    _assert_azure_500(response)
    assert response.headers["x-ms-client-request-id"] == "fault-1"


@pytest.mark.parametrize("path", LLAMA_ROUTES)
async def test_a_backend_fault_on_a_llama_route_keeps_the_envelope(faulty_client: httpx.AsyncClient, path: str) -> None:
    _assert_llama_500(await faulty_client.post(path, json=_body(path), headers=AUTH))


@pytest.mark.parametrize(("fraction", "struck"), [(0.0, 0), (0.1, 10), (0.25, 25), (1 / 3, 33), (1.0, 100)])
def test_a_fraction_fault_strikes_its_share_evenly(fraction: float, struck: int) -> None:
    fault = FractionFault(fraction)
    hits = [fault.strikes() for _ in range(100)]
    assert sum(hits) == fault.struck == struck
    # evenly spread: no two strikes closer together than the share allows
    positions = [index for index, hit in enumerate(hits) if hit]
    gaps = [later - earlier for earlier, later in itertools.pairwise(positions)]
    assert all(gap >= int(1 / fraction) for gap in gaps)


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_a_fraction_outside_zero_to_one_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        FractionFault(fraction)


async def _totals(body: dict[str, Any], count: int, **settings: Any) -> list[bool]:
    """For `count` answers, whether usage.total_tokens was the honest sum."""
    honest = []
    async for client in simulated_client(KEY, **settings):
        for _ in range(count):
            usage = (await client.post("/v1/completions", json=body, headers=AUTH)).json()["usage"]
            honest.append(usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"])
    return honest


async def test_the_usage_fault_breaks_the_share_of_answers_it_is_given() -> None:
    honest = await _totals({"prompt": "hello", "max_tokens": 4}, 20, fault_wrong_usage=0.25)
    assert honest.count(False) == 5 and honest[3] is False and honest[2] is True


async def test_the_usage_fault_also_breaks_a_streams_usage_chunk() -> None:
    async for client in simulated_client(KEY, fault_wrong_usage=1.0):
        body = {"prompt": "hello", "max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}}
        text = (await client.post("/v1/completions", json=body, headers=AUTH)).text
    chunks = [json.loads(event.data) for event in decode_all(text) if event.data != DONE]
    usage = next(chunk["usage"] for chunk in chunks if chunk.get("usage"))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] + 1


async def test_without_the_fault_every_usage_is_honest() -> None:
    assert all(await _totals({"prompt": "hello", "max_tokens": 4}, 20))
