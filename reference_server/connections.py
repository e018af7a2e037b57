"""Connection limits uvicorn's httptools protocol lacks: header size, count and deadline; a connection cap.

uvicorn times out idle keep-alive connections *between* requests (`timeout_keep_alive`), but not
a connection that never completes its first request's headers, and httptools accepts headers of
any size. This protocol adds, per connection:

- a header deadline: the request line and headers must arrive within `header_timeout_s` of the
  connection opening (or of the request starting on a kept-alive one); otherwise 408 (or a plain
  close when nothing was sent) — slowloris connections are cut;
- header limits: more than `max_header_bytes` or `max_header_count` headers get 431;
- a connection cap: beyond `max_connections` open connections, a new one's request is answered
  503 with Retry-After and the connection is closed, so idle sockets cannot use up the server's files.

Its refusals are the API's JSON error envelope, as is a malformed request's 400.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from reference_server.errors import ApiError

__all__ = ["ConnectionLimits", "limited_protocol"]


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection limits (ServerSettings: header_timeout_s, max_header_bytes, max_header_count, max_connections)."""

    header_timeout_s: float
    max_header_bytes: int
    max_header_count: int
    max_connections: int


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; carries the answer to write."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def _raw_response(error: ApiError) -> bytes:
    body = json.dumps(error.body()).encode()
    head = [f"HTTP/1.1 {error.status} {_REASONS.get(error.status, '')}"]
    head += [f"{name}: {value}" for name, value in error.headers.items()]
    head += ["content-type: application/json", f"content-length: {len(body)}", "connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above (see limited_protocol)."""

    limits: ConnectionLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_headers = True
        self._header_bytes = 0
        """Bytes received while this request's headers are incomplete (bounds what the parser holds)."""
        self._parsed_header_bytes = 0
        self._header_count = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._refusal: ApiError | None = None
        self._over_capacity = False

    # --- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._over_capacity = len(self.connections) > self.limits.max_connections
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._awaiting_headers and self._header_bytes > self.limits.max_header_bytes:
            self._refuse(self._headers_too_large())

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this for any parser error: ours (a _Refused callback) or a malformed request
        if self._refusal is None:
            self._refusal = ApiError(400, "invalid_request", "malformed HTTP request: it could not be parsed")
        self._write_refusal()

    # --- parser callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        self._header_count = 0
        self._parsed_header_bytes = 0
        if self._header_timer is None:
            self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        self._parsed_header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._parsed_header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_count > self.limits.max_header_count:
            raise _Refused(self._set_refusal(self._too_many_headers()))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        self._awaiting_headers = False
        # the chunk that completed the headers may hold body bytes too: judge the headers themselves
        if self._parsed_header_bytes > self.limits.max_header_bytes:
            raise _Refused(self._set_refusal(self._headers_too_large()))
        self._header_bytes = 0
        if self._over_capacity:
            raise _Refused(
                self._set_refusal(
                    ApiError(
                        503,
                        "overloaded",
                        f"the server has {self.limits.max_connections} connections open, its limit; retry after 1 s",
                        headers={"Retry-After": "1"},
                    )
                )
            )
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_headers = True
        self._header_bytes = 0

    # --- refusals ------------------------------------------------------------------------------

    def _headers_too_large(self) -> ApiError:
        return ApiError(
            431, "headers_too_large", f"the request headers exceed the limit of {self.limits.max_header_bytes} bytes"
        )

    def _too_many_headers(self) -> ApiError:
        return ApiError(
            431, "headers_too_large", f"the request has more than the limit of {self.limits.max_header_count} headers"
        )

    def _set_refusal(self, error: ApiError) -> ApiError:
        self._refusal = error
        return error

    def _refuse(self, error: ApiError) -> None:
        self._refusal = error
        self._write_refusal()

    def _write_refusal(self) -> None:
        if self._refusal is not None and not self.transport.is_closing():
            self.transport.write(_raw_response(self._refusal))
            self.transport.close()

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._header_deadline_passed)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._header_bytes == 0:
            self.transport.close()  # an idle connection that never sent a request: nothing to answer
            return
        self._refuse(
            ApiError(
                408,
                "request_timeout",
                f"the request headers did not arrive within {self.limits.header_timeout_s:g} s",
            )
        )


def limited_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """The protocol class to give uvicorn (`http=`): httptools with these limits."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})
