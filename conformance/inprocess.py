"""Reach an ASGI app in this process through `httpx.ASGITransport`, from the suite's synchronous client.

The app runs on its own event loop in a background thread (with its lifespan entered, as a server
would); each request is handed to that loop and its response read whole. The catalogue of broken
and honest endpoints runs the conformance suite this way, in seconds, without ports or processes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

__all__ = ["InProcessApp"]

T = TypeVar("T")


class _BridgeTransport(httpx.BaseTransport):
    def __init__(self, owner: InProcessApp) -> None:
        self.owner = owner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()

        async def send() -> httpx.Response:
            forwarded = httpx.Request(request.method, request.url, headers=request.headers, content=content)
            response = await self.owner.asgi.handle_async_request(forwarded)
            body = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return self.owner.run(send())


class InProcessApp:
    """An ASGI app served on a background event loop; `transport` is a synchronous httpx transport to it."""

    def __init__(self, app: Any, *, lifespan_app: Any = None, timeout_s: float = 60.0) -> None:
        """`lifespan_app`: the Starlette app whose lifespan to run when `app` wraps it (a middleware)."""
        self.app = app
        self.lifespan_app = lifespan_app if lifespan_app is not None else app
        self.timeout_s = timeout_s
        # an exception in the app reaches the client as a 500, as it would over the network
        self.asgi = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.transport: httpx.BaseTransport = _BridgeTransport(self)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="in-process-app", daemon=True)
        self._lifespan: AbstractAsyncContextManager[Any] | None = None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(self.timeout_s)
        except TimeoutError:
            future.cancel()
            # as a network client would see it: the body did not arrive in time
            raise httpx.ReadTimeout(f"the in-process app did not answer within {self.timeout_s:.0f} s") from None

    def __enter__(self) -> Self:
        self._thread.start()
        router = getattr(self.lifespan_app, "router", None)
        if router is not None and hasattr(router, "lifespan_context"):
            lifespan: AbstractAsyncContextManager[Any] = router.lifespan_context(self.lifespan_app)
            self._lifespan = lifespan
            self.run(lifespan.__aenter__())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if self._lifespan is not None:
                self.run(self._lifespan.__aexit__(None, None, None))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
