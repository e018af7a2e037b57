"""Deployment-profile rules: rate-limit headers and enforcement, content safety, for the profiles that require them."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conformance.exchange import Exchange
from conformance.plugin import Api, Suite, Verifier
from conformance.rules.profile import RATE_LIMIT_BURST_PROBE, burst_ceiling
from spec.profiles import RATE_LIMIT_BURST_SECONDS, RATE_LIMIT_RULE_ID, get_profile

# Enough requests in flight to outrun a 1,000/min limit's refill on a slow endpoint, few enough to stay polite.
_BURST_CONCURRENCY = 8
_BURST_TIME_LIMIT_S = 60.0


@pytest.mark.rules("rate_limit.headers", "errors.retry_after")
def test_rate_limit_headers(api: Api, suite: Suite, verify: Verifier) -> None:
    if not suite.profile or not get_profile(suite.profile).has_rate_limits:
        pytest.skip("the profile has no platform rate limits")
    verify.post(api.path, api.body(max_tokens=2, temperature=0), probe="rate_limit", valid=True)
    verify.finish()


@pytest.mark.rules(RATE_LIMIT_RULE_ID)
def test_rate_limit_is_enforced(suite: Suite, verify: Verifier, request: pytest.FixtureRequest) -> None:
    """One burst past the deployment's requests/min limit (D26), on the first API under test (the limit is the
    deployment's, not a route's)."""
    limit = get_profile(suite.profile).requests_per_minute if suite.profile else None
    if limit is None:
        pytest.skip("the profile has no requests/min limit")
    if suite.quick:
        pytest.skip("the burst empties the limiter, which the suite then waits to refill: full suite only")
    api = suite.apis()[0]
    body = api.body(max_tokens=1, temperature=0)
    suite.client()  # connected (the embedded server started) before the threads share it
    started = time.monotonic()
    sent = 0

    def send(number: int) -> Exchange:
        role = f"burst_{number:05d}"
        return verify.post(api.path, body, probe=RATE_LIMIT_BURST_PROBE, role=role, valid=True, retry_busy=False)

    answers: list[Exchange] = []
    with ThreadPoolExecutor(_BURST_CONCURRENCY) as pool:
        # past the limit with room to spare, or past the time a slow endpoint could need to get there
        while time.monotonic() - started < _BURST_TIME_LIMIT_S:
            answers += pool.map(send, range(sent, sent + _BURST_CONCURRENCY))
            sent += _BURST_CONCURRENCY
            if any(answer.status == 429 for answer in answers):
                break
            elapsed = time.monotonic() - started
            to_go = burst_ceiling(limit, elapsed) + _BURST_CONCURRENCY - sent
            if to_go < 0:
                break
            # an endpoint that answers little faster than its limit refills cannot be outrun by waiting clients:
            # the rule then has no evidence either way, and the time is better spent elsewhere
            spare_per_s = sent / elapsed - limit / 60
            if elapsed > 2 and (spare_per_s <= 0 or to_go / spare_per_s > _BURST_TIME_LIMIT_S - elapsed):
                break
    verify.finish()
    last = request.session.items[-1] is request.node
    if not last and any(answer.status == 429 for answer in answers):
        time.sleep(RATE_LIMIT_BURST_SECONDS)  # a full window refills the limiter for the tests that follow


@pytest.mark.rules("content_safety.prompt")
def test_harmful_prompts_are_filtered(api: Api, suite: Suite, verify: Verifier) -> None:
    if not suite.profile or get_profile(suite.profile).content_safety != "required":
        pytest.skip("content safety is not required by the profile")
    prompts = suite.harmful_prompts()
    for number, prompt in enumerate(prompts[:2] if suite.quick else prompts):
        body = api.body(prompt, max_tokens=4)
        verify.post(api.path, body, probe="content_safety", role=f"harmful_{number}", note=prompt)
    verify.finish()
