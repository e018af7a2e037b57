"""Deployment-profile rules: rate limits (their headers and their enforcement) and content safety, applied where
spec/profiles.yaml requires them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from conformance.exchange import Exchange
from conformance.rules.common import error_object
from conformance.rules.registry import CheckFailure, JudgeContext, NotApplicable, probe_rule
from spec.profiles import (
    RATE_LIMIT_BURST_SECONDS,
    RATE_LIMIT_HEADERS,
    RATE_LIMIT_RULE_ID,
    REQUEST_LIMIT_HEADERS,
    TOKEN_LIMIT_HEADERS,
)

__all__ = ["RATE_LIMIT_BURST_PROBE", "burst_ceiling", "published_request_limit"]

RATE_LIMIT_BURST_PROBE = "rate_limit_burst"
"""The probe whose exchanges are one burst of requests sent past the published limit, each role one request."""


def published_request_limit(answers: Sequence[Exchange], context: JudgeContext) -> int | None:
    """The requests/min limit the answers are judged by: the stricter of the profile's and the one the
    endpoint announces in x-ratelimit-limit-requests (its most common value); None when neither is known."""
    announced = Counter(
        int(value)
        for answer in answers
        if (value := answer.headers.get("x-ratelimit-limit-requests", "")).isdigit() and int(value) > 0
    )
    known = [limit for limit in (context.profile.requests_per_minute if context.profile else None,) if limit]
    if announced:
        known.append(announced.most_common(1)[0][0])
    return min(known) if known else None


def burst_ceiling(limit_rpm: int, span_s: float) -> float:
    """The most requests a limit of `limit_rpm` may accept from sends spread over `span_s` seconds (D26)."""
    return limit_rpm * span_s / 60 + limit_rpm * RATE_LIMIT_BURST_SECONDS / 60 + 1


@probe_rule(
    "rate_limit.headers",
    "a rate-limited deployment's answers carry x-ratelimit-limit/remaining-requests/tokens headers",
    ["D1"],
    probe="rate_limit",
)
def _headers(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    if not parts:
        raise NotApplicable
    for role, exchange in sorted(parts.items()):
        if exchange.status != 200:
            raise CheckFailure(f"{role}: status {exchange.status}: {exchange.excerpt(200)}")
        missing = [h for h in RATE_LIMIT_HEADERS if h not in exchange.headers]
        if missing:
            raise CheckFailure(f"{role}: missing rate-limit headers {missing}")


@probe_rule(
    RATE_LIMIT_RULE_ID,
    "past its requests/min limit (plus one 10 s burst) the deployment answers 429, each 429 with Retry-After "
    "in whole seconds and the x-ratelimit-limit/remaining headers of each limit it has",
    ["D26", "#/components/responses/TooManyRequests"],
    probe=RATE_LIMIT_BURST_PROBE,
    # the burst runs in the full suite only, and a load test's rate-limit scenario judges the rule too
    conditional=True,
)
def _enforced(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    answers = sorted(parts.values(), key=lambda exchange: exchange.started_at)
    limit = published_request_limit(answers, context)
    if not answers or limit is None:
        raise NotApplicable
    refused = [answer for answer in answers if answer.status == 429]
    token_limited = bool(context.profile and context.profile.tokens_per_minute) or any(
        "x-ratelimit-limit-tokens" in answer.headers for answer in answers
    )
    required_headers = REQUEST_LIMIT_HEADERS + (TOKEN_LIMIT_HEADERS if token_limited else ())
    for answer in refused:
        retry_after = answer.headers.get("retry-after")
        if retry_after is None or not retry_after.isdigit():
            raise CheckFailure(f"a 429 without Retry-After in whole seconds (got {retry_after!r})")
        missing = [header for header in required_headers if header not in answer.headers]
        if missing:
            raise CheckFailure(f"a 429 without the rate-limit headers {missing}")
    accepted = sum(answer.status is not None and 200 <= answer.status < 300 for answer in answers)
    span_s = answers[-1].started_at - answers[0].started_at
    ceiling = burst_ceiling(limit, span_s)
    if accepted > ceiling:
        raise CheckFailure(
            f"accepted {accepted} of {len(answers)} requests sent within {span_s:.1f} s ({len(refused)} refused "
            f"with 429), above the {ceiling:.0f} a limit of {limit:,} requests/min allows with one 10 s burst"
        )
    if not refused and len(answers) <= ceiling:
        raise NotApplicable  # the burst never went past the limit: no evidence either way


@probe_rule(
    "content_safety.prompt",
    "every harmful prompt of the suite's list is refused with 400 and error code content_filter",
    ["#/components/schemas/FinishReason"],
    probe="content_safety",
)
def _prompt(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    if not parts:
        raise NotApplicable
    for role, exchange in sorted(parts.items()):
        code = error_object(exchange).get("code") if exchange.status == 400 else None
        if exchange.status != 400 or code != "content_filter":
            prompt = exchange.label.note if exchange.label else role
            raise CheckFailure(f"the harmful prompt {prompt!r} got status {exchange.status} (error code {code!r})")
