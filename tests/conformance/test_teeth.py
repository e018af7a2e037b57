"""The suite has teeth: a catalogue of deliberately broken endpoints, one per rule, each caught.

Each broken endpoint is the reference server (simulated backend) behind an ASGI middleware that
introduces one defect. `llamacert conform` runs against it over real HTTP in a subprocess, as a
user would run it, and must fail on the defect's rule; against the unbroken server it must pass.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from launch import project_environment
from reference_server.server import build_app
from reference_server.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
KEY = "teeth-key"
Message = dict[str, Any]
Scope = dict[str, Any]


@dataclass(frozen=True)
class Defect:
    """One way to break an endpoint: which rule must catch it, which tests exercise it."""

    name: str
    rule: str
    tests: str  # pytest -k expression selecting the tests that exercise the rule
    mutate_json: Callable[[dict[str, Any], dict[str, Any]], None] | None = None  # (request, response body)
    mutate_events: Callable[[dict[str, Any], list[str]], list[str]] | None = None  # SSE data strings
    mutate_request: Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]] | None = None
    mutate_status: Callable[[int], int] | None = None
    plain_error_bodies: bool = False
    kind: str = "completion"


def _chunk_events(events: list[str], change: Callable[[int, dict[str, Any]], None]) -> list[str]:
    out = []
    for position, data in enumerate(events):
        if data == "[DONE]":
            out.append(data)
            continue
        chunk = json.loads(data)
        change(position, chunk)
        out.append(json.dumps(chunk))
    return out


def _every_choice(body: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> None:
    for choice in body.get("choices") or []:
        change(choice)


def _append_stop(request: dict[str, Any], body: dict[str, Any]) -> None:
    stop = request.get("stop")
    first = stop if isinstance(stop, str) else (stop or [None])[0]
    if first:
        _every_choice(body, lambda c: c.update(text=c["text"] + first))


def _usage_off_by_one(request: dict[str, Any], body: dict[str, Any]) -> None:
    if "usage" in body:
        body["usage"]["total_tokens"] += 1


def _drop_last_logprob(request: dict[str, Any], body: dict[str, Any]) -> None:
    def change(choice: dict[str, Any]) -> None:
        if choice.get("logprobs"):
            choice["logprobs"]["token_logprobs"] = choice["logprobs"]["token_logprobs"][:-1]

    _every_choice(body, change)


def _garble_first_token(request: dict[str, Any], body: dict[str, Any]) -> None:
    def change(choice: dict[str, Any]) -> None:
        if choice.get("logprobs") and choice["logprobs"]["tokens"]:
            choice["logprobs"]["tokens"][0] += "#"

    _every_choice(body, change)


def _count_one_more_token(request: dict[str, Any], body: dict[str, Any]) -> None:
    if "usage" in body:
        body["usage"]["completion_tokens"] += 1
        body["usage"]["total_tokens"] += 1


def _repair_trailing_comma(raw: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return raw.replace(b",\n}", b"\n}").replace(b",}", b"}"), headers


def _accept_any_key(raw: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return raw, {**headers, "authorization": f"Bearer {KEY}"}


def _default_max_tokens_8(raw: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    try:
        body = json.loads(raw)
    except ValueError:
        return raw, headers
    if isinstance(body, dict) and "max_tokens" not in body:
        body["max_tokens"] = 8
    return json.dumps(body).encode(), headers


def _offsets_include_prompt(request: dict[str, Any], body: dict[str, Any]) -> None:
    def change(choice: dict[str, Any]) -> None:
        if choice.get("logprobs"):
            choice["logprobs"]["text_offsets"] = [o + 7 for o in choice["logprobs"]["text_offsets"]]

    _every_choice(body, change)


def _nondeterministic(request: dict[str, Any], body: dict[str, Any]) -> None:
    _every_choice(body, lambda c: c.update(text=c["text"] + str(time.monotonic_ns() % 7)))


CATALOGUE = [
    Defect("usage-arithmetic", "usage.total_is_sum", "test_basic_completion", mutate_json=_usage_off_by_one),
    Defect("usage-vs-logprobs", "usage.matches_logprobs", "test_logprobs_object", mutate_json=_count_one_more_token),
    Defect("no-done", "stream.done", "test_stream_basic", mutate_events=lambda r, ev: [e for e in ev if e != "[DONE]"]),
    Defect("double-done", "stream.done", "test_stream_basic", mutate_events=lambda r, ev: [*ev, "[DONE]"]),
    Defect(
        "finish-on-every-chunk",
        "stream.finish_reason",
        "test_stream_basic",
        mutate_events=lambda r, ev: _chunk_events(
            ev, lambda i, c: [ch.update(finish_reason="stop") for ch in c["choices"]]
        ),
    ),
    Defect(
        "changing-stream-id",
        "stream.same_id",
        "test_stream_basic",
        mutate_events=lambda r, ev: _chunk_events(ev, lambda i, c: c.update(id=f"{c['id']}-{i}")),
    ),
    Defect(
        "chunk-not-json", "stream.events_json", "test_stream_basic", mutate_events=lambda r, ev: [ev[0][:-1], *ev[1:]]
    ),
    Defect(
        "chat-delta-without-role",
        "stream.chat_role_first",
        "test_stream_basic",
        kind="chat",
        mutate_events=lambda r, ev: _chunk_events(
            ev, lambda i, c: [ch["delta"].pop("role", None) for ch in c["choices"]]
        ),
    ),
    Defect("stop-sequence-left-in-text", "stop.excluded", "test_stop_cuts_the_greedy_text", mutate_json=_append_stop),
    Defect("logprobs-unequal-lengths", "logprobs.lengths", "test_logprobs_object", mutate_json=_drop_last_logprob),
    Defect(
        "tokens-do-not-join", "logprobs.tokens_concatenate", "test_logprobs_object", mutate_json=_garble_first_token
    ),
    Defect(
        "offsets-count-the-prompt", "logprobs.text_offsets", "test_logprobs_object", mutate_json=_offsets_include_prompt
    ),
    Defect(
        "wrong-object",
        "envelope.object",
        "test_basic_completion",
        mutate_json=lambda r, b: b.update(object="completion"),
    ),
    Defect(
        "created-in-milliseconds",
        "envelope.created",
        "test_basic_completion",
        mutate_json=lambda r, b: b.update(created=b["created"] * 1000),
    ),
    Defect(
        "500-on-bad-input",
        "errors.invalid_parameter",
        "test_invalid_parameter",
        mutate_status=lambda status: 500 if status == 400 else status,
    ),
    Defect("key-not-checked", "errors.auth", "test_missing_and_wrong_key", mutate_request=_accept_any_key),
    Defect("lenient-json", "errors.malformed_json", "test_docs_example", mutate_request=_repair_trailing_comma),
    Defect("error-not-enveloped", "errors.envelope", "test_unknown_route", plain_error_bodies=True),
    Defect(
        "default-max-tokens-8",
        "defaults.max_tokens",
        "test_max_tokens_defaults_to_16",
        mutate_request=_default_max_tokens_8,
    ),
    Defect(
        "greedy-not-deterministic", "relations.deterministic", "test_temperature_zero", mutate_json=_nondeterministic
    ),
]


class BreakingMiddleware:
    """Wraps the reference ASGI app and applies one defect to requests and responses."""

    def __init__(self, app: Any, defect: Defect | None) -> None:
        self.app = app
        self.defect = defect

    async def __call__(self, scope: Scope, receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        defect = self.defect
        if scope["type"] != "http" or defect is None:
            await self.app(scope, receive, send)
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if defect.mutate_request:
            raw, headers = defect.mutate_request(raw, headers)
        scope = {
            **scope,
            "headers": [(k.encode(), v.encode()) for k, v in headers.items() if k != "content-length"]
            + [(b"content-length", str(len(raw)).encode())],
        }
        try:
            request_json = json.loads(raw) if raw else {}
        except ValueError:
            request_json = {}
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        start: Message = {}
        body = b""

        async def capture(message: Message) -> None:
            nonlocal start, body
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                body += message.get("body", b"")

        await self.app(scope, replay, capture)
        status = start["status"]
        response_headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        content_type = dict(response_headers).get(b"content-type", b"").decode()
        if content_type.startswith("text/event-stream") and defect.mutate_events:
            events = [block.removeprefix("data: ") for block in body.decode().split("\n\n") if block]
            body = "".join(f"data: {e}\n\n" for e in defect.mutate_events(request_json, events)).encode()
        elif content_type.startswith("application/json") and defect.mutate_json and status == 200:
            document = json.loads(body)
            defect.mutate_json(request_json if isinstance(request_json, dict) else {}, document)
            body = json.dumps(document).encode()
        if defect.plain_error_bodies and status >= 400:
            body = b"something went wrong"
            response_headers = [(k, v) for k, v in response_headers if k.lower() != b"content-type"]
            response_headers.append((b"content-type", b"text/plain"))
        if defect.mutate_status:
            status = defect.mutate_status(status)
        response_headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})


class BackgroundServer:
    """uvicorn in a thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        url = f"http://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                httpx.get(f"{url}/health", timeout=1)
                return url
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the test server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _run_suite(url: str, tests: str, kind: str, results: Path) -> subprocess.CompletedProcess[str]:
    """`llamacert conform` as a user runs it: its exit status and results file are what is judged."""
    command = [
        sys.executable,
        "-m",
        "llamacert.cli",
        "conform",
        "--endpoint",
        url,
        "--api-key",
        KEY,
        "--routes",
        "llama",
        "--model-kind",
        kind,
        "-k",
        tests,
        "--results-json",
        str(results),
        "-q",
        "-p",
        "no:randomly",
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=ROOT, env=project_environment(), check=False
    )


@pytest.fixture(scope="module")
def reference_app() -> Any:
    return build_app(ServerSettings(backend="simulated"), api_key=KEY)


def _serve(app: Any, defect: Defect | None) -> BackgroundServer:
    return BackgroundServer(BreakingMiddleware(app, defect))


@pytest.fixture(scope="module")
def unbroken_url(reference_app: Any) -> Iterator[str]:
    with _serve(reference_app, None) as url:
        yield url


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["completion", "chat"])
def test_the_unbroken_reference_passes_the_whole_suite(unbroken_url: str, kind: str, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    run = _run_suite(unbroken_url, "not nothing", kind, results)
    assert run.returncode == 0, run.stdout[-3000:]
    outcomes = {r["rule_id"]: r["outcome"] for r in json.loads(results.read_text())["rules"]}
    assert "fail" not in outcomes.values()


@pytest.mark.slow
@pytest.mark.parametrize("defect", CATALOGUE, ids=[d.name for d in CATALOGUE])
def test_the_suite_catches_each_defect(reference_app: Any, defect: Defect, tmp_path: Path) -> None:
    with _serve(reference_app, defect) as url:
        results = tmp_path / "results.json"
        run = _run_suite(url, defect.tests, defect.kind, results)
    assert run.returncode != 0, f"the suite passed an endpoint with defect {defect.name}:\n{run.stdout[-2000:]}"
    rules = {r["rule_id"]: r for r in json.loads(results.read_text())["rules"]}
    caught = rules[defect.rule]
    assert caught["outcome"] == "fail", f"{defect.rule} did not fail; failed rules: " + str(
        [r for r, v in rules.items() if v["outcome"] == "fail"]
    )
    assert caught["evidence"] and caught["evidence"][0]["request"] is not None


def test_every_rule_group_has_a_defect() -> None:
    from conformance.rules import RULES

    caught_groups = {RULES[d.rule].group for d in CATALOGUE}
    assert {"usage", "stream", "stop", "logprobs", "envelope", "errors", "defaults", "relations"} <= caught_groups
