"""Work done for a client stops when the client goes: the ASGI receive channel says when it has.

A streamed response notices a vanished client when a write fails; a non-streamed request writes
nothing until its generation ends, so without this it would generate on for nobody (issue 14).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

__all__ = ["CLIENT_CLOSED_STATUS", "ClientGone", "unless_disconnected"]

T = TypeVar("T")

CLIENT_CLOSED_STATUS = 499
"""The status logged for a request whose client left first (nginx's convention; no one receives it)."""


class ClientGone(Exception):
    """The client disconnected before its answer was ready; the work for it was cancelled."""


async def _disconnected(request: Request) -> None:
    # the body has been read: the next ASGI message is http.disconnect, whenever the client goes
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """The result of `work`, or ClientGone once the client disconnects first (`work` is cancelled,
    so whatever it holds, a place in a queue or a running generation, is let go at once)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientGone
    finally:
        watcher.cancel()
        if not task.done():  # this coroutine itself was cancelled
            task.cancel()
