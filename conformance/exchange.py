"""A recorded exchange with an endpoint (request, status, headers, body or SSE events, timings),
and the client that records them. Checks only ever look at exchanges: no I/O inside a check.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from spec.models import AZURE_PASS_THROUGH, AZURE_ROUTE_KINDS, AZURE_VERSIONED_ROUTES, azure_extra_members
from spec.sse import DONE, SseDecoder, SseFraming, SseMessage, encode_event

__all__ = ["EndpointClient", "Exchange", "RecordedRequest", "SseEvent"]


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: Any = None
    raw_body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}


@dataclass
class SseEvent:
    """One `data:` event of a stream: its raw data, the parsed JSON (None if not JSON), arrival time."""

    data: str
    json: Any
    at: float
    json_error: str | None = None


@dataclass
class Exchange:
    """What was sent and what came back."""

    request: RecordedRequest
    status: int | None
    headers: dict[str, str]
    body_text: str
    events: list[SseEvent] | None = None
    started_at: float = 0.0
    first_byte_at: float | None = None
    finished_at: float = 0.0
    transport_error: str | None = None
    framing: SseFraming | None = None

    @property
    def stray_lines(self) -> list[str]:
        """Lines of an SSE body that are no SSE field at all."""
        return self.framing.stray_lines if self.framing is not None else []

    @functools.cached_property
    def json(self) -> Any:
        # every check reads the body: parse it once
        try:
            return json.loads(self.body_text)
        except ValueError:
            return None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def is_stream(self) -> bool:
        return self.events is not None

    def chunks(self) -> list[dict[str, Any]]:
        """The JSON chunk events of a stream (not [DONE], not in-band errors)."""
        return [e.json for e in self.events or [] if isinstance(e.json, dict) and "error" not in e.json]

    def excerpt(self, limit: int = 600) -> str:
        text = self.body_text if self.events is None else "".join(encode_event(e.data) for e in self.events)
        if self.transport_error:
            text = f"[transport error: {self.transport_error}] " + text
        return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"

    def describe_request(self) -> dict[str, Any]:
        body: Any = self.request.body
        if body is None and self.request.raw_body is not None:
            body = self.request.raw_body[:300].decode("utf-8", errors="replace")
        return {"method": self.request.method, "url": self.request.path, "body": body}


def _event(message: SseMessage, at: float) -> SseEvent:
    if message.data == DONE:
        return SseEvent(message.data, None, at)
    try:
        return SseEvent(message.data, json.loads(message.data), at)
    except ValueError as exc:
        return SseEvent(message.data, None, at, json_error=str(exc))


class EndpointClient:
    """Sends requests to one endpoint and records them as exchanges."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 120.0,
        auth: str = "bearer",
        api_version: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.auth = auth
        self.api_version = api_version
        """Sent as `?api-version=` on the Azure routes, as azure-ai-inference does (D27); None sends none."""
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def auth_headers(self) -> dict[str, str]:
        if not self.api_key:
            return {}
        if self.auth == "api-key":
            return {"api-key": self.api_key}
        return {"Authorization": f"Bearer {self.api_key}"}

    @staticmethod
    def _azure_headers(method: str, path: str, body: Any) -> dict[str, str]:
        """`extra-parameters: pass-through` on an Azure-route body carrying Llama extras, as the SDK sends it (D26)."""
        kind = AZURE_ROUTE_KINDS.get(path.partition("?")[0])
        if method != "POST" or kind is None or not isinstance(body, dict) or not azure_extra_members(body, kind):
            return {}
        return dict(AZURE_PASS_THROUGH)

    def _with_api_version(self, path: str) -> str:
        route, _, query = path.partition("?")
        if self.api_version is None or route not in AZURE_VERSIONED_ROUTES or "api-version=" in query:
            return path
        return f"{path}{'&' if query else '?'}api-version={self.api_version}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw_body: bytes | None = None,
        headers: dict[str, str] | None = None,
        with_auth: bool = True,
    ) -> Exchange:
        sent_headers = {
            **(self.auth_headers() if with_auth else {}),
            **self._azure_headers(method, path, body),
            **(headers or {}),
        }
        content: bytes | None = raw_body
        if body is not None and raw_body is None:
            content = json.dumps(body).encode()
        if content is not None:
            sent_headers.setdefault("Content-Type", "application/json")
        path = self._with_api_version(path)
        recorded = RecordedRequest(method, path, body, raw_body, sent_headers)
        started = time.monotonic()
        events: list[SseEvent] | None = None
        first_byte: float | None = None
        chunks: list[str] = []
        decoder = SseDecoder()
        try:
            with self.http.stream(method, path, content=content, headers=sent_headers) as response:
                is_sse = response.headers.get("content-type", "").startswith("text/event-stream")
                if is_sse:
                    events = []
                for piece in response.iter_text():
                    if first_byte is None:
                        first_byte = time.monotonic()
                    chunks.append(piece)
                    if events is not None:
                        now = time.monotonic()
                        events.extend(_event(message, now) for message in decoder.feed(piece))
                if events is not None:
                    now = time.monotonic()
                    events.extend(_event(message, now) for message in decoder.finish())
                status, response_headers = response.status_code, {k.lower(): v for k, v in response.headers.items()}
        except httpx.HTTPError as exc:
            return Exchange(
                recorded,
                None,
                {},
                "".join(chunks),
                events,
                started,
                first_byte,
                time.monotonic(),
                transport_error=f"{type(exc).__name__}: {exc}",
            )
        body_text = "".join(chunks)
        return Exchange(
            recorded,
            status,
            response_headers,
            body_text,
            events,
            started,
            first_byte,
            time.monotonic(),
            framing=decoder.framing if events is not None else None,
        )

    def post(self, path: str, body: Any, **kwargs: Any) -> Exchange:
        return self.request("POST", path, body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Exchange:
        return self.request("GET", path, **kwargs)
