"""Streaming rules: SSE media type and framing, chunk schema, [DONE], ids, finish_reason placement, usage chunk."""

from __future__ import annotations

from typing import Any

from conformance.exchange import Exchange
from conformance.rules.common import FINISH_REASONS, schema_errors, stream_chunks
from conformance.rules.registry import CheckFailure, JudgeContext, NotApplicable, exchange_rule

__all__: list[str] = []

STREAM_EVENTS = "#/components/schemas/CompletionStreamEvent"


@exchange_rule(
    "stream.content_type",
    "a valid stream request is served as text/event-stream",
    ["#/components/schemas/CompletionRequest/properties/stream", STREAM_EVENTS],
)
def _content_type(exchange: Exchange, context: JudgeContext) -> None:
    stream_chunks(exchange)
    if exchange.content_type != "text/event-stream":
        raise CheckFailure(f"content type is {exchange.content_type!r}")


@exchange_rule("stream.events_json", "every event is `data: <json>` except the final `data: [DONE]`", [STREAM_EVENTS])
def _events_json(exchange: Exchange, context: JudgeContext) -> None:
    stream_chunks(exchange)
    for position, event in enumerate(exchange.events or []):
        if event.data != "[DONE]" and event.json is None:
            raise CheckFailure(f"event {position} is not JSON ({event.json_error}): {event.data[:120]!r}")
    if exchange.stray_lines:
        raise CheckFailure(f"lines that are not SSE fields: {exchange.stray_lines[:3]}")


@exchange_rule(
    "stream.chunk_schema",
    "every chunk validates against the spec's chunk schema",
    ["#/components/schemas/CompletionChunk", "#/components/schemas/ChatCompletionChunk"],
)
def _chunk_schema(exchange: Exchange, context: JudgeContext) -> None:
    chunks = stream_chunks(exchange)
    name = "ChatCompletionChunk" if exchange.is_chat else "CompletionChunk"
    for position, chunk in enumerate(chunks):
        errors = schema_errors(name, chunk, context.strictness)
        if errors:
            raise CheckFailure(f"chunk {position} is not a valid {name}: " + "; ".join(errors))


@exchange_rule(
    "stream.done",
    "the stream ends with exactly one [DONE] and nothing after it",
    ["#/components/schemas/StreamSentinel"],
)
def _done(exchange: Exchange, context: JudgeContext) -> None:
    stream_chunks(exchange)
    events = exchange.events or []
    done_positions = [i for i, e in enumerate(events) if e.data == "[DONE]"]
    if not done_positions:
        raise CheckFailure("the stream has no data: [DONE] event")
    if len(done_positions) > 1:
        raise CheckFailure(f"the stream has {len(done_positions)} [DONE] events")
    if done_positions[0] != len(events) - 1:
        raise CheckFailure(f"{len(events) - 1 - done_positions[0]} event(s) came after [DONE]")


@exchange_rule(
    "stream.same_id",
    "every chunk of a stream carries the same id",
    ["#/components/schemas/CompletionResponse/properties/id", STREAM_EVENTS],
)
def _same_id(exchange: Exchange, context: JudgeContext) -> None:
    ids = {chunk.get("id") for chunk in stream_chunks(exchange)}
    if len(ids) > 1:
        raise CheckFailure(f"chunks carry {len(ids)} different ids: {sorted(map(str, ids))[:4]}")


@exchange_rule(
    "stream.finish_reason",
    "a stream carries n choices; finish_reason is null in each choice's chunks except its last, which has one",
    [STREAM_EVENTS, "#/components/schemas/FinishReason"],
)
def _finish_reason(exchange: Exchange, context: JudgeContext) -> None:
    per_choice: dict[int, list[Any]] = {}
    n = exchange.request.params.get("n", 1)
    for chunk in stream_chunks(exchange, "n" if isinstance(n, int) and n > 1 else "stream"):
        for choice in chunk.get("choices") or []:
            per_choice.setdefault(choice.get("index", 0), []).append(choice.get("finish_reason"))
    if not per_choice:
        raise CheckFailure("the stream carried no choices")
    if isinstance(n, int) and len(per_choice) != n:
        raise CheckFailure(f"n={n} was requested but the stream carried choices {sorted(per_choice)}")
    for index, reasons in per_choice.items():
        if any(reason is not None for reason in reasons[:-1]):
            raise CheckFailure(f"choice {index}: a finish_reason came before its last chunk: {reasons}")
        if reasons[-1] not in FINISH_REASONS:
            raise CheckFailure(f"choice {index}: its last chunk has finish_reason {reasons[-1]!r}")


@exchange_rule(
    "stream.chat_role_first",
    "the first delta of each chat choice carries role assistant",
    ["#/components/schemas/ChatDelta/properties/role", "D7"],
)
def _role_first(exchange: Exchange, context: JudgeContext) -> None:
    if not exchange.is_chat:
        raise NotApplicable
    seen: set[int] = set()
    for chunk in stream_chunks(exchange):
        for choice in chunk.get("choices") or []:
            index = choice.get("index", 0)
            if index not in seen:
                seen.add(index)
                role = (choice.get("delta") or {}).get("role")
                if role != "assistant":
                    raise CheckFailure(f"choice {index}: first delta has role {role!r}, expected 'assistant'")


@exchange_rule(
    "stream.usage_chunk",
    "with include_usage, a usage chunk is sent, last, with empty choices",
    ["#/components/schemas/StreamOptions", "D10"],
)
def _usage_chunk(exchange: Exchange, context: JudgeContext) -> None:
    chunks = stream_chunks(exchange, "stream_options")
    with_usage = [i for i, c in enumerate(chunks) if isinstance(c.get("usage"), dict)]
    if not with_usage:
        if (exchange.request.params.get("stream_options") or {}).get("include_usage"):
            raise CheckFailure("stream_options.include_usage was requested but no chunk carried usage")
        raise NotApplicable
    if with_usage != [len(chunks) - 1]:
        raise CheckFailure(f"usage appeared in chunks {with_usage} of {len(chunks)}; expected only the last")
    if chunks[-1].get("choices"):
        raise CheckFailure("the usage chunk carries choices; D10 sends it with choices: []")
