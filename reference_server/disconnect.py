"""Work done for a client stops when the client goes: the ASGI receive channel says when it has.

A streamed response notices a vanished client when a write fails; a non-streamed request writes
nothing until its generation ends, so without this it would generate on for nobody (issue 14).
"""

from __future__ import annotations

import asyncio
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
    # `work` runs in this task and the watcher cancels this task, the way asyncio.timeout does: one
    # task per request instead of two, and no asyncio.wait
    current = asyncio.current_task()
    if current is None:
        raise RuntimeError("unless_disconnected must run inside a task")
    gone = False
    finished = False

    def on_watcher_done(watcher: asyncio.Future[None]) -> None:
        nonlocal gone
        # `finished`: the work ended first (this callback may already have been scheduled by then)
        if finished or watcher.cancelled():
            return
        watcher.exception()  # a receive that failed means the client is gone too; retrieved, not logged
        gone = True
        current.cancel()

    watcher = asyncio.ensure_future(_disconnected(request))
    watcher.add_done_callback(on_watcher_done)
    try:
        return await work
    except asyncio.CancelledError:
        # ours alone (no other cancellation of this task pending): the client left
        if gone and current.uncancel() == 0:
            raise ClientGone from None
        raise
    finally:
        finished = True
        watcher.cancel()
