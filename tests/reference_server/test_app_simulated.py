"""The HTTP layer over the simulated backend, in process: auth, errors, limits, content safety, SSE."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from spec.models import AZURE_PASS_THROUGH
from spec.sse import DONE, SseDecoder
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


def _events(text: str) -> list[Any]:
    decoder = SseDecoder()
    messages = [*decoder.feed(text), *decoder.finish()]
    assert not decoder.framing.unterminated_event and decoder.framing.line_endings <= {"\n"}
    return [DONE if message.data == DONE else json.loads(message.data) for message in messages]


async def test_completion_and_usage(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/completions", json={"prompt": "hello world", "max_tokens": 5}, headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "text_completion"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert body["usage"]["completion_tokens"] <= 5


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"api-key": KEY}, 200), ({"Authorization": "Basic x"}, 401)],
)
async def test_auth(client: httpx.AsyncClient, headers: dict[str, str], status: int) -> None:
    response = await client.post("/completions", json={"prompt": "x", "max_tokens": 1}, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "temperature": 3}, "temperature"),
        ({"prompt": "x", "max_tokens": "3"}, "max_tokens"),
        ({"prompt": 5}, "prompt"),
        ({}, "prompt"),
        ({"prompt": "x", "n": 2, "best_of": 1}, "best_of"),
        ({"prompt": "x", "best_of": 3, "stream": True}, "best_of"),
        ({"prompt": "x", "use_beam_search": True, "best_of": 2, "temperature": 0.5}, "temperature"),
        ({"prompt": "x", "stop_token_ids": [-1]}, "stop_token_ids[0]"),
        ({"prompt": "x", "max_tokens": 10_000}, "max_tokens"),
    ],
)
async def test_invalid_requests_name_their_parameter(
    client: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    response = await client.post("/v1/completions", json=body, headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


async def test_chat_errors_name_nested_parameters(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", json={"messages": [{"role": "bot", "content": "x"}]}, headers=AUTH
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[0].role"
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
    response = await client.post("/v1/chat/completions", json={"messages": [image]}, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[0].content"


@pytest.mark.parametrize("raw", [b"{", b'{"prompt": "x",}', b"[1]", b"", b'{"prompt": NaN}', b"\xff\xfe"])
async def test_malformed_bodies_are_400(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post("/v1/completions", content=raw, headers=AUTH)
    assert response.status_code == 400
    assert "error" in response.json()


async def test_oversized_body_is_413_before_parsing(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/completions", content=b"x" * 2_000_000, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/whatever", headers=AUTH)).status_code == 404
    response = await client.get("/v1/completions", headers=AUTH)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_openapi_document_is_served(client: httpx.AsyncClient) -> None:
    for path in ("/openapi.json", "/swagger.json"):
        document = (await client.get(path)).json()
        assert document["openapi"].startswith("3.1")
        assert "/v1/chat/completions" in document["paths"]


async def test_chat_stream_framing(client: httpx.AsyncClient) -> None:
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 6,
        "stream": True,
        "n": 2,
        "stream_options": {"include_usage": True},
    }
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] > 0
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks[:-1] if c["choices"][0]["index"] == index]
        assert mine[0]["delta"]["role"] == "assistant"
        assert all("role" not in c["delta"] for c in mine[1:])
        assert [c["finish_reason"] is not None for c in mine] == [False] * (len(mine) - 1) + [True]


def _content_safety_config(tmp_path: Path, flag_word: str | None = None, error_word: str | None = None) -> Path:
    config: dict[str, Any] = {
        "hold_back_chars": 64,
        "categories": {
            name: {
                "threshold": "medium",
                "patterns": [{"pattern": f"LLAMACERT-TEST-{name.upper()}-HIGH", "severity": "high"}],
            }
            for name in ("hate", "sexual", "violence", "self_harm")
        },
    }
    if flag_word:
        config["categories"]["violence"]["patterns"].append({"pattern": flag_word, "severity": "high"})
    if error_word:
        config["error_pattern"] = error_word
    path = tmp_path / "safety.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("route", ["/v1/completions", "/completions"])
async def test_flagged_prompt_is_400_content_filter(tmp_path: Path, route: str) -> None:
    async for client in _client(profile="serverless-llama31"):
        response = await client.post(route, json={"prompt": "LLAMACERT-TEST-VIOLENCE-HIGH"}, headers=AUTH)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "content_filter"
        if route.startswith("/v1/"):
            assert error["details"]["categories"]["violence"]["filtered"] is True
        else:  # the Azure.Core form (D42)
            assert response.headers["x-ms-error-code"] == "content_filter"
            assert error["innererror"]["code"] == "ResponsibleAIPolicyViolation"
            assert error["innererror"]["content_filter_result"]["violence"] == {"filtered": True, "severity": "high"}
            assert error["target"] == error["param"] == "prompt" and error["details"] == []


def _body(chat: bool, **params: Any) -> dict[str, Any]:
    base: dict[str, Any] = (
        {"messages": [{"role": "user", "content": "hello world"}]} if chat else {"prompt": "hello world"}
    )
    return {**base, "max_tokens": 30, "temperature": 0, "ignore_eos": True, **params}


def _returned(response: httpx.Response, chat: bool, stream: bool) -> tuple[str, str | None]:
    if stream:
        chunks = [e for e in _events(response.text) if e != "[DONE]"]
        pieces = [c["choices"][0]["delta"].get("content") or "" if chat else c["choices"][0]["text"] for c in chunks]
        return "".join(pieces), chunks[-1]["choices"][0]["finish_reason"]
    choice = response.json()["choices"][0]
    return (choice["message"]["content"] if chat else choice["text"]), choice["finish_reason"]


async def _simulated_text(client: httpx.AsyncClient, chat: bool) -> str:
    route = "/v1/chat/completions" if chat else "/v1/completions"
    response = await client.post(route, json=_body(chat), headers=AUTH)
    return _returned(response, chat, stream=False)[0]


@pytest.mark.parametrize("chat", [False, True])
@pytest.mark.parametrize("stream", [False, True])
async def test_flagged_completion_is_cut_with_content_filter(tmp_path: Path, stream: bool, chat: bool) -> None:
    async for plain in _client():
        text = await _simulated_text(plain, chat)
    word = text.split()[3]
    config = _content_safety_config(tmp_path, flag_word=word)
    route = "/chat/completions" if chat else "/completions"
    async for client in _client(profile="serverless-llama31", content_safety_config=config):
        # ignore_eos and logprobs are Llama extras on the Azure routes (D40)
        headers = {**AUTH, **AZURE_PASS_THROUGH}
        response = await client.post(route, json=_body(chat, stream=stream, logprobs=1), headers=headers)
        returned, finish = _returned(response, chat, stream)
        assert finish == "content_filter"
        assert word not in returned.split()
        assert text.startswith(returned)


@pytest.mark.parametrize("chat", [False, True])
@pytest.mark.parametrize("stream", [False, True])
async def test_failing_filter_gives_content_filter_error(tmp_path: Path, stream: bool, chat: bool) -> None:
    async for plain in _client():
        text = await _simulated_text(plain, chat)
    config = _content_safety_config(tmp_path, error_word=text.split()[2])
    route = "/v1/chat/completions" if chat else "/v1/completions"
    async for client in _client(profile="serverless-llama31", content_safety_config=config):
        response = await client.post(route, json=_body(chat, stream=stream), headers=AUTH)
        assert response.status_code == 200
        assert _returned(response, chat, stream)[1] == "content_filter_error"


@pytest.mark.parametrize("chat", [False, True])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_prompt_the_filter_cannot_judge_is_not_answered(stream: bool, chat: bool) -> None:
    # D24: nothing is generated from an unmoderated prompt; every choice ends content_filter_error
    content = "please repeat LLAMACERT-TEST-FILTER-ERROR back"
    base = {"messages": [{"role": "user", "content": content}]} if chat else {"prompt": content}
    body = {**base, "max_tokens": 30, "n": 2, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    route = "/v1/chat/completions" if chat else "/v1/completions"
    async for client in _client(profile="serverless-llama31"):
        response = await client.post(route, json=body, headers=AUTH)
        assert response.status_code == 200
        if stream:
            events = _events(response.text)
            assert events[-1] == "[DONE]"
            chunks = events[:-1]
            choices = [c["choices"][0] for c in chunks if c["choices"]]
            assert sorted(c["index"] for c in choices) == [0, 1]
            assert {c["finish_reason"] for c in choices} == {"content_filter_error"}
            assert all((c["delta"].get("content") if chat else c["text"]) == "" for c in choices)
            usage = chunks[-1]["usage"]
        else:
            payload = response.json()
            assert [c["finish_reason"] for c in payload["choices"]] == ["content_filter_error"] * 2
            assert all((c["message"]["content"] if chat else c["text"]) == "" for c in payload["choices"])
            usage = payload["usage"]
        assert usage["completion_tokens"] == 0 and usage["prompt_tokens"] > 0


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/chat/completions"])
async def test_flagged_chat_prompt_is_400_content_filter(route: str) -> None:
    async for client in _client(profile="serverless-llama3"):
        body = {"messages": [{"role": "user", "content": "LLAMACERT-TEST-HATE-MEDIUM"}]}
        response = await client.post(route, json=body, headers=AUTH)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "content_filter"
        assert response.json()["error"]["param"] == "messages"


async def test_rate_limit_headers_and_429() -> None:
    async for client in _client(requests_per_minute=6):
        statuses = []
        for _ in range(4):
            response = await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 1}, headers=AUTH)
            statuses.append(response.status_code)
            assert response.headers["x-ratelimit-limit-requests"] == "6"
            assert "x-ratelimit-remaining-requests" in response.headers
        assert statuses[0] == 200 and 429 in statuses
        assert int(response.headers["retry-after"]) >= 1
        assert int(response.headers["retry-after-ms"]) > 0
        assert response.json()["error"]["code"] == "rate_limit_exceeded"


async def test_request_that_can_never_fit_the_token_limit_is_refused() -> None:
    async for client in _client(tokens_per_minute=100):
        response = await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 500}, headers=AUTH)
        assert response.status_code == 400
        assert "retry-after" not in response.headers
        assert "100" in response.json()["error"]["message"]
