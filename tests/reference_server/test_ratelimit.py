"""Rate limiting like Azure serverless deployments, on a fake clock: bursts, refill, sustained overload, tokens."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_server.ratelimit import (
    CONCURRENCY_RETRY_AFTER_S,
    RateLimiter,
    RateLimitState,
    Rejection,
    Ticket,
    rate_limit_headers,
)
from spec.profiles import get_profile


class FakeClock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def admitted(admission: Ticket | Rejection) -> Ticket:
    assert isinstance(admission, Ticket), admission
    return admission


def rejected(admission: Ticket | Rejection) -> Rejection:
    assert isinstance(admission, Rejection), admission
    return admission


def offer_evenly(limiter: RateLimiter, clock: FakeClock, per_minute: float, seconds: float, tokens: int) -> list[float]:
    """Offer requests evenly spaced at `per_minute` for `seconds`, settling each at once; the accepted times."""
    accepted: list[float] = []
    start, interval = clock.now, 60 / per_minute
    for index in range(math.floor(seconds / interval)):
        clock.now = start + index * interval
        admission = limiter.admit(tokens)
        if isinstance(admission, Ticket):
            limiter.settle(admission, tokens)
            accepted.append(clock.now - start)
    return accepted


# --- requests per minute ---


def test_burst_is_the_limit_over_ten_seconds(clock: FakeClock) -> None:
    limiter = RateLimiter(requests_per_minute=1000, clock=clock)
    burst = [limiter.admit(0) for _ in range(200)]
    assert sum(isinstance(item, Ticket) for item in burst) == 166  # 1000 * 10 / 60 = 166.7
    assert rejected(burst[-1]).reason == "requests"


def test_burst_seconds_is_a_parameter(clock: FakeClock) -> None:
    limiter = RateLimiter(requests_per_minute=600, burst_seconds=1, clock=clock)
    assert sum(isinstance(limiter.admit(0), Ticket) for _ in range(20)) == 10


def test_a_tiny_limit_still_admits_one_request(clock: FakeClock) -> None:
    limiter = RateLimiter(requests_per_minute=1, clock=clock)
    admitted(limiter.admit(0))
    rejection = rejected(limiter.admit(0))
    assert rejection.retry_after_s == pytest.approx(60)


def test_the_bucket_refills_continuously(clock: FakeClock) -> None:
    limiter = RateLimiter(requests_per_minute=600, burst_seconds=1, clock=clock)  # 10/s, burst 10
    for _ in range(10):
        admitted(limiter.admit(0))
    rejected(limiter.admit(0))
    clock.advance(0.35)  # 3.5 requests' worth
    assert sum(isinstance(limiter.admit(0), Ticket) for _ in range(10)) == 3
    clock.advance(3600)  # refill never exceeds the burst
    assert sum(isinstance(limiter.admit(0), Ticket) for _ in range(20)) == 10


@pytest.mark.parametrize("profile_name", ["serverless-llama3", "serverless-llama31"])
def test_twice_the_limit_sustained_is_accepted_at_the_limit(clock: FakeClock, profile_name: str) -> None:
    limiter = RateLimiter.from_profile(get_profile(profile_name), tpm_override=10**9, clock=clock)
    accepted = offer_evenly(limiter, clock, per_minute=2000, seconds=120, tokens=1)
    # First minute: the limit plus the initial burst (1000 * 10 / 60).
    first_minute = sum(1 for at in accepted if at < 60)
    assert first_minute == pytest.approx(1000 + 1000 / 6, rel=0.02)
    # Once the burst is spent, a measured 60 s window is accepted at exactly the limit.
    steady = sum(1 for at in accepted if 30 <= at < 90)
    assert steady == pytest.approx(1000, rel=0.02)


def test_under_the_limit_is_never_rejected(clock: FakeClock) -> None:
    limiter = RateLimiter(requests_per_minute=1000, tokens_per_minute=200_000, max_concurrent=300, clock=clock)
    offered = math.floor(180 / (60 / 900))
    accepted = offer_evenly(limiter, clock, per_minute=900, seconds=180, tokens=200)  # 0.9 * both limits
    assert len(accepted) == offered


# --- tokens per minute ---


def test_twice_the_token_limit_sustained_is_accepted_at_the_limit(clock: FakeClock) -> None:
    limiter = RateLimiter.from_profile(get_profile("serverless-llama31"), rpm_override=10**6, clock=clock)
    accepted = offer_evenly(limiter, clock, per_minute=800, seconds=180, tokens=1000)  # 800k tokens/min offered
    first_minute_tokens = 1000 * sum(1 for at in accepted if at < 60)
    assert first_minute_tokens == pytest.approx(400_000 + 400_000, rel=0.02)  # limit plus a minute's burst
    steady_tokens = 1000 * sum(1 for at in accepted if 90 <= at < 150)
    assert steady_tokens == pytest.approx(400_000, rel=0.02)


def test_admission_charges_the_estimate(clock: FakeClock) -> None:
    limiter = RateLimiter(tokens_per_minute=60_000, clock=clock)
    admitted(limiter.admit(50_000))
    assert limiter.snapshot().remaining_tokens == 10_000
    assert rejected(limiter.admit(10_001)).reason == "tokens"
    admitted(limiter.admit(10_000))


def test_settle_refunds_the_unused_estimate(clock: FakeClock) -> None:
    limiter = RateLimiter(tokens_per_minute=60_000, clock=clock)
    ticket = admitted(limiter.admit(50_000))
    limiter.settle(ticket, 1_200)
    assert limiter.snapshot().remaining_tokens == 60_000 - 1_200


def test_a_refund_never_fills_the_bucket_above_capacity(clock: FakeClock) -> None:
    limiter = RateLimiter(tokens_per_minute=60_000, clock=clock)
    ticket = admitted(limiter.admit(30_000))
    clock.advance(45)  # refilled 45,000 tokens: full again
    limiter.settle(ticket, 0)
    assert limiter.snapshot().remaining_tokens == 60_000


def test_settle_charges_an_overrun_and_the_bucket_may_go_negative(clock: FakeClock) -> None:
    limiter = RateLimiter(tokens_per_minute=60_000, clock=clock)  # refills 1,000 tokens/s
    ticket = admitted(limiter.admit(50_000))
    limiter.settle(ticket, 70_000)
    assert limiter.snapshot().remaining_tokens == 0  # the header never shows a negative count
    rejection = rejected(limiter.admit(1_000))
    assert rejection.reason == "tokens"
    assert rejection.retry_after_s == pytest.approx(11)  # 10,000 tokens of debt, then 1,000 more


def test_settling_twice_is_harmless(clock: FakeClock) -> None:
    limiter = RateLimiter(tokens_per_minute=60_000, max_concurrent=2, clock=clock)
    first = admitted(limiter.admit(10_000))
    second = admitted(limiter.admit(10_000))
    limiter.settle(first, 0)
    limiter.settle(first, 0)
    limiter.release(first)
    assert limiter.in_flight == 1
    assert limiter.snapshot().remaining_tokens == 50_000
    limiter.release(second)
    limiter.settle(second, 0)
    assert limiter.in_flight == 0
    assert limiter.snapshot().remaining_tokens == 50_000  # release kept the full charge


def test_a_request_larger_than_the_bucket_is_too_large(clock: FakeClock) -> None:
    limiter = RateLimiter.from_profile(get_profile("serverless-llama3"), clock=clock)
    admitted(limiter.admit(200_000))
    rejection = rejected(limiter.admit(200_001))
    assert rejection.reason == "too_large"
    assert rejection.retry_after_s is None
    assert "200,001" in rejection.message
    assert "200,000 tokens per minute" in rejection.message


def test_too_large_names_the_burst_when_it_is_smaller_than_a_minute(clock: FakeClock) -> None:
    limiter = RateLimiter(tokens_per_minute=60_000, token_burst_seconds=10, clock=clock)
    rejection = rejected(limiter.admit(10_001))
    assert rejection.reason == "too_large"
    assert "10,000 tokens this deployment admits at once" in rejection.message


def test_too_large_is_judged_before_other_limits(clock: FakeClock) -> None:
    limiter = RateLimiter(requests_per_minute=6, tokens_per_minute=600, max_concurrent=1, clock=clock)
    admitted(limiter.admit(1))
    assert rejected(limiter.admit(601)).reason == "too_large"


def test_negative_token_counts_are_refused(clock: FakeClock) -> None:
    limiter = RateLimiter(tokens_per_minute=60_000, clock=clock)
    with pytest.raises(ValueError, match="estimated_tokens"):
        limiter.admit(-1)
    ticket = admitted(limiter.admit(1))
    with pytest.raises(ValueError, match="actual_tokens"):
        limiter.settle(ticket, -1)


# --- concurrency ---


def test_concurrency_cap_and_release(clock: FakeClock) -> None:
    limiter = RateLimiter(max_concurrent=3, clock=clock)
    tickets = [admitted(limiter.admit(0)) for _ in range(3)]
    rejection = rejected(limiter.admit(0))
    assert rejection.reason == "concurrency"
    assert rejection.retry_after_s == CONCURRENCY_RETRY_AFTER_S
    assert "3 concurrent" in rejection.message
    limiter.release(tickets[0])
    admitted(limiter.admit(0))
    assert limiter.in_flight == 3


def test_a_concurrency_retry_is_never_sooner_than_the_buckets_allow(clock: FakeClock) -> None:
    limiter = RateLimiter(requests_per_minute=1, max_concurrent=1, clock=clock)
    admitted(limiter.admit(0))
    rejection = rejected(limiter.admit(0))
    assert rejection.reason == "concurrency"
    assert rejection.retry_after_s == pytest.approx(60)


def test_the_limiter_is_safe_across_threads() -> None:
    limiter = RateLimiter(max_concurrent=5)
    peak: list[int] = []

    def worker() -> None:
        for _ in range(2000):
            admission = limiter.admit(0)
            if isinstance(admission, Ticket):
                peak.append(limiter.in_flight)
                limiter.release(admission)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert limiter.in_flight == 0
    assert max(peak) <= 5


# --- retry_after ---


@pytest.mark.parametrize(
    ("rpm", "tpm", "estimate", "reason"),
    [(1000, None, 0, "requests"), (7, None, 0, "requests"), (None, 200_000, 9_973, "tokens"), (1000, 600, 7, "tokens")],
)
def test_waiting_retry_after_admits_the_same_request(
    clock: FakeClock, rpm: int | None, tpm: int | None, estimate: int, reason: str
) -> None:
    limiter = RateLimiter(requests_per_minute=rpm, tokens_per_minute=tpm, clock=clock)
    while isinstance(admission := limiter.admit(estimate), Ticket):
        clock.advance(0.001)
    rejection = rejected(admission)
    assert rejection.reason == reason
    assert rejection.retry_after_s is not None
    clock.advance(rejection.retry_after_s * 0.999)
    rejected(limiter.admit(estimate))
    clock.advance(rejection.retry_after_s * 0.001)
    admitted(limiter.admit(estimate))


def test_retry_after_names_the_limit_that_binds_longest(clock: FakeClock) -> None:
    limiter = RateLimiter(requests_per_minute=60, tokens_per_minute=600, burst_seconds=1, clock=clock)
    admitted(limiter.admit(600))  # both buckets empty: 1 s for a request, 60 s for 600 tokens
    rejection = rejected(limiter.admit(600))
    assert rejection.reason == "tokens"
    assert rejection.retry_after_s == pytest.approx(60)
    clock.advance(60)
    admitted(limiter.admit(1))
    rejection = rejected(limiter.admit(1))
    assert rejection.reason == "requests"
    assert rejection.retry_after_s == pytest.approx(1)


# --- state and headers ---


def test_snapshot_reports_limits_and_floors_remaining(clock: FakeClock) -> None:
    limiter = RateLimiter.from_profile(get_profile("serverless-llama31"), clock=clock)
    admitted(limiter.admit(1_234))
    clock.advance(0.01)  # +0.1667 requests, +66.7 tokens
    assert limiter.snapshot() == RateLimitState(
        limit_requests=1000, limit_tokens=400_000, remaining_requests=165, remaining_tokens=398_832
    )


def test_no_limits_means_no_state_and_always_admitted(clock: FakeClock) -> None:
    limiter = RateLimiter.from_profile(get_profile("managed-compute"), clock=clock)
    assert limiter.snapshot() == RateLimitState(None, None, None, None)
    assert all(isinstance(limiter.admit(10**9), Ticket) for _ in range(10_000))
    assert rate_limit_headers(limiter.snapshot()) == {}


def test_headers_on_success() -> None:
    state = RateLimitState(limit_requests=1000, limit_tokens=200_000, remaining_requests=12, remaining_tokens=3456)
    assert rate_limit_headers(state) == {
        "x-ratelimit-limit-requests": "1000",
        "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-requests": "12",
        "x-ratelimit-remaining-tokens": "3456",
    }


@pytest.mark.parametrize(
    ("retry_after_s", "seconds", "milliseconds"),
    [(0.0004, "1", "1"), (0.06, "1", "60"), (1.0, "1", "1000"), (1.2, "2", "1200"), (59.9991, "60", "60000")],
)
def test_headers_on_rejection(retry_after_s: float, seconds: str, milliseconds: str) -> None:
    state = RateLimitState(limit_requests=1000, limit_tokens=None, remaining_requests=0, remaining_tokens=None)
    rejection = Rejection("requests", retry_after_s, "slow down")
    assert rate_limit_headers(state, rejection) == {
        "x-ratelimit-limit-requests": "1000",
        "x-ratelimit-remaining-requests": "0",
        "Retry-After": seconds,
        "retry-after-ms": milliseconds,
    }


def test_too_large_has_no_retry_headers() -> None:
    state = RateLimitState(limit_requests=None, limit_tokens=100, remaining_requests=None, remaining_tokens=100)
    headers = rate_limit_headers(state, Rejection("too_large", None, "never fits"))
    assert "Retry-After" not in headers
    assert "retry-after-ms" not in headers


def test_the_message_states_the_retry_after_header_value(clock: FakeClock) -> None:
    limiter = RateLimiter(requests_per_minute=1, clock=clock)
    admitted(limiter.admit(0))
    clock.advance(0.5)
    rejection = rejected(limiter.admit(0))
    headers = rate_limit_headers(limiter.snapshot(), rejection)
    assert f"retry after {headers['Retry-After']} seconds" in rejection.message


@pytest.mark.parametrize(
    "kwargs",
    [{"requests_per_minute": 0}, {"tokens_per_minute": -5}, {"max_concurrent": 0}, {"burst_seconds": 0}],
)
def test_invalid_limits_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RateLimiter(**kwargs)  # type: ignore[arg-type]


# --- property: never more than the limit over any run ---


arrivals = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=2, allow_nan=False),  # seconds since the previous arrival
        st.integers(min_value=0, max_value=3000),  # estimated tokens
        st.floats(min_value=0, max_value=1),  # share of the estimate really used
    ),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(arrivals=arrivals, rpm=st.integers(1, 2000), tpm=st.integers(3000, 100_000))
def test_never_more_accepted_than_the_limit_allows(
    arrivals: list[tuple[float, int, float]], rpm: int, tpm: int
) -> None:
    clock = FakeClock()
    start = clock.now
    limiter = RateLimiter(requests_per_minute=rpm, tokens_per_minute=tpm, clock=clock)
    request_burst, token_burst = max(rpm / 6, 1), tpm
    accepted_requests = 0
    used_tokens = 0.0
    for gap, estimate, share in arrivals:
        clock.advance(gap)
        admission = limiter.admit(estimate)
        if isinstance(admission, Ticket):
            accepted_requests += 1
            actual = math.floor(estimate * share)
            used_tokens += actual
            limiter.settle(admission, actual)
        elapsed = clock.now - start
        assert accepted_requests <= rpm * elapsed / 60 + request_burst + 1e-6
        assert used_tokens <= tpm * elapsed / 60 + token_burst + 1e-6
