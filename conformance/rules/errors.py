"""Error rules: the envelope, Retry-After, no 5xx, and the answers to what a client gets wrong."""

from __future__ import annotations

import re
from collections.abc import Mapping

from conformance.exchange import Exchange
from conformance.rules.common import error_object, schema_errors
from conformance.rules.registry import CheckFailure, JudgeContext, NotApplicable, exchange_rule, probe_rule
from spec.document import Strictness

__all__: list[str] = []


def _invalid_statuses(context: JudgeContext) -> set[int]:
    # D14: invalid parameters are 400; compat also accepts FastAPI-style 422
    return {400} if context.strictness is Strictness.DOCS else {400, 422}


def _only(parts: Mapping[str, Exchange], role: str) -> Exchange:
    exchange = parts.get(role)
    if exchange is None:
        raise NotApplicable
    return exchange


def _expect_status(exchange: Exchange, expected: set[int], what: str) -> None:
    if exchange.status not in expected:
        got = exchange.status if exchange.status is not None else exchange.transport_error
        raise CheckFailure(f"{what}: expected status {sorted(expected)}, got {got}: {exchange.excerpt(200)}")


@exchange_rule(
    "errors.envelope",
    "every error answer is the JSON error envelope (compat: code may be null)",
    ["D14", "#/components/schemas/ErrorResponse", "R1"],
    severity="advisory",
    any_request=True,
)
def _envelope(exchange: Exchange, context: JudgeContext) -> None:
    if exchange.status is None or exchange.status < 400:
        raise NotApplicable
    body = exchange.json
    if context.strictness is Strictness.COMPAT and isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        # R1: OpenAI's own error bodies carry code: null
        body = {**body, "error": {**error, "code": "" if error.get("code") is None else error.get("code")}}
    errors = schema_errors("ErrorResponse", body, context.strictness)
    if errors:
        raise CheckFailure(f"status {exchange.status} body is not the error envelope: " + "; ".join(errors))


@exchange_rule(
    "errors.retry_after",
    "every 429 carries Retry-After in whole seconds (and a 503 that carries it, too)",
    ["#/components/responses/TooManyRequests"],
    conditional=True,
    any_request=True,
)
def _retry_after(exchange: Exchange, context: JudgeContext) -> None:
    if exchange.status not in (429, 503):
        raise NotApplicable
    value = exchange.headers.get("retry-after")
    if value is None:
        if exchange.status == 503:
            raise NotApplicable
        raise CheckFailure("429 without a Retry-After header")
    if not value.strip().isdigit():
        raise CheckFailure(f"Retry-After is {value!r}, not an integer number of seconds")


@exchange_rule(
    "errors.no_server_error",
    "every request gets an answer, and nothing a client sends gets a 5xx other than 503",
    ["#/components/responses/InternalError"],
    any_request=True,
)
def _no_server_error(exchange: Exchange, context: JudgeContext) -> None:
    if exchange.status is None:
        raise CheckFailure(f"no response: {exchange.transport_error}")
    if exchange.status >= 500 and exchange.status != 503:
        raise CheckFailure(f"status {exchange.status}: {exchange.excerpt(200)}")


@probe_rule(
    "errors.auth",
    "a missing or wrong key gets 401",
    ["#/components/securitySchemes/bearerAuth", "D13"],
    probe="auth",
)
def _auth(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    if not parts:
        raise NotApplicable
    for role, exchange in sorted(parts.items()):
        _expect_status(exchange, {401}, f"a request with {role.replace('_', ' ')}")


@probe_rule("errors.unknown_route", "an unknown route gets 404", ["D14"], probe="unknown_route")
def _unknown_route(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    _expect_status(_only(parts, "request"), {404}, "an unknown route")


@probe_rule(
    "errors.malformed_json",
    "a body that is not valid JSON (the docs' example with its trailing comma) gets 400",
    ["D9", "D14"],
    probe="malformed_json",
)
def _malformed(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    _expect_status(_only(parts, "request"), {400}, "the docs' example body with its trailing comma (D9)")


@probe_rule(
    "errors.invalid_parameter",
    "an invalid type or out-of-range value gets 400 whose error.param names the parameter "
    "(compat: 422, or the name in the message)",
    ["D14", "#/components/schemas/ErrorBody/properties/param"],
    probe="invalid_parameter",
)
def _invalid_parameter(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    exchange = _only(parts, "request")
    what = exchange.label.note if exchange.label else "an invalid request"
    _expect_status(exchange, _invalid_statuses(context), what)
    expected = exchange.label.expect.get("param") if exchange.label else None
    if not isinstance(expected, str):
        return
    error = error_object(exchange)
    param = error.get("param")
    # a nested path names its parameter too: "messages.0.role" or "messages[0].role" for messages
    named = isinstance(param, str) and expected in {param, re.split(r"[.\[]", param)[0], param.rsplit(".", 1)[-1]}
    if not named and context.strictness is Strictness.COMPAT:
        named = expected in str(error.get("message") or exchange.body_text)
    if not named:
        raise CheckFailure(f"{what}: the error names param {param!r}, not {expected!r}: {exchange.excerpt(200)}")


@probe_rule(
    "errors.context_overflow",
    "prompt tokens + max_tokens over the context gets 400",
    ["#/components/schemas/CompletionRequest/properties/max_tokens", "D22"],
    probe="context_overflow",
)
def _context_overflow(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    _expect_status(_only(parts, "request"), {400}, "max_tokens far beyond any context length (D22)")
