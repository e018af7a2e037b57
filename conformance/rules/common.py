"""What several rule groups read out of an exchange: the success body, the stream's chunks, texts, logprobs.

These helpers decide when an exchange exercises a feature: a valid request (by its probe label) that
uses a documented feature and gets a refusal fails that feature's rules, instead of passing them as
"not applicable".
"""

from __future__ import annotations

from typing import Any

from conformance.exchange import BUSY_STATUSES, Exchange
from conformance.rules.registry import CheckFailure, JudgeContext, NotApplicable
from spec.document import Strictness, schema_validator

__all__ = [
    "FINISH_REASONS",
    "choice_text",
    "choice_texts",
    "documented_logprobs",
    "error_object",
    "logprobs_objects",
    "refused_valid_request",
    "schema_errors",
    "stop_sequences",
    "stream_choices",
    "stream_chunks",
    "success_body",
    "usage_of",
]

FINISH_REASONS = frozenset({"stop", "length", "content_filter", "content_filter_error"})


def refused_valid_request(exchange: Exchange, feature: str, *, whole_request: bool = False) -> None:
    """Fail when the suite sent a valid request using `feature` and it was not answered with success.

    A request that demands some features only (its label's `demands`) fails the rules of those: a server
    that streams but refuses logprobs in a stream fails the logprobs rules, not every stream rule.
    `whole_request`: `feature` describes the request, the refusal is the caller's rule's business.
    """
    if not exchange.is_valid_request or exchange.status in BUSY_STATUSES:
        return
    demands = exchange.label.demands if exchange.label else []
    if demands and not whole_request and feature not in demands:
        return
    if exchange.status is None or not 200 <= exchange.status < 300:
        note = f" ({exchange.label.note})" if exchange.label and exchange.label.note else ""
        got = f"status {exchange.status}" if exchange.status is not None else exchange.transport_error
        raise CheckFailure(f"a valid request using {feature}{note} was not served: {got}: {exchange.excerpt(200)}")


def success_body(exchange: Exchange, feature: str | None = None) -> dict[str, Any]:
    """The JSON body of a successful non-streamed completion."""
    if feature is not None:
        refused_valid_request(exchange, feature)
    if exchange.status is None or not 200 <= exchange.status < 300 or exchange.is_stream:
        raise NotApplicable
    body = exchange.json
    if not isinstance(body, dict) or "choices" not in body:
        raise NotApplicable
    return body


def stream_chunks(exchange: Exchange, feature: str = "stream") -> list[dict[str, Any]]:
    """The chunks of a stream the request asked for; a refusal fails `feature`'s rules, a non-SSE answer fails."""
    if not exchange.request.params.get("stream"):
        raise NotApplicable
    refused_valid_request(exchange, feature)
    if exchange.status != 200:
        raise NotApplicable
    if not exchange.is_stream:
        raise CheckFailure(f"stream: true was requested but the response is {exchange.content_type!r}, not SSE")
    if exchange.transport_error:
        raise CheckFailure(f"the stream did not finish: {exchange.transport_error}")
    return exchange.chunks()


def choice_text(choice: dict[str, Any], chat: bool) -> str:
    if chat:
        message = choice.get("message") or choice.get("delta") or {}
        return str(message.get("content") or "")
    return str(choice.get("text") or "")


def stop_sequences(params: dict[str, Any]) -> list[str]:
    stop = params.get("stop")
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str)]
    return []


def schema_errors(name: str, instance: Any, strictness: Strictness) -> list[str]:
    """The first few ways `instance` breaks `components/schemas/<name>` of spec/openapi.yaml."""
    validator = schema_validator(name, strictness)
    found = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        found.append(f"{where}: {error.message[:200]}")
    return found[:5]


def stream_choices(exchange: Exchange) -> dict[int, dict[str, Any]]:
    """Per choice index of a stream: its text and the concatenated logprobs of its chunks."""
    merged: dict[int, dict[str, Any]] = {}
    for chunk in exchange.chunks():
        for choice in chunk.get("choices") or []:
            entry = merged.setdefault(
                choice.get("index", 0),
                {"text": "", "logprobs": {"tokens": [], "token_logprobs": [], "top_logprobs": []}},
            )
            entry["text"] += choice_text(choice, exchange.is_chat)
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict):
                for key in ("tokens", "token_logprobs", "top_logprobs", "text_offsets", "text_offset"):
                    if isinstance(logprobs.get(key), list):
                        entry["logprobs"].setdefault(key, []).extend(logprobs[key])
    return merged


def choice_texts(exchange: Exchange) -> dict[int, str]:
    """The text of every choice, streamed or not."""
    if exchange.is_stream:
        stream_chunks(exchange)
        return {index: entry["text"] for index, entry in stream_choices(exchange).items()}
    body = success_body(exchange)
    return {c.get("index", 0): choice_text(c, exchange.is_chat) for c in body.get("choices") or []}


def usage_of(exchange: Exchange) -> dict[str, Any]:
    """The usage object of a response (the last usage chunk of a stream)."""
    if exchange.is_stream:
        usages = [chunk["usage"] for chunk in stream_chunks(exchange) if isinstance(chunk.get("usage"), dict)]
        if not usages:
            raise NotApplicable
        last: dict[str, Any] = usages[-1]
        return last
    body = success_body(exchange)
    usage = body.get("usage")
    if not isinstance(usage, dict):
        raise CheckFailure(f"usage is missing or not an object: {usage!r}")
    return usage


def logprobs_objects(exchange: Exchange) -> list[tuple[int, str, dict[str, Any]]]:
    """(index, text, logprobs) per choice, or NotApplicable when logprobs were not requested."""
    if exchange.request.params.get("logprobs") is None:
        raise NotApplicable
    if exchange.is_stream or exchange.request.params.get("stream"):
        stream_chunks(exchange, "logprobs")
        return [(i, c["text"], c["logprobs"]) for i, c in stream_choices(exchange).items()]
    found = []
    for choice in success_body(exchange, "logprobs").get("choices") or []:
        logprobs = choice.get("logprobs")
        if not isinstance(logprobs, dict):
            raise CheckFailure(f"logprobs was requested but choice {choice.get('index')} has logprobs {logprobs!r}")
        found.append((choice.get("index", 0), choice_text(choice, exchange.is_chat), logprobs))
    return found


def documented_logprobs(logprobs: dict[str, Any], context: JudgeContext) -> dict[str, Any]:
    """The logprobs object in the documented shape (compat: OpenAI's chat form translated, D19)."""
    if "tokens" in logprobs:
        return logprobs
    if context.strictness is Strictness.COMPAT and isinstance(logprobs.get("content"), list):
        content = logprobs["content"]
        return {
            "tokens": [e.get("token") for e in content],
            "token_logprobs": [e.get("logprob") for e in content],
            "top_logprobs": [{t.get("token"): t.get("logprob") for t in e.get("top_logprobs") or []} for e in content],
        }
    raise CheckFailure(f"logprobs has no 'tokens' list: keys {sorted(logprobs)}")


def error_object(exchange: Exchange) -> dict[str, Any]:
    """The `error` object of an error answer ({} when the body has none)."""
    body = exchange.json
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}
