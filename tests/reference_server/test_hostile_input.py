"""Nothing a client sends gets a 5xx: the hostile set against every route, in process and over real HTTP.

Each case states the answer it must get (status, and the parameter or limit the message names);
after every case the same client must still be served, so a refusal never costs the connection.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from reference_server.backends.base import Generation, SamplingOptions
from reference_server.backends.simulated import create_simulated_backend
from reference_server.faults import REQUEST_ID_HEADER
from reference_server.settings import ServerSettings
from spec.sse import DONE_EVENT
from tests.reference_server.inprocess import simulated_client
from tests.reference_server.threaded_server import serve_in_thread

KEY = "hostile-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
JSON = {"Content-Type": "application/json"}
COMPLETION_ROUTES = ["/v1/completions", "/completions"]
CHAT_ROUTES = ["/v1/chat/completions", "/chat/completions"]
POST_ROUTES = COMPLETION_ROUTES + CHAT_ROUTES
GET_ROUTES = ["/info", "/openapi.json", "/health"]


@dataclass(frozen=True)
class Hostile:
    """One hostile request body and the answer it must get."""

    name: str
    body: bytes
    status: int
    says: str
    """A fragment the error message must contain (the limit or the problem, in words)."""
    param: str | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


def _valid(chat: bool) -> dict[str, Any]:
    if chat:
        return {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return {"prompt": "hello", "max_tokens": 2}


def _hostile_set(chat: bool) -> list[Hostile]:
    valid = _valid(chat)
    text_field = "messages[0].content" if chat else "prompt"

    def with_text(raw_json_string: str) -> bytes:
        # a JSON string literal written by hand, so escapes such as \udfff reach the server as sent
        if chat:
            return f'{{"messages": [{{"role": "user", "content": "{raw_json_string}"}}], "max_tokens": 2}}'.encode()
        return f'{{"prompt": "{raw_json_string}", "max_tokens": 2}}'.encode()

    def with_field(name: str, raw_value: str) -> bytes:
        others = {key: value for key, value in valid.items() if key != name}
        return _body(others)[:-1] + f', "{name}": {raw_value}}}'.encode()

    return [
        Hostile("1,000 levels of nesting in 2 KB", with_field("x", "[" * 1000 + "]" * 1000), 400, "32 levels"),
        Hostile("100,000 levels of nesting", b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "32 levels"),
        Hostile("nesting hidden in a string is not nesting", with_text("[[[[" * 100), 200, ""),
        Hostile("lone low surrogate", with_text("\\udfff"), 400, "lone surrogate", text_field),
        Hostile("lone high surrogate", with_text("ab\\ud83d"), 400, "lone surrogate", text_field),
        Hostile("an escaped surrogate pair is fine", with_text("\\ud83d\\ude00"), 200, ""),
        Hostile("lone surrogate in stop", with_field("stop", '["\\udfff"]'), 400, "lone surrogate", "stop[0]"),
        Hostile("lone surrogate in a key", with_field("\\udfffx", "1"), 400, "lone surrogate"),
        Hostile("NaN", with_field("temperature", "NaN"), 400, "NaN is not valid JSON"),
        Hostile("Infinity", with_field("temperature", "Infinity"), 400, "Infinity is not valid JSON"),
        Hostile("-Infinity", with_field("top_p", "-Infinity"), 400, "-Infinity is not valid JSON"),
        Hostile("1e999 overflows", with_field("temperature", "1e999"), 400, "finite", "temperature"),
        Hostile("5,000-digit integer", with_field("max_tokens", "9" * 5000), 400, "100 digits", "max_tokens"),
        Hostile("a 101-digit integer in an unknown member", with_field("extra", "9" * 101), 400, "100 digits", "extra"),
        Hostile(
            "a 22-digit integer in an unknown member is ignored",
            with_field("x", "1" * 22),
            200,
            "",
            # the Azure routes refuse unknown members unless told what to do with them
            headers={**JSON, "extra-parameters": "drop"},
        ),
        Hostile("2**70 max_tokens", with_field("max_tokens", str(2**70)), 400, "max_tokens", "max_tokens"),
        Hostile("2**70 seed: any integer is a seed", with_field("seed", str(2**70)), 200, ""),
        Hostile("a 100-digit seed", with_field("seed", "-" + "7" * 100), 200, ""),
        Hostile("duplicate keys", _body(valid)[:-1] + b', "max_tokens": 3}', 400, "'max_tokens' appears more than"),
        Hostile("10,000 stop strings", with_field("stop", _body(["x"] * 10_000).decode()), 400, "16", "stop"),
        Hostile("a 100 KB stop string", with_field("stop", _body("s" * 100_000).decode()), 400, "at most 1000", "stop"),
        Hostile("a 1 MB stop string", with_field("stop", _body("s" * 1_048_576).decode()), 413, "1048576 bytes"),
        Hostile("2 MB body", with_field("pad", _body("p" * 2_000_000).decode()), 413, "1048576 bytes"),
        Hostile("not UTF-8", with_text("caf\\u00e9").replace(b"\\u00e9", b"\xe9"), 400, "not UTF-8"),
        Hostile("UTF-8 byte order mark", b"\xef\xbb\xbf" + _body(valid), 200, ""),
        Hostile("empty body", b"", 400, "empty"),
        Hostile("null", b"null", 400, "JSON object"),
        Hostile("array", b"[1, 2]", 400, "JSON object"),
        Hostile("number", b"12", 400, "JSON object"),
        Hostile("truncated", _body(valid)[:-3], 400, "not valid JSON"),
        Hostile("trailing comma", _body(valid)[:-1] + b",}", 400, "not valid JSON"),
        Hostile(
            "text/plain", _body(valid), 400, "Content-Type: application/json", headers={"Content-Type": "text/plain"}
        ),
        Hostile(
            "form encoded",
            b"prompt=hello",
            400,
            "application/x-www-form-urlencoded",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        Hostile("no content type is read as JSON", _body(valid), 200, "", headers={}),
        Hostile(
            "application/json; charset=utf-8",
            _body(valid),
            200,
            "",
            headers={"Content-Type": "application/json; charset=utf-8"},
        ),
        Hostile("wrong types", _body({**valid, "max_tokens": "lots"}), 400, "max_tokens", "max_tokens"),
        Hostile(
            "10,000 messages" if chat else "prompt as an object",
            _body({"messages": [{"role": "user", "content": "x"}] * 10_000} if chat else {"prompt": {"a": 1}}),
            400,
            "messages" if chat else "prompt",
            "messages" if chat else "prompt",
        ),
    ]


async def _client(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    async for client in simulated_client(KEY, **settings):
        yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client():
        yield c


def _assert_envelope(response: httpx.Response, case: Hostile) -> None:
    assert response.status_code == case.status, f"{case.name}: {response.status_code} {response.text[:300]}"
    if case.status >= 400:
        error = response.json()["error"]
        assert case.says in error["message"], f"{case.name}: {error['message']!r} does not say {case.says!r}"
        if case.param is not None:
            assert error["param"] == case.param, f"{case.name}: param {error['param']!r}"
        assert set(error) >= {"code", "message", "param", "type"}


@pytest.mark.parametrize("route", POST_ROUTES)
async def test_every_hostile_body_gets_its_4xx_and_the_client_is_still_served(
    client: httpx.AsyncClient, route: str
) -> None:
    chat = "chat" in route
    for case in _hostile_set(chat):
        response = await client.post(route, content=case.body, headers={**AUTH, **case.headers})
        _assert_envelope(response, case)
        follow_up = await client.post(route, json=_valid(chat), headers=AUTH)
        assert follow_up.status_code == 200, f"after {case.name}: {follow_up.text[:200]}"


@pytest.mark.parametrize("route", GET_ROUTES)
async def test_get_routes_ignore_hostile_bodies(client: httpx.AsyncClient, route: str) -> None:
    for case in _hostile_set(chat=False):
        response = await client.request("GET", route, content=case.body, headers={**AUTH, **case.headers})
        assert response.status_code == 200, f"{case.name}: {response.status_code}"


@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"])
async def test_other_methods_on_post_routes_get_405_naming_the_method(
    client: httpx.AsyncClient, route: str, method: str
) -> None:
    response = await client.request(method, route, headers=AUTH)
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    if method != "HEAD":
        assert response.json()["error"]["message"] == f"{method} is not allowed on {route}"


async def test_a_lone_surrogate_in_a_chat_message_is_refused_naming_the_message(client: httpx.AsyncClient) -> None:
    """The issue's case: this used to be a 500 UnicodeEncodeError on both chat routes."""
    body = b'{"messages": [{"role": "system", "content": "ok"}, {"role": "user", "content": "x\\udfff"}]}'
    for route in CHAT_ROUTES:
        response = await client.post(route, content=body, headers={**AUTH, **JSON})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "messages[1].content"


async def test_cost_bounds_come_from_the_settings() -> None:
    async for client in _client(max_json_depth=4, max_stop_chars=3):
        deep = await client.post("/v1/completions", json={"prompt": "x", "stop": [[[["a"]]]]}, headers=AUTH)
        assert deep.status_code == 400 and "4 levels" in deep.json()["error"]["message"]
        long_stop = await client.post("/v1/completions", json={"prompt": "x", "stop": "abcd"}, headers=AUTH)
        assert long_stop.status_code == 400 and "at most 3" in long_stop.json()["error"]["message"]
        short_stop = await client.post("/v1/completions", json={"prompt": "x", "stop": "abc"}, headers=AUTH)
        assert short_stop.status_code == 200


class _FaultyBackend:
    """A backend with a bug: generate raises, everything else is the simulated backend's."""

    def __init__(self) -> None:
        self._inner = create_simulated_backend()
        self.info = self._inner.info
        self.start, self.close = self._inner.start, self._inner.close
        self.tokenize, self.render_chat = self._inner.tokenize, self._inner.render_chat
        self.stream, self.abort = self._inner.stream, self._inner.abort

    async def generate(self, prompt: str, options: SamplingOptions, request_id: str) -> Generation:
        raise ZeroDivisionError("a bug in the backend")


def test_a_genuine_fault_answers_the_envelope_on_a_connection_that_stays_usable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="llamacert.server")
    with (
        serve_in_thread(ServerSettings(backend="simulated"), backend=_FaultyBackend()) as server,  # type: ignore[arg-type]
        httpx.Client(base_url=server.url, headers=server.auth, timeout=10) as http,
    ):
        for _ in range(20):
            failed = http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2})
            assert failed.status_code == 500
            error = failed.json()["error"]
            assert error["code"] == "server_error" and "ZeroDivisionError" in error["message"]
            assert failed.headers[REQUEST_ID_HEADER] in error["message"]
            assert failed.headers.get("connection") != "close"
            streamed = http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2, "stream": True})
            assert streamed.status_code == 200 and streamed.text.endswith(DONE_EVENT)
        # the same pooled connection served all 40 requests
        assert server.open_connections() == 1
    faults = [r for r in caplog.records if r.name == "llamacert.server" and r.levelno >= logging.WARNING]
    assert len(faults) == 20
    assert all(r.exc_info is None and "ZeroDivisionError" in r.getMessage() for r in faults)
    assert failed.headers[REQUEST_ID_HEADER] in faults[-1].getMessage()


def test_the_hostile_set_over_real_http() -> None:
    with (
        serve_in_thread(ServerSettings(backend="simulated")) as server,
        httpx.Client(base_url=server.url, headers=server.auth, timeout=30) as http,
    ):
        for route in ["/v1/completions", "/chat/completions"]:
            for case in _hostile_set("chat" in route):
                response = http.post(route, content=case.body, headers=case.headers)
                _assert_envelope(response, case)
        assert server.open_connections() == 1
