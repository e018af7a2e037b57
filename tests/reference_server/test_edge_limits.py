"""Limits at the edge over real sockets: header size and count, slow and idle clients, the connection cap,
and admission before the 200 (a bounded wait for a generation slot)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import httpx
import pytest

from reference_server.backends.base import BackendInfo
from reference_server.backends.simulated import create_simulated_backend
from reference_server.server import build_app
from reference_server.settings import ServerSettings
from spec.sse import DONE_EVENT
from tests.reference_server.threaded_server import KEY, ThreadedServer, serve_in_thread

pytestmark = pytest.mark.slow
FAST = {"header_timeout_s": 1.0, "body_timeout_s": 1.0, "keep_alive_s": 1.0}
BODY = json.dumps({"prompt": "hello", "max_tokens": 2}).encode()


def _request(path: str = "/v1/completions", body: bytes = BODY, extra_headers: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra_headers}\r\n"
    ).encode() + body


def _connect(server: ThreadedServer) -> socket.socket:
    connection = socket.create_connection((server.host, server.port), timeout=10)
    return connection


def _read_all(connection: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def _status_and_error(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"] if body else {}


def test_oversize_headers_get_431_naming_the_limit() -> None:
    with (
        serve_in_thread(ServerSettings(backend="simulated", **FAST)) as server,
        httpx.Client(base_url=server.url, headers=server.auth, timeout=10) as http,
    ):
        big = http.post("/v1/completions", content=BODY, headers={"X-Big": "v" * 1_000_000})
        assert big.status_code == 431
        assert "16384 bytes" in big.json()["error"]["message"]
        many = http.post("/v1/completions", content=BODY, headers={f"X-H{i}": "1" for i in range(150)})
        assert many.status_code == 431 and "100 headers" in many.json()["error"]["message"]
        fine = http.post("/v1/completions", content=BODY, headers={"X-Fine": "v" * 8000})
        assert fine.status_code == 200


def test_a_25_mb_header_is_cut_before_it_is_read() -> None:
    with serve_in_thread(ServerSettings(backend="simulated", **FAST)) as server:
        connection = _connect(server)
        connection.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nX-Big: ")
        sent = 0
        with pytest.raises(OSError):  # the server answers 431 and closes while we are still sending
            while sent < 25_000_000:
                connection.sendall(b"v" * 65536)
                sent += 65536
        assert sent < 8_000_000  # what loopback socket buffers hold: the server read only the first part
        connection.close()


def test_slow_and_idle_clients_are_cut_within_the_deadlines() -> None:
    with serve_in_thread(ServerSettings(backend="simulated", **FAST)) as server:
        idle = _connect(server)
        slow_headers = _connect(server)
        slow_body = _connect(server)
        started = time.monotonic()
        slow_headers.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\n")
        slow_body.sendall(_request()[:-5])
        assert _read_all(idle) == b""  # nothing was asked: nothing is answered, the socket is closed
        status, error = _status_and_error(_read_all(slow_headers))
        assert status == 408 and "1 s" in error["message"]
        status, error = _status_and_error(_read_all(slow_body))
        assert status == 408 and error["code"] == "request_timeout"
        assert time.monotonic() - started < 3.5
        for connection in (idle, slow_headers, slow_body):
            connection.close()


def test_a_kept_alive_connection_is_closed_when_idle() -> None:
    with serve_in_thread(ServerSettings(backend="simulated", **FAST)) as server:
        connection = _connect(server)
        connection.sendall(_request())
        first = connection.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert _read_all(connection) == b""
        assert time.monotonic() - started < 2.5
        connection.close()


def test_connections_beyond_the_cap_get_503_and_are_closed() -> None:
    with serve_in_thread(ServerSettings(backend="simulated", max_connections=5, header_timeout_s=30)) as server:
        holders = [_connect(server) for _ in range(5)]
        time.sleep(0.2)
        extra = _connect(server)
        extra.sendall(_request())
        status, error = _status_and_error(_read_all(extra))
        assert status == 503 and "5 connections" in error["message"]
        for holder in holders:
            holder.close()
        time.sleep(0.2)
        with httpx.Client(base_url=server.url, headers=server.auth, timeout=10) as http:
            assert http.post("/v1/completions", content=BODY).status_code == 200


def test_a_malformed_request_gets_the_json_envelope() -> None:
    with serve_in_thread(ServerSettings(backend="simulated", **FAST)) as server:
        connection = _connect(server)
        connection.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: nope\r\n\r\n")
        status, error = _status_and_error(_read_all(connection))
        assert status == 400 and "malformed HTTP request" in error["message"]
        connection.close()


# --- admission before the 200 -------------------------------------------------------------------


def _one_slot_backend(token_delay_s: float) -> Any:
    backend = create_simulated_backend(first_token_delay_s=token_delay_s, token_delay_s=token_delay_s)
    info = backend.info
    backend.info = BackendInfo(
        info.model_name, info.model_type, info.model_provider_name, info.context_length, info.backend, concurrency=1
    )
    return backend


async def test_streams_beyond_capacity_get_503_before_any_200() -> None:
    settings = ServerSettings(backend="simulated", max_waiting=1, slot_wait_s=0.5)
    app = build_app(settings, backend=_one_slot_backend(0.05), api_key=KEY)
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {"prompt": "hello", "max_tokens": 30, "stream": True}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):

        async def post() -> httpx.Response:
            return await client.post("/v1/completions", json=body, headers=auth)

        responses = await asyncio.gather(*(post() for _ in range(4)))
        statuses = sorted(r.status_code for r in responses)
        # one runs, one waits 0.5 s and is refused, two are refused at once (the wait is full)
        assert statuses == [200, 503, 503, 503]
        for refused in (r for r in responses if r.status_code == 503):
            assert refused.headers["retry-after"].isdigit()
            assert refused.json()["error"]["code"] == "overloaded"
        ok = next(r for r in responses if r.status_code == 200)
        assert ok.text.endswith(DONE_EVENT) and "overloaded" not in ok.text
        health = await client.get("/health")
        assert health.json()["in_flight"] == 0


async def test_a_waiting_request_gets_the_slot_when_it_frees_in_time() -> None:
    settings = ServerSettings(backend="simulated", max_waiting=4, slot_wait_s=10)
    app = build_app(settings, backend=_one_slot_backend(0.01), api_key=KEY)
    auth = {"Authorization": f"Bearer {KEY}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        bodies = [{"prompt": "hello", "max_tokens": 5, "stream": i % 2 == 0} for i in range(5)]
        responses = await asyncio.gather(*(client.post("/v1/completions", json=b, headers=auth) for b in bodies))
        assert [r.status_code for r in responses] == [200] * 5
