"""The fault barrier: a request id on every answer, and a bug of ours answered, not hung up on; and the
faults the server injects on request (`--fault-wrong-usage`), so the load test's checks can be proven to fire.

Starlette's own last-resort handler re-raises after answering, so uvicorn logs a traceback and
closes the keep-alive connection without saying so; clients sharing a connection pool then fail
on requests that did nothing wrong. This middleware sits inside it and ends the matter: the client
gets a 500 in its route's error form (our envelope; Azure.Core's on the Azure routes, D42) with the
request id, the connection stays usable, and the log gets one line (the traceback only at debug level).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference_server.azure import error_response_for
from reference_server.errors import ApiError

__all__ = ["REQUEST_ID_HEADER", "FaultBarrier", "FractionFault", "request_id_of"]

REQUEST_ID_HEADER = "x-request-id"
logger = logging.getLogger("llamacert.server")


class FractionFault:
    """An injected fault that strikes a fixed fraction of the requests it is asked about, evenly spread.

    Deterministic (the k-th request is hit when k * fraction crosses a whole number), so a test knows how many
    answers are broken: 0.1 breaks the 10th, 20th, 30th ... answer.
    """

    def __init__(self, fraction: float) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"a fault's fraction must be between 0 and 1, not {fraction}")
        self.fraction = fraction
        self._asked = 0
        self.struck = 0

    def strikes(self) -> bool:
        """Whether this request gets the fault."""
        self._asked += 1
        due = int(self._asked * self.fraction + 1e-9)
        if due > self.struck:
            self.struck = due
            return True
        return False


def request_id_of(request: Request) -> str:
    """The id the barrier gave this request (a fresh one when the app runs without the barrier)."""
    state: dict[str, Any] = request.scope.setdefault("state", {})
    request_id: str | None = state.get("request_id")
    if request_id is None:  # not setdefault: that would draw a uuid for every request the barrier named
        request_id = state["request_id"] = uuid.uuid4().hex
    return request_id


class FaultBarrier:
    """ASGI middleware: names each request (`x-request-id`) and turns an escaped exception into a 500 answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                headers = [*message.get("headers", []), (REQUEST_ID_HEADER.encode(), request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            logger.error(
                "request %s (%s %s) failed: %s: %s",
                request_id,
                scope.get("method"),
                scope.get("path"),
                type(exc).__name__,
                exc,
            )
            logger.debug("traceback of request %s", request_id, exc_info=exc)
            if response_started:
                # the status is sent: uvicorn ends the incomplete body by closing this one connection
                return
            error = ApiError(500, "server_error", f"internal error ({type(exc).__name__}); request id {request_id}")
            await error_response_for(scope["path"], error)(scope, receive, send_with_id)
