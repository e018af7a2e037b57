"""The reference server as an Azure AI Model Inference endpoint (D40-D42) and the OpenAI forms (D44, D45),
in process over the simulated backend; every body is checked against spec/openapi.yaml."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from reference_server.server import build_app
from reference_server.settings import ServerSettings
from spec.document import schema_validator
from spec.models import AZURE_API_VERSIONS, AZURE_KNOWN_MEMBERS
from spec.sse import DONE, decode_all

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = {"messages": [{"role": "user", "content": "hello world"}], "max_tokens": 4}
COMPLETION = {"prompt": "hello world", "max_tokens": 4}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(ServerSettings(backend="simulated"), api_key=KEY)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


def _valid(schema: str, body: Any) -> None:
    errors = [error.message for error in schema_validator(schema).iter_errors(body)]
    assert errors == [], errors


def _azure_error(response: httpx.Response, status: int, code: str, target: str | None) -> dict[str, Any]:
    """The Azure.Core error (D42): our members kept, target = param, details a list, x-ms-error-code."""
    assert response.status_code == status, response.text
    assert response.headers["x-ms-error-code"] == code
    body = response.json()
    _valid("ErrorResponse", body)
    error: dict[str, Any] = body["error"]
    assert error["code"] == code and error["message"]
    assert error.get("target") == error["param"] == target
    assert isinstance(error["details"], list)
    return error


@pytest.mark.parametrize(
    ("route", "base", "kind"), [("/chat/completions", CHAT, "chat"), ("/completions", COMPLETION, "completion")]
)
async def test_llama_extras_need_pass_through(
    client: httpx.AsyncClient, route: str, base: dict[str, Any], kind: str
) -> None:
    body = {**base, "n": 2, "ignore_eos": True}
    for headers in (AUTH, {**AUTH, "extra-parameters": "error"}):
        error = _azure_error(
            await client.post(route, json=body, headers=headers), 400, "extra_parameters_not_allowed", "ignore_eos"
        )
        assert "'ignore_eos'" in error["message"] and "'n'" in error["message"] and "pass-through" in error["message"]
        assert [detail["target"] for detail in error["details"]] == ["ignore_eos", "n"]
    dropped = await client.post(route, json=body, headers={**AUTH, "extra-parameters": "drop"})
    assert dropped.status_code == 200 and len(dropped.json()["choices"]) == 1  # served as if n was not sent
    passed = await client.post(route, json=body, headers={**AUTH, "extra-parameters": "pass-through"})
    assert passed.status_code == 200 and len(passed.json()["choices"]) == 2
    assert passed.json()["usage"]["completion_tokens"] == 8  # ignore_eos reached the model too
    known_only = {
        name: value
        for name, value in {**base, "temperature": 0, "seed": 1}.items()
        if name in AZURE_KNOWN_MEMBERS[kind]
    }
    assert (await client.post(route, json=known_only, headers=AUTH)).status_code == 200


async def test_an_unknown_extra_parameters_value_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=CHAT, headers={**AUTH, "extra-parameters": "bogus"})
    _azure_error(response, 400, "invalid_extra_parameters", "extra-parameters")


async def test_the_llama_routes_ignore_the_header_and_keep_their_envelope(client: httpx.AsyncClient) -> None:
    body = {**COMPLETION, "n": 2}
    for value in (None, "error", "bogus"):
        headers = AUTH if value is None else {**AUTH, "extra-parameters": value}
        response = await client.post("/v1/completions", json=body, headers=headers)
        assert response.status_code == 200 and len(response.json()["choices"]) == 2
    refused = await client.post("/v1/completions", json={**COMPLETION, "temperature": 9}, headers=AUTH)
    assert refused.status_code == 400 and "x-ms-error-code" not in refused.headers
    assert set(refused.json()["error"]) == {"code", "message", "param", "type", "details"}


@pytest.mark.parametrize("version", [*AZURE_API_VERSIONS, None])
async def test_listed_or_absent_api_versions_are_served(client: httpx.AsyncClient, version: str | None) -> None:
    params = {} if version is None else {"api-version": version}
    assert (await client.get("/info", params=params, headers=AUTH)).status_code == 200
    assert (await client.post("/chat/completions", params=params, json=CHAT, headers=AUTH)).status_code == 200


@pytest.mark.parametrize("route", ["/info", "/chat/completions", "/completions"])
async def test_an_unknown_api_version_is_refused(client: httpx.AsyncClient, route: str) -> None:
    params = {"api-version": "1999-01-01"}
    if route == "/info":
        response = await client.get(route, params=params, headers=AUTH)
    else:
        response = await client.post(
            route, params=params, json=COMPLETION if route == "/completions" else CHAT, headers=AUTH
        )
    error = _azure_error(response, 400, "UnsupportedApiVersion", "api-version")
    assert "1999-01-01" in error["message"] and AZURE_API_VERSIONS[0] in error["message"]
    llama = await client.post("/v1/chat/completions", params=params, json=CHAT, headers=AUTH)
    assert llama.status_code == 200


async def test_azure_routes_answer_auth_and_unknown_errors_in_the_azure_form(client: httpx.AsyncClient) -> None:
    _azure_error(await client.post("/chat/completions", json=CHAT), 401, "invalid_api_key", None)
    _azure_error(await client.get("/info", headers={"api-key": "wrong"}), 401, "invalid_api_key", None)


async def test_client_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    headers = {**AUTH, "x-ms-client-request-id": "abc-123"}
    assert (await client.post("/chat/completions", json=CHAT, headers=headers)).headers[
        "x-ms-client-request-id"
    ] == "abc-123"
    refused = await client.post("/chat/completions", json={"messages": []}, headers=headers)
    assert refused.status_code == 400 and refused.headers["x-ms-client-request-id"] == "abc-123"
    assert "x-ms-client-request-id" not in (await client.post("/chat/completions", json=CHAT, headers=AUTH)).headers


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/chat/completions"])
@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "4", "tool_call_id": "c1"}]},
            "messages[1].role",
        ),
        (
            {"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]}]},
            "messages[0].tool_calls",
        ),
    ],
)
async def test_unserved_members_are_422_not_ignored(
    client: httpx.AsyncClient, route: str, extra: dict[str, Any], param: str
) -> None:
    response = await client.post(route, json={**CHAT, **extra}, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "parameter_not_supported"
    assert response.json()["error"]["param"] == param
    if not route.startswith("/v1/"):
        _azure_error(response, 422, "parameter_not_supported", param)


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/chat/completions"])
@pytest.mark.parametrize(
    "extra",
    [
        {"response_format": {"type": "text"}},
        {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "none"},
        {"tool_choice": "auto"},
        {"frequency_penalty": 1.5, "presence_penalty": 0.5},
        {"messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}]},
        {"model": "any-name"},
    ],
)
async def test_served_members(client: httpx.AsyncClient, route: str, extra: dict[str, Any]) -> None:
    response = await client.post(route, json={**CHAT, **extra}, headers=AUTH)
    assert response.status_code == 200, response.text
    _valid("ChatCompletionResponse", response.json())


async def test_a_developer_turn_is_a_system_turn(client: httpx.AsyncClient) -> None:
    bodies = [
        {"messages": [{"role": role, "content": "Answer briefly."}, {"role": "user", "content": "hi"}], "max_tokens": 1}
        for role in ("system", "developer")
    ]
    prompts = [
        (await client.post("/v1/chat/completions", json=b, headers=AUTH)).json()["usage"]["prompt_tokens"]
        for b in bodies
    ]
    assert prompts[0] == prompts[1]


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/completions"])
async def test_max_completion_tokens_stands_for_max_tokens(client: httpx.AsyncClient, route: str) -> None:
    base = CHAT if "chat" in route else COMPLETION
    body = {key: value for key, value in base.items() if key != "max_tokens"}
    response = await client.post(route, json={**body, "max_completion_tokens": 7, "ignore_eos": True}, headers=AUTH)
    assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] == 7
    both = {**body, "max_completion_tokens": 3, "max_tokens": 5, "ignore_eos": True}
    newer_wins = await client.post(route, json=both, headers=AUTH)
    assert newer_wins.status_code == 200 and newer_wins.json()["usage"]["completion_tokens"] == 3


async def test_a_list_prompt_gets_n_choices_per_prompt(client: httpx.AsyncClient) -> None:
    one = (await client.post("/v1/completions", json={**COMPLETION, "prompt": ["hello world"]}, headers=AUTH)).json()
    assert len(one["choices"]) == 1
    body = {"prompt": ["hello world", "the quick brown fox"], "n": 2, "max_tokens": 3, "ignore_eos": True}
    response = await client.post("/v1/completions", json=body, headers=AUTH)
    assert response.status_code == 200
    result = response.json()
    _valid("CompletionResponse", result)
    assert [choice["index"] for choice in result["choices"]] == [0, 1, 2, 3]
    assert result["usage"]["completion_tokens"] == 12
    single = [
        (await client.post("/v1/completions", json={"prompt": p, "max_tokens": 1}, headers=AUTH)).json()["usage"][
            "prompt_tokens"
        ]
        for p in body["prompt"]
    ]
    assert result["usage"]["prompt_tokens"] == sum(single)
    streamed = await client.post("/v1/completions", json={**body, "stream": True}, headers=AUTH)
    assert streamed.status_code == 400 and streamed.json()["error"]["param"] == "prompt"
    for bad in ([], [""], ["x", 3]):
        refused = await client.post("/v1/completions", json={"prompt": bad}, headers=AUTH)
        assert refused.status_code == 400 and refused.json()["error"]["param"].startswith("prompt"), refused.text


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_chat_logprobs_form(client: httpx.AsyncClient, stream: bool) -> None:
    body = {**CHAT, "logprobs": True, "top_logprobs": 2, "stream": stream, "temperature": 0}
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    if stream:
        chunks = [json.loads(event.data) for event in decode_all(response.text) if event.data != DONE]
        entries = [
            e for c in chunks for choice in c["choices"] for e in (choice["logprobs"] or {}).get("content") or []
        ]
        text = "".join(choice["delta"].get("content") or "" for c in chunks for choice in c["choices"])
    else:
        _valid("ChatCompletionResponse", response.json())
        choice = response.json()["choices"][0]
        entries, text = choice["logprobs"]["content"], choice["message"]["content"]
    assert "".join(entry["token"] for entry in entries) == text
    for entry in entries:
        assert (
            entry["logprob"] <= 0
            and len(entry["top_logprobs"]) == 2
            and bytes(entry["bytes"]).decode() == entry["token"]
        )
        alternatives = [alt["logprob"] for alt in entry["top_logprobs"]]
        assert alternatives == sorted(alternatives, reverse=True) and entry["logprob"] <= alternatives[0] + 1e-9
    refused = await client.post("/v1/chat/completions", json={**CHAT, "top_logprobs": 2}, headers=AUTH)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "top_logprobs"
    documented = (await client.post("/v1/chat/completions", json={**CHAT, "logprobs": 1}, headers=AUTH)).json()
    assert set(documented["choices"][0]["logprobs"]) >= {"text_offsets", "tokens", "top_logprobs", "token_logprobs"}
    off = (await client.post("/v1/chat/completions", json={**CHAT, "logprobs": False}, headers=AUTH)).json()
    assert off["choices"][0]["logprobs"] is None


async def test_completions_logprobs_carry_text_offset_equal_to_text_offsets(client: httpx.AsyncClient) -> None:
    result = (await client.post("/v1/completions", json={**COMPLETION, "logprobs": 1}, headers=AUTH)).json()
    _valid("CompletionResponse", result)
    logprobs = result["choices"][0]["logprobs"]
    assert logprobs["text_offset"] == logprobs["text_offsets"] and logprobs["text_offsets"][0] == 0


async def test_model_list(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/models")).status_code == 401
    models = (await client.get("/v1/models", headers=AUTH)).json()
    _valid("ModelList", models)
    info = (await client.get("/info", headers=AUTH)).json()
    assert [entry["id"] for entry in models["data"]] == [info["model_name"]]
    assert models["data"][0]["owned_by"] == info["model_provider_name"]
