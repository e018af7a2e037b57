"""Envelope rules: the response body's schema, object, created, choices and chat role."""

from __future__ import annotations

from conformance.exchange import Exchange
from conformance.rules.common import schema_errors, stream_chunks, success_body
from conformance.rules.registry import CheckFailure, JudgeContext, NotApplicable, exchange_rule

__all__: list[str] = []

RESPONSES = ("#/components/schemas/CompletionResponse", "#/components/schemas/ChatCompletionResponse")


@exchange_rule("envelope.schema", "the response body validates against the spec's response schema", RESPONSES)
def _schema(exchange: Exchange, context: JudgeContext) -> None:
    body = success_body(exchange)
    name = "ChatCompletionResponse" if exchange.is_chat else "CompletionResponse"
    errors = schema_errors(name, body, context.strictness)
    if errors:
        raise CheckFailure(f"the body is not a valid {name}: " + "; ".join(errors))


@exchange_rule(
    "envelope.object",
    "object is text_completion (completions) / chat.completion (chat)",
    ["#/components/schemas/CompletionResponse/properties/object"],
)
def _object(exchange: Exchange, context: JudgeContext) -> None:
    body = success_body(exchange)
    expected = "chat.completion" if exchange.is_chat else "text_completion"
    if body.get("object") != expected:
        raise CheckFailure(f"object is {body.get('object')!r}, expected {expected!r}")


@exchange_rule(
    "envelope.created",
    "created is a non-negative integer Unix time in seconds, within a day of when the request was sent "
    "(when that is known: the docs' own example has created 217877)",
    ["#/components/schemas/CompletionResponse/properties/created"],
)
def _created(exchange: Exchange, context: JudgeContext) -> None:
    if exchange.is_stream:
        created_values = [chunk.get("created") for chunk in stream_chunks(exchange)]
    else:
        created_values = [success_body(exchange).get("created")]
    sent = exchange.sent_at_unix
    for created in created_values:
        if not isinstance(created, int) or isinstance(created, bool):
            raise CheckFailure(f"created is {created!r}, not an integer")
        if sent is not None and not sent - 86_400 <= created <= sent + 86_400:
            raise CheckFailure(f"created is {created}, not a Unix time in seconds near the request ({int(sent)})")
        if created < 0:
            raise CheckFailure(f"created is {created}, before the Unix epoch")


@exchange_rule(
    "envelope.choices",
    "a valid request with n is served with exactly n choices, with distinct indices",
    ["#/components/schemas/CompletionRequest/properties/n", "#/components/schemas/CompletionChoice/properties/index"],
)
def _choices(exchange: Exchange, context: JudgeContext) -> None:
    body = success_body(exchange, "n" if "n" in exchange.request.params else None)
    choices = body.get("choices") or []
    n = exchange.request.params.get("n", 1)
    indices = [choice.get("index") for choice in choices]
    if len(set(indices)) != len(indices):
        raise CheckFailure(f"choice indices are not distinct: {indices}")
    if isinstance(n, int) and len(choices) != n:
        raise CheckFailure(f"n={n} was requested but {len(choices)} choices came back")


@exchange_rule(
    "envelope.chat_role",
    "chat choices carry message.role assistant",
    ["#/components/schemas/AssistantMessage/properties/role"],
)
def _chat_role(exchange: Exchange, context: JudgeContext) -> None:
    if not exchange.is_chat:
        raise NotApplicable
    body = success_body(exchange)
    for choice in body.get("choices") or []:
        role = (choice.get("message") or {}).get("role")
        if role != "assistant":
            raise CheckFailure(f"choice {choice.get('index')} has message.role {role!r}, expected 'assistant'")
