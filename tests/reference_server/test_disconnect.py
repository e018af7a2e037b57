"""A non-streamed request whose client leaves lets go of its place at once (reference_server/disconnect.py).

The simulated backend with one slot and a delay per token makes a generation last a known long time,
so a slot that comes back within seconds proves the generation was cancelled, not finished.
"""

from __future__ import annotations

import json
import socket
import time

import httpx

from launch import ReferenceServer
from tests.conftest import ServerFactory

# one slot, 20 ms a token: 2,000 tokens would hold the slot for 40 s
_SLOW_ONE_SLOT = ["--backend", "simulated", "--simulated-slots", "1", "--simulated-token-s", "0.02"]
_LONG = {"prompt": "one two three", "max_tokens": 2000, "ignore_eos": True}
_SHORT = {"prompt": "one two three", "max_tokens": 4}


def _send_and_keep_open(server: ReferenceServer, body: dict[str, object]) -> socket.socket:
    """Send a non-streamed completion request on a raw connection and return it unread (the caller closes it)."""
    payload = json.dumps(body).encode()
    host, port = server.url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=10)
    connection.sendall(
        (
            f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {server.api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        + payload
    )
    return connection


def _gauge(server: ReferenceServer, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def _wait_for(server: ReferenceServer, name: str, value: float, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (seen := _gauge(server, name)) != value:
        assert time.monotonic() < deadline, f"{name} is {seen}, not {value}, {seconds} s on"
        time.sleep(0.05)


def _short_completion(server: ReferenceServer) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    return httpx.post(f"{server.url}/v1/completions", json=_SHORT, headers=headers, timeout=30)


def test_a_running_request_whose_client_leaves_frees_its_slot(start_server: ServerFactory) -> None:
    server = start_server(*_SLOW_ONE_SLOT, "--max-waiting", "0")
    connection = _send_and_keep_open(server, _LONG)
    _wait_for(server, "llamacert_requests_running", 1, 10)
    assert _short_completion(server).status_code == 503  # the one slot is taken
    connection.close()
    _wait_for(server, "llamacert_requests_running", 0, 5)
    response = _short_completion(server)
    assert response.status_code == 200
    assert response.json()["usage"]["completion_tokens"] == 4


def test_a_waiting_request_whose_client_leaves_gives_up_its_place(start_server: ServerFactory) -> None:
    server = start_server(*_SLOW_ONE_SLOT, "--max-waiting", "1")
    running = _send_and_keep_open(server, _LONG)
    _wait_for(server, "llamacert_requests_running", 1, 10)
    waiting = _send_and_keep_open(server, _SHORT)
    _wait_for(server, "llamacert_requests_waiting", 1, 10)
    waiting.close()
    _wait_for(server, "llamacert_requests_waiting", 0, 5)
    assert _gauge(server, "llamacert_requests_running") == 1  # the other request runs on
    running.close()
    _wait_for(server, "llamacert_requests_running", 0, 5)
