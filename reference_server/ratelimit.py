"""Per-deployment rate limiting as Azure serverless deployments enforce it: requests/min, tokens/min, concurrency.

Pure logic, no HTTP: the HTTP layer calls `RateLimiter.admit` before a request runs, answers 429 (or 400
for `too_large`) with `rate_limit_headers` on a `Rejection`, and `settle`s the `Ticket` when it ends.

Algorithm: one token bucket per limit, refilled continuously at `limit / 60` per second and starting full.
- Requests: the bucket holds `requests_per_minute * burst_seconds / 60` requests, `burst_seconds` = 10 by
  default. Azure evaluates request rates over short windows ("typically 1 or 10 seconds"), so a 1,000 RPM
  deployment takes a burst of about 167 requests, not 1,000 in one second. Over a window of W seconds at
  most `rpm * W / 60 + rpm / 6` requests are accepted, so a sustained overload is held at the limit.
- Tokens: the bucket holds a whole minute (`token_burst_seconds` = 60), as Azure keeps a per-minute running
  count of estimated tokens. A smaller bucket would reject, as too large ever to fit, requests that the
  per-minute limit allows (a Llama 3.1 request with max_tokens 100,000 on 400,000 tokens/min).
  A request is charged its estimated maximum on admission (prompt tokens + max_tokens * max(n, best_of))
  and corrected by `settle` with what it really used.
- Concurrency: a plain count of admitted, unsettled requests.

Thread safety: the HTTP layer is asyncio, single-threaded, and never awaits inside these methods; a
`threading.Lock` still guards the state so the limiter stays correct if a caller uses threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from spec.profiles import RATE_LIMIT_BURST_SECONDS, Profile

__all__ = [
    "CONCURRENCY_RETRY_AFTER_S",
    "DEFAULT_BURST_SECONDS",
    "DEFAULT_TOKEN_BURST_SECONDS",
    "Admission",
    "RateLimitState",
    "RateLimiter",
    "Rejection",
    "RejectionReason",
    "Ticket",
    "rate_limit_headers",
]

DEFAULT_BURST_SECONDS = RATE_LIMIT_BURST_SECONDS
DEFAULT_TOKEN_BURST_SECONDS = 60.0
CONCURRENCY_RETRY_AFTER_S = 1.0
"""When a concurrency slot frees up depends on other requests finishing, which cannot be predicted."""

# Waiting exactly `retry_after_s` must admit the same request, although the refill arithmetic rounds.
_RELATIVE_TOLERANCE = 1e-9

RejectionReason = Literal["requests", "tokens", "concurrency", "too_large"]


@dataclass(eq=False)
class Ticket:
    """An admitted request: holds its token charge until `RateLimiter.settle` or `release` ends it."""

    estimated_tokens: int
    settled: bool = False


@dataclass(frozen=True)
class Rejection:
    """A refused request: why, and when the same request would be admitted (None: never, see too_large)."""

    reason: RejectionReason
    retry_after_s: float | None
    message: str


Admission: TypeAlias = Ticket | Rejection


@dataclass(frozen=True)
class RateLimitState:
    """What the x-ratelimit-* headers report; None where the deployment has no limit of that kind.

    `remaining_*` is what could be admitted right now (the bucket's level), at most the burst size.
    """

    limit_requests: int | None
    limit_tokens: int | None
    remaining_requests: int | None
    remaining_tokens: int | None


class _Bucket:
    """A token bucket refilled continuously; its level may go negative when a request overran its estimate."""

    def __init__(self, per_minute: int, burst_seconds: float, now: float) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60
        # At least one unit, or a tiny limit with a short burst could never admit anything.
        self.capacity = max(per_minute * burst_seconds / 60, 1.0)
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.level = min(self.capacity, self.level + elapsed * self.rate)
        self.updated = now

    def fits(self, amount: float) -> bool:
        """Whether `amount` could ever be taken (a full bucket holds it)."""
        return amount <= self.capacity * (1 + _RELATIVE_TOLERANCE)

    def wait_for(self, amount: float) -> float:
        """Seconds until the level reaches `amount`; 0 when it already has."""
        shortfall = amount - self.level
        if shortfall <= self.capacity * _RELATIVE_TOLERANCE:
            return 0.0
        return shortfall / self.rate

    def credit(self, amount: float) -> None:
        """Add (or, negative, take) `amount`, never above capacity."""
        self.level = min(self.capacity, self.level + amount)


def _whole_seconds(seconds: float) -> int:
    """Retry-After is whole seconds; rounding up (at least 1) so a client that obeys it is admitted."""
    return max(1, math.ceil(seconds))


class RateLimiter:
    """Admits or rejects requests under a deployment's requests/min, tokens/min and concurrency limits.

    None for a limit means no limit of that kind. `clock` is monotonic seconds; tests inject a fake.
    """

    def __init__(
        self,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        max_concurrent: int | None = None,
        *,
        burst_seconds: float = DEFAULT_BURST_SECONDS,
        token_burst_seconds: float = DEFAULT_TOKEN_BURST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, limit in [
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
            ("max_concurrent", max_concurrent),
        ]:
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be at least 1 or None (no limit), got {limit}")
        if burst_seconds <= 0 or token_burst_seconds <= 0:
            raise ValueError("burst_seconds and token_burst_seconds must be positive")
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._requests = None if requests_per_minute is None else _Bucket(requests_per_minute, burst_seconds, now)
        self._tokens = None if tokens_per_minute is None else _Bucket(tokens_per_minute, token_burst_seconds, now)
        self._max_concurrent = max_concurrent
        self._in_flight = 0

    @classmethod
    def from_profile(
        cls,
        profile: Profile,
        rpm_override: int | None = None,
        tpm_override: int | None = None,
        *,
        burst_seconds: float = DEFAULT_BURST_SECONDS,
        token_burst_seconds: float = DEFAULT_TOKEN_BURST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> RateLimiter:
        """The limits of a deployment profile; an override replaces the profile's RPM or TPM (for tests, demos)."""
        return cls(
            requests_per_minute=profile.requests_per_minute if rpm_override is None else rpm_override,
            tokens_per_minute=profile.tokens_per_minute if tpm_override is None else tpm_override,
            max_concurrent=profile.max_concurrent_requests,
            burst_seconds=burst_seconds,
            token_burst_seconds=token_burst_seconds,
            clock=clock,
        )

    @property
    def in_flight(self) -> int:
        """Admitted requests not yet settled or released."""
        return self._in_flight

    def admit(self, estimated_tokens: int) -> Admission:
        """Admit a request that may use up to `estimated_tokens`, charging it; or say why not and for how long.

        `estimated_tokens` is prompt tokens + max_tokens * max(n, best_of), computed by the caller.
        Nothing is charged on a rejection.
        """
        if estimated_tokens < 0:
            raise ValueError(f"estimated_tokens must not be negative, got {estimated_tokens}")
        with self._lock:
            now = self._clock()
            requests, tokens = self._requests, self._tokens
            if requests is not None:
                requests.refill(now)
            if tokens is not None:
                tokens.refill(now)
                if not tokens.fits(estimated_tokens):
                    return Rejection("too_large", None, self._too_large_message(estimated_tokens, tokens))
            request_wait = 0.0 if requests is None else requests.wait_for(1)
            token_wait = 0.0 if tokens is None else tokens.wait_for(estimated_tokens)
            bucket_wait = max(request_wait, token_wait)
            if self._max_concurrent is not None and self._in_flight >= self._max_concurrent:
                # Never advertise a retry sooner than the buckets allow, or the retry is rejected again.
                retry_after = max(CONCURRENCY_RETRY_AFTER_S, bucket_wait)
                message = (
                    f"This deployment is already serving its maximum of {self._max_concurrent:,} concurrent "
                    f"requests. Please retry after {_whole_seconds(retry_after)} seconds."
                )
                return Rejection("concurrency", retry_after, message)
            if bucket_wait > 0:
                # Name the limit that binds longest: that is the one the client must wait out.
                if tokens is not None and token_wait > request_wait:
                    message = (
                        f"This request's estimated {estimated_tokens:,} tokens exceed what is left of this "
                        f"deployment's limit of {tokens.per_minute:,} tokens per minute. "
                        f"Please retry after {_whole_seconds(bucket_wait)} seconds."
                    )
                    return Rejection("tokens", bucket_wait, message)
                assert requests is not None  # a positive wait comes from a bucket that exists
                message = (
                    f"Requests to this deployment have exceeded its rate limit of {requests.per_minute:,} "
                    f"requests per minute. Please retry after {_whole_seconds(bucket_wait)} seconds."
                )
                return Rejection("requests", bucket_wait, message)
            if requests is not None:
                requests.credit(-1)
            if tokens is not None:
                tokens.credit(-estimated_tokens)
            self._in_flight += 1
            return Ticket(estimated_tokens)

    def settle(self, ticket: Ticket, actual_tokens: int) -> None:
        """End an admitted request with the tokens it really used, correcting its charge.

        Unused tokens go back into the bucket (never above its capacity); tokens beyond the estimate are
        charged, and may leave the bucket negative so later requests wait the overrun out. Settling a
        ticket again does nothing, so cleanup paths may call it unconditionally.
        """
        if actual_tokens < 0:
            raise ValueError(f"actual_tokens must not be negative, got {actual_tokens}")
        with self._lock:
            if ticket.settled:
                return
            ticket.settled = True
            self._in_flight -= 1
            if self._tokens is not None:
                self._tokens.refill(self._clock())
                self._tokens.credit(ticket.estimated_tokens - actual_tokens)

    def release(self, ticket: Ticket) -> None:
        """End an admitted request whose usage is unknown (failed, aborted): free its slot, keep the full charge."""
        self.settle(ticket, ticket.estimated_tokens)

    def snapshot(self) -> RateLimitState:
        """The limits and what is left of them now, for the x-ratelimit-* headers."""
        with self._lock:
            now = self._clock()
            requests, tokens = self._requests, self._tokens
            if requests is not None:
                requests.refill(now)
            if tokens is not None:
                tokens.refill(now)
            return RateLimitState(
                limit_requests=None if requests is None else requests.per_minute,
                limit_tokens=None if tokens is None else tokens.per_minute,
                remaining_requests=None if requests is None else max(0, math.floor(requests.level)),
                remaining_tokens=None if tokens is None else max(0, math.floor(tokens.level)),
            )

    @staticmethod
    def _too_large_message(estimated_tokens: int, tokens: _Bucket) -> str:
        capacity = math.floor(tokens.capacity)
        limit = f"its limit is {tokens.per_minute:,} tokens per minute"
        at_once = f"the {capacity:,} tokens this deployment admits at once ({limit})"
        if capacity == tokens.per_minute:
            at_once = f"this deployment's limit of {tokens.per_minute:,} tokens per minute"
        return (
            f"This request may use up to {estimated_tokens:,} tokens (prompt tokens plus max_tokens * "
            f"max(n, best_of)), more than {at_once}, so it can never be served. Lower max_tokens, n or best_of."
        )


def rate_limit_headers(state: RateLimitState, rejection: Rejection | None = None) -> dict[str, str]:
    """The x-ratelimit-* headers for `state`, plus Retry-After (whole seconds) and retry-after-ms on a rejection."""
    headers: dict[str, str] = {}
    if state.limit_requests is not None:
        headers["x-ratelimit-limit-requests"] = str(state.limit_requests)
    if state.limit_tokens is not None:
        headers["x-ratelimit-limit-tokens"] = str(state.limit_tokens)
    if state.remaining_requests is not None:
        headers["x-ratelimit-remaining-requests"] = str(state.remaining_requests)
    if state.remaining_tokens is not None:
        headers["x-ratelimit-remaining-tokens"] = str(state.remaining_tokens)
    if rejection is not None and rejection.retry_after_s is not None:
        headers["Retry-After"] = str(_whole_seconds(rejection.retry_after_s))
        headers["retry-after-ms"] = str(max(1, math.ceil(rejection.retry_after_s * 1000)))
    return headers
