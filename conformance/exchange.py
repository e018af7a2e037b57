"""A recorded exchange with an endpoint (request, status, headers, body or SSE events, timings),
the client that records them, and the JSONL form exchanges are saved in. Rules only ever look at
exchanges: no I/O inside a rule, so saved exchanges can be judged again offline.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config

from spec.models import AZURE_PASS_THROUGH, AZURE_ROUTE_KINDS, AZURE_VERSIONED_ROUTES, azure_extra_members
from spec.sse import DONE, SseDecoder, SseFraming, SseMessage, encode_event

__all__ = [
    "EXCHANGES_FILE",
    "EndpointClient",
    "Exchange",
    "ExchangeFileError",
    "ProbeLabel",
    "RecordedRequest",
    "SseEvent",
    "encode_exchange",
    "load_exchanges",
    "save_exchanges",
    "sse_event",
]

EXCHANGES_FILE = "exchanges.jsonl"
"""The name of the saved exchanges in a report directory."""
BUSY_STATUSES = frozenset({429, 503})


# bytes (a raw body that is deliberately not JSON) travel as base64 so any byte survives a saved file
@with_config(ConfigDict(ser_json_bytes="base64", val_json_bytes="base64"))
@dataclass
class RecordedRequest:
    method: str
    path: str
    body: Any = None
    raw_body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        """The parameters the endpoint was asked to honour (on an Azure route, `extra-parameters: drop`
        removes the Llama extras before the model sees them, D40)."""
        if not isinstance(self.body, dict):
            return {}
        kind = AZURE_ROUTE_KINDS.get(self.path.partition("?")[0])
        sent = {name.lower(): value for name, value in self.headers.items()}
        if kind is not None and sent.get("extra-parameters") == "drop":
            extras = set(azure_extra_members(self.body, kind))
            return {name: value for name, value in self.body.items() if name not in extras}
        return self.body


@dataclass
class ProbeLabel:
    """Why the suite sent a request: the probe (kind of experiment), which run of it, the request's role in it.

    Rules over several exchanges read the exchanges of one probe run by role. `valid` says the request is
    valid by the spec, so refusing it fails the rules of the features it uses (or `demands`); `expect` carries what the
    probe knows that the exchange does not (the parameter an invalid request gets wrong, the routes served).
    """

    probe: str
    instance: str
    role: str
    note: str = ""
    valid: bool = False
    expect: dict[str, Any] = field(default_factory=dict)
    demands: list[str] = field(default_factory=list)
    """The documented features whose rules a refusal fails (empty: every feature the request uses)."""
    invalid: bool = False
    """The suite sent it as a request the spec refuses: only the error rules judge its answer."""


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
    label: ProbeLabel | None = None
    sent_at_unix: float | None = None
    """Wall-clock time the request was sent (None for an exchange built from elsewhere, e.g. the docs)."""
    busy_answers: list[Exchange] = field(default_factory=list)
    """Earlier attempts of this request that were answered 429 or 503 and retried (rules judge them too)."""

    @property
    def stray_lines(self) -> list[str]:
        """Lines of an SSE body that are no SSE field at all."""
        return self.framing.stray_lines if self.framing is not None else []

    @functools.cached_property
    def json(self) -> Any:
        # every rule reads the body: parse it once
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

    @property
    def is_chat(self) -> bool:
        return self.request.path.rstrip("/").endswith("chat/completions")

    @property
    def is_valid_request(self) -> bool:
        """The suite sent it as a request the spec allows (refusing it is a failure)."""
        return self.label is not None and self.label.valid

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


_EXCHANGE_ADAPTER = TypeAdapter(Exchange)


class ExchangeFileError(ValueError):
    """A saved-exchanges file is unreadable or a line is not an exchange."""


def encode_exchange(exchange: Exchange) -> bytes:
    """One exchange as a line of a saved-exchanges file (without the newline)."""
    return _EXCHANGE_ADAPTER.dump_json(exchange)


def save_exchanges(path: Path, exchanges: Iterable[Exchange]) -> int:
    """Write exchanges as JSONL (one exchange per line); the number written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("wb") as handle:
        for exchange in exchanges:
            handle.write(encode_exchange(exchange) + b"\n")
            count += 1
    return count


def load_exchanges(path: Path) -> list[Exchange]:
    """The exchanges of a JSONL file written by `save_exchanges`."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as error:
        raise ExchangeFileError(f"{path}: cannot read it ({error.strerror or error})") from None
    exchanges = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            exchanges.append(_EXCHANGE_ADAPTER.validate_json(line))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(line)"
            raise ExchangeFileError(f"{path}:{number}: not a saved exchange ({where}: {first['msg']})") from None
    return exchanges


def sse_event(message: SseMessage, at: float) -> SseEvent:
    """A decoded SSE message as the event an exchange records (its JSON parsed, or why it is not JSON)."""
    if message.data == DONE:
        return SseEvent(message.data, None, at)
    try:
        return SseEvent(message.data, json.loads(message.data), at)
    except ValueError as exc:
        return SseEvent(message.data, None, at, json_error=str(exc))


class StreamStalled(Exception):
    """A response body did not finish within the client's deadline."""


class EndpointClient:
    """Sends requests to one endpoint and records them as exchanges.

    `transport` replaces the network (an in-process app); `busy_retries` resends a request answered
    429 or 503, after its Retry-After (at most `max_wait_s`), so a busy endpoint is not judged on
    features it was too busy to show. A body that takes longer than `deadline_s` is cut off and recorded
    as a transport error: a stalled stream fails its rules instead of hanging the run.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 120.0,
        auth: str = "bearer",
        transport: httpx.BaseTransport | None = None,
        busy_retries: int = 0,
        max_wait_s: float = 10.0,
        deadline_s: float | None = None,
        api_version: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.auth = auth
        self.api_version = api_version
        """Sent as `?api-version=` on the Azure routes, as azure-ai-inference does (D41); None sends none."""
        self.busy_retries = busy_retries
        self.max_wait_s = max_wait_s
        self.deadline_s = deadline_s if deadline_s is not None else 2 * timeout_s
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport)

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
        """`extra-parameters: pass-through` on an Azure-route body carrying Llama extras, as the SDK sends it (D40)."""
        kind = AZURE_ROUTE_KINDS.get(path.partition("?")[0])
        if method != "POST" or kind is None or not isinstance(body, dict) or not azure_extra_members(body, kind):
            return {}
        return dict(AZURE_PASS_THROUGH)

    def _api_version_query(self, path: str) -> dict[str, str]:
        """The api-version query of an Azure route (sent, not written into the recorded path the rules read)."""
        route, _, query = path.partition("?")
        if self.api_version is None or route not in AZURE_VERSIONED_ROUTES or "api-version=" in query:
            return {}
        return {"api-version": self.api_version}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw_body: bytes | None = None,
        headers: dict[str, str] | None = None,
        with_auth: bool = True,
        label: ProbeLabel | None = None,
        retry_busy: bool = True,
        azure_defaults: bool = True,
    ) -> Exchange:
        """`azure_defaults`: on the Azure routes, send what the SDK sends (pass-through for Llama extras, D40)."""
        attempts = 1 + (self.busy_retries if retry_busy else 0)
        busy: list[Exchange] = []
        for attempt in range(attempts):
            exchange = self._send(method, path, body, raw_body, headers, with_auth, azure_defaults)
            if exchange.status not in BUSY_STATUSES or attempt == attempts - 1:
                break
            busy.append(exchange)
            retry_after = exchange.headers.get("retry-after", "1")
            wait = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else 1.0
            time.sleep(min(max(wait, 0.1), self.max_wait_s))
        exchange.label = label
        exchange.busy_answers = busy
        return exchange

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        raw_body: bytes | None,
        headers: dict[str, str] | None,
        with_auth: bool,
        azure_defaults: bool,
    ) -> Exchange:
        sent_headers = {
            **(self.auth_headers() if with_auth else {}),
            **(self._azure_headers(method, path, body) if azure_defaults else {}),
            **(headers or {}),
        }
        content: bytes | None = raw_body
        if body is not None and raw_body is None:
            content = json.dumps(body).encode()
        if content is not None:
            sent_headers.setdefault("Content-Type", "application/json")
        recorded = RecordedRequest(method, path, body, raw_body, sent_headers)
        sent_at_unix = time.time()
        started = time.monotonic()
        events: list[SseEvent] | None = None
        first_byte: float | None = None
        chunks: list[str] = []
        decoder = SseDecoder()
        status: int | None = None
        response_headers: dict[str, str] = {}
        try:
            query = self._api_version_query(path)
            # params=None, not {}: an empty mapping would replace a query written into the path
            with self.http.stream(
                method, path, content=content, headers=sent_headers, params=query or None
            ) as response:
                status, response_headers = response.status_code, {k.lower(): v for k, v in response.headers.items()}
                if response.headers.get("content-type", "").startswith("text/event-stream"):
                    events = []
                for piece in response.iter_text():
                    now = time.monotonic()
                    if first_byte is None:
                        first_byte = now
                    chunks.append(piece)
                    if events is not None:
                        events.extend(sse_event(message, now) for message in decoder.feed(piece))
                    if now - started > self.deadline_s:
                        raise StreamStalled(f"the body was not complete after {self.deadline_s:.0f} s")
                if events is not None:
                    now = time.monotonic()
                    events.extend(sse_event(message, now) for message in decoder.finish())
        except (httpx.HTTPError, StreamStalled) as exc:
            return Exchange(
                request=recorded,
                status=status,
                headers=response_headers,
                body_text="".join(chunks),
                events=events,
                started_at=started,
                first_byte_at=first_byte,
                finished_at=time.monotonic(),
                transport_error=f"{type(exc).__name__}: {exc}",
                framing=decoder.framing if events is not None else None,
                sent_at_unix=sent_at_unix,
            )
        body_text = "".join(chunks)
        return Exchange(
            request=recorded,
            status=status,
            headers=response_headers,
            body_text=body_text,
            events=events,
            started_at=started,
            first_byte_at=first_byte,
            finished_at=time.monotonic(),
            framing=decoder.framing if events is not None else None,
            sent_at_unix=sent_at_unix,
        )

    def post(self, path: str, body: Any, **kwargs: Any) -> Exchange:
        return self.request("POST", path, body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Exchange:
        return self.request("GET", path, **kwargs)
