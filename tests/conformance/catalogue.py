"""Endpoints for proving the suite: the reference app (simulated backend) behind an ASGI middleware that
either breaks one thing (a `Defect`: some rule must fail) or takes one liberty the docs, HTTP, JSON or
SSE allow (a `Variant`: every rule must pass). Both run the suite in process over httpx.ASGITransport.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from conformance.inprocess import InProcessApp
from conformance.plugin import InProcessEndpoint
from launch import free_loopback_port
from reference_server.server import build_app
from reference_server.settings import ServerSettings
from spec.sse import decode_all, encode_event

__all__ = ["KEY", "BackgroundServer", "Defect", "Liberty", "SuiteRun", "Variant", "run_suite", "serve"]

ROOT = Path(__file__).resolve().parents[2]
KEY = "catalogue-key"
Message = dict[str, Any]
Json = dict[str, Any]
# (path, request body, response body) -> None, changing the response body in place
JsonChange = Callable[[str, Json, Json], None]
# (request body, SSE data strings) -> new SSE data strings
EventsChange = Callable[[Json, list[str]], list[str]]
# (path, raw body, headers) -> (raw body, headers) the app sees
RequestChange = Callable[[str, bytes, dict[str, str]], tuple[bytes, dict[str, str]]]
# (path, request body, status, response body bytes, response headers) -> (status, body, headers) the client sees
ResponseChange = Callable[[str, Json, int, bytes, dict[str, str]], tuple[int, bytes, dict[str, str]]]


@dataclass(frozen=True)
class Liberty:
    """One change to what an endpoint does (a defect or an honest variant)."""

    name: str
    tests: str = "not nothing"  # pytest -k expression: the tests that exercise it
    kind: str = "completion"
    profile: str | None = None
    strictness: str = "docs"
    routes: str = "llama"
    quick: bool = True  # False: the full suite (a test that runs only there, such as the rate-limit burst)
    settings: dict[str, Any] = field(default_factory=dict)
    change_json: JsonChange | None = None  # 200 JSON bodies of the generation routes
    change_events: EventsChange | None = None  # SSE data strings
    change_request: RequestChange | None = None
    change_response: ResponseChange | None = None  # every answer, last


@dataclass(frozen=True)
class Defect(Liberty):
    """A realistic way to be broken: `rule` must fail."""

    rule: str = ""


@dataclass(frozen=True)
class Variant(Liberty):
    """An honest difference the docs, HTTP, JSON or SSE allow: no rule may fail; `relaxation` names why."""

    relaxation: str = ""


class LibertyMiddleware:
    """Wraps the reference ASGI app and applies one liberty to requests and responses."""

    def __init__(self, app: Any, liberty: Liberty) -> None:
        self.app = app
        self.liberty = liberty

    async def __call__(self, scope: Message, receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        liberty = self.liberty
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if liberty.change_request:
            raw, headers = liberty.change_request(path, raw, headers)
        scope = {
            **scope,
            "headers": [(k.encode(), v.encode()) for k, v in headers.items() if k != "content-length"]
            + [(b"content-length", str(len(raw)).encode())],
        }
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {}
        request: Json = parsed if isinstance(parsed, dict) else {}
        generation = path.endswith("completions")
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                # the client never disconnects: a streaming app that listens for it waits until it is done
                await asyncio.Event().wait()
            delivered = True
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
        status: int = start["status"]
        response_headers = {
            k.decode().lower(): v.decode() for k, v in start["headers"] if k.lower() != b"content-length"
        }
        content_type = response_headers.get("content-type", "")
        if content_type.startswith("text/event-stream") and liberty.change_events:
            events = [message.data for message in decode_all(body.decode())]
            body = "".join(encode_event(e) for e in liberty.change_events(request, events)).encode()
        elif content_type.startswith("application/json") and liberty.change_json and status == 200 and generation:
            document = json.loads(body)
            liberty.change_json(path, request, document)
            body = json.dumps(document).encode()
        if liberty.change_response:
            status, body, response_headers = liberty.change_response(path, request, status, body, response_headers)
        encoded = [(k.encode(), v.encode()) for k, v in response_headers.items()]
        encoded.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": encoded})
        await send({"type": "http.response.body", "body": body})


def reference_app(liberty: Liberty) -> LibertyMiddleware:
    """The reference app (simulated backend) of the liberty's profile and settings, behind the liberty."""
    settings = {"backend": "simulated", **({"profile": liberty.profile} if liberty.profile else {}), **liberty.settings}
    return LibertyMiddleware(build_app(ServerSettings(**settings), api_key=KEY), liberty)


class BackgroundServer:
    """uvicorn in a thread on a free loopback port, for the few runs that go through real HTTP."""

    def __init__(self, app: Any) -> None:
        self.port = free_loopback_port()
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


def serve(liberty: Liberty) -> BackgroundServer:
    """The liberty's endpoint over real HTTP (use as `with serve(liberty) as url:`)."""
    return BackgroundServer(reference_app(liberty))


@dataclass(frozen=True)
class SuiteRun:
    exit_status: int
    results: Json

    def outcome(self, rule_id: str) -> str:
        return str(self.rule(rule_id)["outcome"])

    def rule(self, rule_id: str) -> Json:
        entry: Json = next(r for r in self.results["rules"] if r["rule_id"] == rule_id)
        return entry

    def failed(self) -> list[str]:
        return [r["rule_id"] for r in self.results["rules"] if r["outcome"] == "fail"]


def run_suite(liberty: Liberty, workdir: Path, *, quick: bool = True, timeout_s: float = 10.0) -> SuiteRun:
    """The conformance suite, in this process, against the reference app with the liberty applied."""
    app = reference_app(liberty)
    results = workdir / f"results-{secrets.token_hex(4)}.json"
    arguments = [
        str(ROOT / "conformance"),
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-p",
        "no:unraisableexception",  # its forced garbage collection costs a third of a run
        "-o",
        "addopts=",
        "--routes",
        liberty.routes,
        "--model-kind",
        liberty.kind,
        "--strictness",
        liberty.strictness,
        "-k",
        liberty.tests,
        "--results-json",
        str(results),
    ]
    if quick and liberty.quick:
        arguments.append("--quick")
    if liberty.profile:
        arguments += ["--profile", liberty.profile]
    with InProcessApp(app, lifespan_app=app.app, timeout_s=timeout_s) as served:
        exit_status = int(
            pytest.main(arguments, plugins=[InProcessEndpoint("http://reference", KEY, served.transport)])
        )
    return SuiteRun(exit_status, json.loads(results.read_text(encoding="utf-8")))
