"""Graceful drain: what running requests are told when the server is asked to stop (SIGTERM).

The server stops accepting connections, then running requests have `drain_timeout_s` to finish.
When the deadline passes, every request still generating is ended by the deadline it entered with
`Drain.deadline()`: a stream then sends an in-band `shutting_down` error and `[DONE]`, a
non-streamed request gets 503 with Retry-After. Requests arriving while draining get that 503 at
once (spec/DECISIONS.md D57).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from reference_server.errors import ApiError

__all__ = ["Drain"]


class Drain:
    """The shutdown deadline shared by every running request of one app."""

    def __init__(self) -> None:
        self._deadline: float | None = None
        self._timeouts: set[asyncio.Timeout] = set()

    @property
    def draining(self) -> bool:
        return self._deadline is not None

    def expired(self) -> bool:
        """The drain deadline has passed: running work is being ended."""
        return self._deadline is not None and asyncio.get_running_loop().time() >= self._deadline

    def begin(self, timeout_s: float) -> None:
        """Start draining: every running and later request must end within `timeout_s`."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        if self._deadline is not None and self._deadline <= deadline:
            return
        self._deadline = deadline
        for timeout in self._timeouts:
            timeout.reschedule(deadline)

    @contextlib.asynccontextmanager
    async def deadline(self) -> AsyncIterator[None]:
        """A block the drain deadline ends (TimeoutError); no cost while the server is not draining."""
        async with asyncio.timeout_at(self._deadline) as timeout:
            self._timeouts.add(timeout)
            try:
                yield
            finally:
                self._timeouts.discard(timeout)

    def refusal(self, retry_after_s: int = 5) -> ApiError:
        """The answer for a request the drain ends or turns away."""
        return ApiError(
            503,
            "shutting_down",
            "the server is shutting down; retry on another instance or after it restarts",
            headers={"Retry-After": str(retry_after_s)},
        )
