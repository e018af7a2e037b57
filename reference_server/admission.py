"""Admission to generation, decided before any response starts (streams included).

At most `capacity` requests generate at once (the backend's slots). Beyond that, up to
`max_waiting` requests wait, in arrival order, at most `wait_s` seconds each; any other is refused
with 503 and Retry-After. A stream is admitted before its 200 is sent, so an overloaded server
answers streamed and non-streamed requests alike (spec/DECISIONS.md D56).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

from reference_server.errors import ApiError

__all__ = ["GenerationGate", "Permit"]


class Permit:
    """One admitted request's place; released exactly once, however the request ends."""

    def __init__(self, gate: GenerationGate) -> None:
        self._gate: GenerationGate | None = gate

    def release(self) -> None:
        if self._gate is not None:
            gate, self._gate = self._gate, None
            gate._release()


class GenerationGate:
    """Counts running requests; bounds how many wait and for how long."""

    def __init__(self, capacity: int | None, max_waiting: int, wait_s: float, retry_after_s: int = 2) -> None:
        self.capacity = capacity
        """Requests generating at once; None: the backend has no fixed number, nobody waits here."""
        self.max_waiting = max_waiting
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self.running = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def in_flight(self) -> int:
        """Requests admitted or waiting: zero on an idle server."""
        return self.running + self.waiting

    def _refusal(self, why: str) -> ApiError:
        return ApiError(
            503,
            "overloaded",
            f"the server is at capacity ({why}); retry after {self.retry_after_s} s",
            headers={"Retry-After": str(self.retry_after_s)},
        )

    def admit_now(self) -> Permit | None:
        """A permit when there is room this instant (nobody waits for it); None when one must wait (`admit`)."""
        if self.capacity is None or (self.running < self.capacity and not self._waiters):
            self.running += 1
            return Permit(self)
        return None

    async def admit(self) -> Permit:
        """A permit to generate, or ApiError 503 (with Retry-After) when there is no room in time."""
        permit = self.admit_now()
        if permit is not None:
            return permit
        if len(self._waiters) >= self.max_waiting:
            raise self._refusal(f"{self.running} requests running and {len(self._waiters)} waiting")
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            async with asyncio.timeout(self.wait_s):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self._release()  # the slot was handed over just as this request gave up: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(turn)
            if isinstance(exc, TimeoutError):
                raise self._refusal(f"no generation slot became free within {self.wait_s:g} s") from None
            raise
        return Permit(self)

    def _release(self) -> None:
        # hand the slot straight to the longest waiter, so a newcomer cannot overtake it
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.running -= 1

    @contextlib.asynccontextmanager
    async def permit(self) -> AsyncIterator[None]:
        """Admitted for the body of the block."""
        held = await self.admit()
        try:
            yield
        finally:
            held.release()
