"""POST /tokenize (D58) on the reference server: both readers' shapes, the counts the generation routes charge,
auth, and a bad body answered 400 in the envelope; on the simulated backend, and (model-marked) on llama.cpp."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from reference_server.server import build_app
from reference_server.settings import ServerSettings
from spec.document import schema_validator
from spec.routes import tokenize_path

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXT = "the quick brown fox jumps over the lazy dog"


async def _client(settings: ServerSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(settings, api_key=KEY)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=120) as http,
    ):
        yield http


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for http in _client(ServerSettings(backend="simulated")):
        yield http


async def _tokenize(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(tokenize_path(), json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    errors = [error.message for error in schema_validator("TokenizeResponse").iter_errors(answer)]
    assert errors == [], errors
    assert answer["count"] == len(answer["tokens"])
    return answer


async def _usage_prompt_tokens(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> int:
    response = await client.post(path, json={**body, "max_tokens": 1}, headers=AUTH)
    assert response.status_code == 200, response.text
    count: int = response.json()["usage"]["prompt_tokens"]
    return count


async def test_prompt_counts_what_the_completions_route_charges(client: httpx.AsyncClient) -> None:
    answer = await _tokenize(client, {"prompt": TEXT, "model": "simulated"})
    # the simulated backend: one token per word, after its start token
    assert answer["count"] == len(TEXT.split()) + 1
    assert answer["count"] == await _usage_prompt_tokens(client, "/v1/completions", {"prompt": TEXT})
    assert answer["max_model_len"] == 8192


async def test_content_leaves_the_start_token_out_unless_asked_as_llama_cpp_does(client: httpx.AsyncClient) -> None:
    plain = await _tokenize(client, {"content": TEXT})
    special = await _tokenize(client, {"content": TEXT, "add_special": True})
    assert plain["count"] == len(TEXT.split())
    assert special["tokens"][1:] == plain["tokens"]
    without = await _tokenize(client, {"prompt": TEXT, "add_special_tokens": False})
    assert without["tokens"] == plain["tokens"]


async def test_messages_count_what_the_chat_route_charges(client: httpx.AsyncClient) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": TEXT}]
    answer = await _tokenize(client, {"messages": messages})
    assert answer["count"] == await _usage_prompt_tokens(client, "/v1/chat/completions", {"messages": messages})
    # the template's tokens come on top of the content's
    assert answer["count"] > len(TEXT.split()) + 2


async def test_the_route_needs_the_key(client: httpx.AsyncClient) -> None:
    response = await client.post(tokenize_path(), json={"content": TEXT})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "content"),
        ({"content": TEXT, "prompt": TEXT}, "prompt"),
        ({"content": 7}, "content"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user"}]}, "content"),  # as the chat route names it
        ({"content": TEXT, "add_special": True, "add_special_tokens": False}, "add_special_tokens"),
        ({"content": TEXT, "add_special": "yes"}, "add_special"),
    ],
)
async def test_a_bad_body_is_a_400_naming_the_member(
    client: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    response = await client.post(tokenize_path(), json=body, headers=AUTH)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert not [e.message for e in schema_validator("ErrorResponse").iter_errors(response.json())]


async def test_a_body_that_is_not_json_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        tokenize_path(), content=b"{not json", headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "error" in response.json()


@pytest.mark.model
@pytest.mark.slow
async def test_on_llama_cpp_the_counts_are_the_usage() -> None:
    async for client in _client(ServerSettings(backend="llamacpp", parallel=1)):
        answer = await _tokenize(client, {"prompt": TEXT})
        assert answer["count"] == await _usage_prompt_tokens(client, "/v1/completions", {"prompt": TEXT})
        plain = await _tokenize(client, {"content": TEXT})
        assert answer["tokens"][-len(plain["tokens"]) :] == plain["tokens"]
        # the embedded SmolLM2 counts these common words one token each, and its GGUF adds no start token
        assert len(plain["tokens"]) == len(TEXT.split()) == answer["count"]
        messages = [{"role": "user", "content": TEXT}]
        chat = await _tokenize(client, {"messages": messages})
        assert chat["count"] == await _usage_prompt_tokens(client, "/v1/chat/completions", {"messages": messages})
