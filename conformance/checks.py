"""Conformance checks: plain functions over a recorded exchange, each naming its rule and docs source.

A check raises `CheckFailure` with the evidence-worthy message, or `NotApplicable` when the
exchange does not exercise its rule. The same functions run in pytest, schemathesis, Locust and
offline over saved exchanges. Responses are validated against spec/openapi.yaml itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conformance.exchange import Exchange
from spec.document import Strictness, schema_validator

__all__ = [
    "RULES",
    "CheckContext",
    "CheckFailure",
    "NotApplicable",
    "Rule",
    "check",
    "run_checks",
]


class CheckFailure(AssertionError):
    """The exchange breaks the rule."""


class NotApplicable(Exception):
    """The exchange does not exercise the rule."""


@dataclass(frozen=True)
class Rule:
    rule_id: str
    group: str
    title: str
    source: str


@dataclass(frozen=True)
class CheckContext:
    """How the exchange is judged: strictness, and whether it is a chat route."""

    strictness: Strictness
    chat: bool


CheckFunction = Callable[[Exchange, CheckContext], None]
RULES: dict[str, Rule] = {}
_CHECKS: list[tuple[Rule, CheckFunction]] = []


def rule(rule_id: str, title: str, source: str) -> Rule:
    """Register a rule (for relation checks that span several exchanges)."""
    registered = Rule(rule_id, rule_id.split(".", maxsplit=1)[0], title, source)
    RULES[rule_id] = registered
    return registered


def check(rule_id: str, title: str, source: str) -> Callable[[CheckFunction], CheckFunction]:
    """Register a single-exchange check for a rule."""

    def register(function: CheckFunction) -> CheckFunction:
        _CHECKS.append((rule(rule_id, title, source), function))
        return function

    return register


def run_checks(exchange: Exchange, context: CheckContext) -> list[tuple[Rule, str | None]]:
    """Every applicable check: (rule, None) when it passed, (rule, message) when it failed."""
    results: list[tuple[Rule, str | None]] = []
    for registered, function in _CHECKS:
        try:
            function(exchange, context)
        except NotApplicable:
            continue
        except CheckFailure as failure:
            results.append((registered, str(failure)))
        else:
            results.append((registered, None))
    return results


# --- helpers --------------------------------------------------------------------------------


def _success_body(exchange: Exchange) -> dict[str, Any]:
    if exchange.status is None or not 200 <= exchange.status < 300 or exchange.is_stream:
        raise NotApplicable
    body = exchange.json
    if not isinstance(body, dict) or "choices" not in body:
        raise NotApplicable
    return body


def _stream(exchange: Exchange) -> list[dict[str, Any]]:
    if exchange.status != 200 or not exchange.request.params.get("stream"):
        raise NotApplicable
    if not exchange.is_stream:
        raise CheckFailure(f"stream: true was requested but the response is {exchange.content_type!r}, not SSE")
    return exchange.chunks()


def _choice_text(choice: dict[str, Any], chat: bool) -> str:
    if chat:
        message = choice.get("message") or choice.get("delta") or {}
        return str(message.get("content") or "")
    return str(choice.get("text") or "")


def _stop_sequences(params: dict[str, Any]) -> list[str]:
    stop = params.get("stop")
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str)]
    return []


def _errors(name: str, instance: Any, strictness: Strictness) -> list[str]:
    validator = schema_validator(name, strictness)
    found = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        found.append(f"{where}: {error.message[:200]}")
    return found[:5]


def _stream_logprob_choices(exchange: Exchange, chat: bool) -> dict[int, dict[str, Any]]:
    """Per choice index of a stream: its text and the concatenated logprobs of its chunks."""
    merged: dict[int, dict[str, Any]] = {}
    for chunk in exchange.chunks():
        for choice in chunk.get("choices") or []:
            entry = merged.setdefault(
                choice.get("index", 0),
                {"text": "", "logprobs": {"tokens": [], "token_logprobs": [], "top_logprobs": []}},
            )
            entry["text"] += _choice_text(choice, chat)
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict):
                for key in ("tokens", "token_logprobs", "top_logprobs", "text_offsets", "text_offset"):
                    if isinstance(logprobs.get(key), list):
                        entry["logprobs"].setdefault(key, []).extend(logprobs[key])
    return merged


# --- envelope -------------------------------------------------------------------------------

SOURCE_RESPONSE = "response table — seeds 000:166-173, 001:169-176, 002:165-183, 003:162-180 (chat: 000:289-296)"


@check("envelope.schema", "the response body validates against the spec's response schema", SOURCE_RESPONSE)
def _envelope_schema(exchange: Exchange, context: CheckContext) -> None:
    body = _success_body(exchange)
    name = "ChatCompletionResponse" if context.chat else "CompletionResponse"
    errors = _errors(name, body, context.strictness)
    if errors:
        raise CheckFailure(f"the body is not a valid {name}: " + "; ".join(errors))


@check(
    "envelope.object",
    "object is text_completion (completions) / chat.completion (chat)",
    "response table · object — seeds 000:172, 001:175, 002:180, 003:177",
)
def _envelope_object(exchange: Exchange, context: CheckContext) -> None:
    body = _success_body(exchange)
    expected = "chat.completion" if context.chat else "text_completion"
    if body.get("object") != expected:
        raise CheckFailure(f"object is {body.get('object')!r}, expected {expected!r}")


@check(
    "envelope.created",
    "created is a Unix time in seconds (not milliseconds, not in the far past)",
    "response table · created — seeds 000:170, 001:173, 002:174, 003:171",
)
def _envelope_created(exchange: Exchange, context: CheckContext) -> None:
    if exchange.is_stream:
        created_values = [chunk.get("created") for chunk in _stream(exchange)]
    else:
        created_values = [_success_body(exchange).get("created")]
    now = time.time()
    for created in created_values:
        if not isinstance(created, int) or isinstance(created, bool):
            raise CheckFailure(f"created is {created!r}, not an integer")
        if not now - 86_400 <= created <= now + 86_400:
            raise CheckFailure(f"created is {created}, not a Unix time in seconds near now ({int(now)})")


@check(
    "envelope.choices",
    "one choice per n (or per returned best_of), with distinct indices",
    "request table · n — seeds 000:141, 001:144, 002:121, 003:118; choices table · index",
)
def _envelope_choices(exchange: Exchange, context: CheckContext) -> None:
    body = _success_body(exchange)
    choices = body.get("choices") or []
    n = exchange.request.params.get("n", 1)
    indices = [choice.get("index") for choice in choices]
    if len(set(indices)) != len(indices):
        raise CheckFailure(f"choice indices are not distinct: {indices}")
    if isinstance(n, int) and len(choices) != n:
        raise CheckFailure(f"n={n} was requested but {len(choices)} choices came back")


@check(
    "envelope.chat_role",
    "chat choices carry message.role assistant",
    "chat response example · role — seeds 000:344, 001:347, 002:436, 003:433",
)
def _envelope_chat_role(exchange: Exchange, context: CheckContext) -> None:
    if not context.chat:
        raise NotApplicable
    body = _success_body(exchange)
    for choice in body.get("choices") or []:
        role = (choice.get("message") or {}).get("role")
        if role != "assistant":
            raise CheckFailure(f"choice {choice.get('index')} has message.role {role!r}, expected 'assistant'")


# --- usage ----------------------------------------------------------------------------------

SOURCE_USAGE = "usage table — seeds 000:193-197, 001:196-200, 002:208-217, 003:205-214"


def _usage(exchange: Exchange) -> dict[str, Any]:
    if exchange.is_stream:
        usages = [chunk["usage"] for chunk in _stream(exchange) if isinstance(chunk.get("usage"), dict)]
        if not usages:
            raise NotApplicable
        last: dict[str, Any] = usages[-1]
        return last
    body = _success_body(exchange)
    usage = body.get("usage")
    if not isinstance(usage, dict):
        raise CheckFailure(f"usage is missing or not an object: {usage!r}")
    return usage


@check("usage.integers", "usage has integer prompt_tokens, completion_tokens and total_tokens", SOURCE_USAGE)
def _usage_integers(exchange: Exchange, context: CheckContext) -> None:
    usage = _usage(exchange)
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = usage.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CheckFailure(f"usage.{key} is {value!r}, not a non-negative integer")


@check(
    "usage.total_is_sum",
    "usage.total_tokens equals prompt_tokens + completion_tokens",
    "usage table · total_tokens — seeds 000:197, 001:200, 002:217, 003:214",
)
def _usage_total(exchange: Exchange, context: CheckContext) -> None:
    usage = _usage(exchange)
    prompt, completion, total = (usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    if not all(isinstance(v, int) for v in (prompt, completion, total)):
        raise NotApplicable
    assert isinstance(prompt, int) and isinstance(completion, int)
    if total != prompt + completion:
        raise CheckFailure(f"total_tokens {total} != prompt_tokens {prompt} + completion_tokens {completion}")


@check(
    "usage.within_max_tokens",
    "completion_tokens is at most max_tokens for each returned choice",
    "request table · max_tokens — seeds 000:138, 001:141, 002:109, 003:106; D18",
)
def _usage_within_max(exchange: Exchange, context: CheckContext) -> None:
    usage = _usage(exchange)
    params = exchange.request.params
    max_tokens = params.get("max_tokens", 16)
    n = params.get("n", 1)
    completion = usage.get("completion_tokens")
    if not isinstance(completion, int) or not isinstance(max_tokens, int) or not isinstance(n, int):
        raise NotApplicable
    if completion > max_tokens * n:
        raise CheckFailure(f"completion_tokens {completion} exceeds max_tokens {max_tokens} x n {n}")


@check(
    "usage.matches_logprobs",
    "completion_tokens equals the number of tokens in the returned logprobs",
    "usage table · completion_tokens + logprobs table · tokens; D18",
)
def _usage_matches_logprobs(exchange: Exchange, context: CheckContext) -> None:
    if exchange.request.params.get("logprobs") is None:
        raise NotApplicable
    usage = _usage(exchange)
    if exchange.is_stream:
        counts = [len(c["logprobs"]["tokens"]) for c in _stream_logprob_choices(exchange, context.chat).values()]
    else:
        counts = []
        for choice in _success_body(exchange).get("choices") or []:
            logprobs = choice.get("logprobs")
            if not isinstance(logprobs, dict) or not isinstance(logprobs.get("tokens"), list):
                raise NotApplicable
            counts.append(len(logprobs["tokens"]))
    if usage.get("completion_tokens") != sum(counts):
        raise CheckFailure(
            f"usage.completion_tokens is {usage.get('completion_tokens')} but the logprobs list {sum(counts)} tokens"
        )


# --- finish_reason --------------------------------------------------------------------------

SOURCE_FINISH = "choices table · finish_reason — seeds 000:184-189, 001:187-192, 002:201-205, 003:198-202"
FINISH_REASONS = {"stop", "length", "content_filter", "content_filter_error"}


@check("finish_reason.enum", "every finished choice has a finish_reason of the documented enum", SOURCE_FINISH)
def _finish_enum(exchange: Exchange, context: CheckContext) -> None:
    body = _success_body(exchange)
    for choice in body.get("choices") or []:
        if choice.get("finish_reason") not in FINISH_REASONS:
            raise CheckFailure(f"choice {choice.get('index')} has finish_reason {choice.get('finish_reason')!r}")


@check("finish_reason.length", "finish_reason length exactly when max_tokens tokens were generated", SOURCE_FINISH)
def _finish_length(exchange: Exchange, context: CheckContext) -> None:
    params = exchange.request.params
    if params.get("n", 1) != 1 or params.get("best_of") not in (None, 1):
        raise NotApplicable
    usage = _usage(exchange)
    if exchange.is_stream:
        reasons = [c["choices"][0].get("finish_reason") for c in exchange.chunks() if c.get("choices")]
        finish = next((r for r in reasons if r is not None), None)
    else:
        finish = (_success_body(exchange).get("choices") or [{}])[0].get("finish_reason")
    completion = usage.get("completion_tokens")
    max_tokens = params.get("max_tokens", 16)
    if finish == "length" and completion != max_tokens:
        raise CheckFailure(f"finish_reason is length but {completion} tokens were generated (max_tokens {max_tokens})")
    if finish == "stop" and isinstance(completion, int) and completion > max_tokens:
        raise CheckFailure(f"finish_reason is stop after {completion} tokens, beyond max_tokens {max_tokens}")


# --- stop -----------------------------------------------------------------------------------


@check(
    "stop.excluded",
    "the returned text never contains a stop sequence",
    "request table · stop — seeds 000:143, 001:146, 002:125, 003:122",
)
def _stop_excluded(exchange: Exchange, context: CheckContext) -> None:
    stops = _stop_sequences(exchange.request.params)
    if not stops:
        raise NotApplicable
    if exchange.is_stream:
        _stream(exchange)
        texts = {i: c["text"] for i, c in _stream_logprob_choices(exchange, context.chat).items()}
    else:
        texts = {c.get("index"): _choice_text(c, context.chat) for c in _success_body(exchange).get("choices") or []}
    for index, text in texts.items():
        for stop in stops:
            if stop in text:
                raise CheckFailure(f"choice {index} text contains the stop sequence {stop!r}: {text[:200]!r}")


# --- logprobs -------------------------------------------------------------------------------

SOURCE_LOGPROBS = "logprobs table — seeds 000:199-205, 001:202-208, 002:220-233, 003:217-230"


def _logprobs_objects(exchange: Exchange, context: CheckContext) -> list[tuple[int, str, dict[str, Any]]]:
    """(index, text, logprobs) per choice, or NotApplicable when logprobs were not requested."""
    if exchange.request.params.get("logprobs") is None:
        raise NotApplicable
    if exchange.is_stream:
        _stream(exchange)
        return [(i, c["text"], c["logprobs"]) for i, c in _stream_logprob_choices(exchange, context.chat).items()]
    found = []
    for choice in _success_body(exchange).get("choices") or []:
        logprobs = choice.get("logprobs")
        if not isinstance(logprobs, dict):
            raise CheckFailure(f"logprobs was requested but choice {choice.get('index')} has logprobs {logprobs!r}")
        found.append((choice.get("index", 0), _choice_text(choice, context.chat), logprobs))
    return found


def _documented_form(logprobs: dict[str, Any], context: CheckContext) -> dict[str, Any]:
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


@check(
    "logprobs.lengths",
    "tokens, token_logprobs, top_logprobs and text_offsets have one entry per token",
    SOURCE_LOGPROBS,
)
def _logprobs_lengths(exchange: Exchange, context: CheckContext) -> None:
    for index, _, raw in _logprobs_objects(exchange, context):
        logprobs = _documented_form(raw, context)
        offsets_key = (
            "text_offsets" if "text_offsets" in logprobs or context.strictness is Strictness.DOCS else "text_offset"
        )
        lengths = {key: len(logprobs.get(key) or []) for key in ("tokens", "token_logprobs", "top_logprobs")}
        if "content" not in raw:
            lengths[offsets_key] = len(logprobs.get(offsets_key) or [])
        if len(set(lengths.values())) > 1:
            raise CheckFailure(f"choice {index}: logprobs lists differ in length: {lengths}")


@check(
    "logprobs.tokens_concatenate",
    "the logprobs tokens concatenate to the choice's text",
    "logprobs table · tokens — seeds 000:204, 001:207, 002:230, 003:227; D19",
)
def _logprobs_concatenate(exchange: Exchange, context: CheckContext) -> None:
    for index, text, raw in _logprobs_objects(exchange, context):
        tokens = _documented_form(raw, context).get("tokens") or []
        joined = "".join(t for t in tokens if isinstance(t, str))
        if joined != text:
            raise CheckFailure(f"choice {index}: tokens join to {joined[:120]!r} but the text is {text[:120]!r}")


@check(
    "logprobs.text_offsets",
    "text_offsets[i] is the offset of tokens[i] in the completion text",
    "logprobs table · text_offsets — seeds 000:202, 001:205, 002:224, 003:221; D19",
)
def _logprobs_offsets(exchange: Exchange, context: CheckContext) -> None:
    for index, _, raw in _logprobs_objects(exchange, context):
        logprobs = _documented_form(raw, context)
        tokens = logprobs.get("tokens") or []
        if "text_offsets" in logprobs:
            offsets = logprobs["text_offsets"]
            base = 0
        elif context.strictness is Strictness.COMPAT and isinstance(logprobs.get("text_offset"), list):
            offsets = logprobs["text_offset"]
            base = offsets[0] if offsets else 0  # OpenAI-style offsets may count the prompt
        elif context.strictness is Strictness.COMPAT:
            raise NotApplicable
        else:
            raise CheckFailure(f"choice {index}: logprobs has no text_offsets (keys {sorted(logprobs)})")
        position = base
        for i, (token, offset) in enumerate(zip(tokens, offsets, strict=False)):
            if offset != position:
                raise CheckFailure(f"choice {index}: text_offsets[{i}] is {offset}, expected {position}")
            position += len(token) if isinstance(token, str) else 0


@check(
    "logprobs.top_size",
    "top_logprobs holds at most logprobs+1 entries per token",
    "request table · logprobs — seeds 000:146, 001:149, 002:133, 003:130",
)
def _logprobs_top_size(exchange: Exchange, context: CheckContext) -> None:
    k = exchange.request.params.get("logprobs")
    for index, _, raw in _logprobs_objects(exchange, context):
        for i, top in enumerate(_documented_form(raw, context).get("top_logprobs") or []):
            if isinstance(top, dict) and isinstance(k, int) and len(top) > k + 1:
                raise CheckFailure(f"choice {index}: top_logprobs[{i}] has {len(top)} entries, more than {k}+1")


@check(
    "logprobs.values",
    "log probabilities are finite and at most 0, and the chosen token agrees with its top entry",
    "logprobs table · token_logprobs / top_logprobs — seeds 000:203-205; D8",
)
def _logprobs_values(exchange: Exchange, context: CheckContext) -> None:
    for index, _, raw in _logprobs_objects(exchange, context):
        logprobs = _documented_form(raw, context)
        tokens = logprobs.get("tokens") or []
        values = logprobs.get("token_logprobs") or []
        tops = logprobs.get("top_logprobs") or []
        for i, value in enumerate(values):
            if value is None:
                continue
            if not isinstance(value, int | float) or not math.isfinite(value) or value > 1e-6:
                raise CheckFailure(f"choice {index}: token_logprobs[{i}] is {value!r}, not a log probability <= 0")
            top = tops[i] if i < len(tops) else None
            if isinstance(top, dict):
                for key, entry in top.items():
                    if not isinstance(entry, int | float) or entry > 1e-6:
                        raise CheckFailure(f"choice {index}: top_logprobs[{i}][{key!r}] is {entry!r}, not <= 0")
                token = tokens[i] if i < len(tokens) else None
                if token in top and abs(top[token] - value) > 1e-3:
                    raise CheckFailure(
                        f"choice {index}: token {token!r} has logprob {value} but its top entry says {top[token]}"
                    )


# --- streaming ------------------------------------------------------------------------------

SOURCE_STREAM = "streaming tip — seeds 000:177, 001:180, 002:189, 003:185"


@check("stream.content_type", "a stream is served as text/event-stream", "request table · stream; " + SOURCE_STREAM)
def _stream_content_type(exchange: Exchange, context: CheckContext) -> None:
    _stream(exchange)
    if exchange.content_type != "text/event-stream":
        raise CheckFailure(f"content type is {exchange.content_type!r}")


@check("stream.events_json", "every event is `data: <json>` except the final `data: [DONE]`", SOURCE_STREAM)
def _stream_events_json(exchange: Exchange, context: CheckContext) -> None:
    _stream(exchange)
    for position, event in enumerate(exchange.events or []):
        if event.data != "[DONE]" and event.json is None:
            raise CheckFailure(f"event {position} is not JSON ({event.json_error}): {event.data[:120]!r}")
    if exchange.stray_lines:
        raise CheckFailure(f"lines that are not SSE fields: {exchange.stray_lines[:3]}")


@check("stream.chunk_schema", "every chunk validates against the spec's chunk schema", SOURCE_STREAM)
def _stream_chunk_schema(exchange: Exchange, context: CheckContext) -> None:
    chunks = _stream(exchange)
    name = "ChatCompletionChunk" if context.chat else "CompletionChunk"
    for position, chunk in enumerate(chunks):
        errors = _errors(name, chunk, context.strictness)
        if errors:
            raise CheckFailure(f"chunk {position} is not a valid {name}: " + "; ".join(errors))


@check("stream.done", "the stream ends with exactly one [DONE] and nothing after it", SOURCE_STREAM)
def _stream_done(exchange: Exchange, context: CheckContext) -> None:
    _stream(exchange)
    events = exchange.events or []
    done_positions = [i for i, e in enumerate(events) if e.data == "[DONE]"]
    if not done_positions:
        raise CheckFailure("the stream has no data: [DONE] event")
    if len(done_positions) > 1:
        raise CheckFailure(f"the stream has {len(done_positions)} [DONE] events")
    if done_positions[0] != len(events) - 1:
        raise CheckFailure(f"{len(events) - 1 - done_positions[0]} event(s) came after [DONE]")


@check("stream.same_id", "every chunk of a stream carries the same id", "response table · id; " + SOURCE_STREAM)
def _stream_same_id(exchange: Exchange, context: CheckContext) -> None:
    ids = {chunk.get("id") for chunk in _stream(exchange)}
    if len(ids) > 1:
        raise CheckFailure(f"chunks carry {len(ids)} different ids: {sorted(map(str, ids))[:4]}")


@check(
    "stream.finish_reason",
    "finish_reason is null in every chunk of a choice except its last, which has one",
    SOURCE_STREAM,
)
def _stream_finish_reason(exchange: Exchange, context: CheckContext) -> None:
    per_choice: dict[int, list[Any]] = {}
    for chunk in _stream(exchange):
        for choice in chunk.get("choices") or []:
            per_choice.setdefault(choice.get("index", 0), []).append(choice.get("finish_reason"))
    if not per_choice:
        raise CheckFailure("the stream carried no choices")
    n = exchange.request.params.get("n", 1)
    if isinstance(n, int) and len(per_choice) != n:
        raise CheckFailure(f"n={n} was requested but the stream carried choices {sorted(per_choice)}")
    for index, reasons in per_choice.items():
        if any(reason is not None for reason in reasons[:-1]):
            raise CheckFailure(f"choice {index}: a finish_reason came before its last chunk: {reasons}")
        if reasons[-1] not in FINISH_REASONS:
            raise CheckFailure(f"choice {index}: its last chunk has finish_reason {reasons[-1]!r}")


@check(
    "stream.chat_role_first",
    "the first delta of each chat choice carries role assistant",
    "streaming tip (message replaced by delta) — seeds 000:306, 001:309, 002:377, 003:374; D7",
)
def _stream_role_first(exchange: Exchange, context: CheckContext) -> None:
    if not context.chat:
        raise NotApplicable
    seen: set[int] = set()
    for chunk in _stream(exchange):
        for choice in chunk.get("choices") or []:
            index = choice.get("index", 0)
            if index not in seen:
                seen.add(index)
                role = (choice.get("delta") or {}).get("role")
                if role != "assistant":
                    raise CheckFailure(f"choice {index}: first delta has role {role!r}, expected 'assistant'")


@check(
    "stream.usage_chunk",
    "a usage chunk, when sent, is the last chunk and has empty choices (D10)",
    "D10 (stream_options.include_usage)",
)
def _stream_usage_chunk(exchange: Exchange, context: CheckContext) -> None:
    chunks = _stream(exchange)
    with_usage = [i for i, c in enumerate(chunks) if isinstance(c.get("usage"), dict)]
    if not with_usage:
        if (exchange.request.params.get("stream_options") or {}).get("include_usage"):
            raise CheckFailure("stream_options.include_usage was requested but no chunk carried usage")
        raise NotApplicable
    if with_usage != [len(chunks) - 1]:
        raise CheckFailure(f"usage appeared in chunks {with_usage} of {len(chunks)}; expected only the last")


# --- errors ---------------------------------------------------------------------------------


@check(
    "errors.envelope",
    "every error answer is the JSON error envelope",
    "D14; components/responses (400, 401, 404, 413, 422, 429, 500, 503)",
)
def _errors_envelope(exchange: Exchange, context: CheckContext) -> None:
    if exchange.status is None or exchange.status < 400:
        raise NotApplicable
    body = exchange.json
    errors = _errors("ErrorResponse", body, context.strictness)
    if errors:
        raise CheckFailure(f"status {exchange.status} body is not the error envelope: " + "; ".join(errors))


@check("errors.retry_after", "429 and 503 answers carry Retry-After in seconds", "components/responses/TooManyRequests")
def _errors_retry_after(exchange: Exchange, context: CheckContext) -> None:
    if exchange.status not in (429, 503):
        raise NotApplicable
    value = exchange.headers.get("retry-after")
    if value is None:
        if exchange.status == 503:
            raise NotApplicable
        raise CheckFailure("429 without a Retry-After header")
    if not value.isdigit():
        raise CheckFailure(f"Retry-After is {value!r}, not an integer number of seconds")


@check(
    "errors.no_server_error",
    "nothing a client sends gets a 5xx (server error)",
    "components/responses/InternalError: never the answer to anything a client can send",
)
def _errors_no_5xx(exchange: Exchange, context: CheckContext) -> None:
    if exchange.status is None:
        raise CheckFailure(f"no response: {exchange.transport_error}")
    if exchange.status >= 500 and exchange.status != 503:
        raise CheckFailure(f"status {exchange.status}: {exchange.excerpt(200)}")


# --- rules checked over several exchanges (by the tests in conformance/) ---------------------

rule(
    "relations.deterministic",
    "temperature 0 is deterministic: the same request gives the same text",
    "request table · temperature (0 means greedy) — seeds 000:140, 001:143, 002:117, 003:114",
)
rule("relations.stream_equals_full", "at temperature 0 the streamed text equals the non-streamed text", SOURCE_STREAM)
rule(
    "relations.stop_cuts_text",
    "with a stop sequence, the text is the greedy text cut before the stop",
    "request table · stop — seeds 000:143, 001:146, 002:125, 003:122",
)
rule(
    "relations.prompt_tokens_stable",
    "prompt_tokens is the same for the same prompt",
    "usage table · prompt_tokens — seeds 000:195, 001:198, 002:211, 003:208",
)
rule(
    "defaults.max_tokens",
    "max_tokens defaults to 16",
    "request table · max_tokens default 16 — seeds 000:138, 001:141, 002:109, 003:106",
)
rule(
    "finish_reason.length_forced",
    "with ignore_eos the completion runs to max_tokens and finish_reason is length",
    "request table · ignore_eos — seeds 000:148, 001:151, 002:141, 003:138; " + SOURCE_FINISH,
)
rule("finish_reason.stop_sequence", "a stop sequence ends the choice with finish_reason stop", SOURCE_FINISH)
rule(
    "stop_token_ids.stop",
    "stop_token_ids end generation at that token, which stays in the output unless special",
    "request table · stop_token_ids — seeds 000:150, 001:153, 002:149, 003:146",
)
rule(
    "best_of.no_stream",
    "best_of > n cannot be streamed: 400",
    "request table · best_of (cannot be streamed) — seeds 000:144, 001:147, 002:129, 003:126",
)
rule(
    "best_of.returns_n",
    "best_of returns n choices with distinct indices",
    "request table · best_of — seeds 000:144, 001:147, 002:129, 003:126; D3, D4",
)
rule(
    "beam_search.rules",
    "use_beam_search needs best_of > 1 and temperature 0 (D2); it returns n choices",
    "request table · use_beam_search — seeds 000:149, 001:152, 002:145, 003:142; D2",
)
rule(
    "errors.auth",
    "a missing or wrong key gets 401 with the error envelope",
    "digest 'Deployment kinds' auth; seeds 000:128, 001:131, 002:96, 003:93",
)
rule("errors.unknown_route", "an unknown route gets 404", "D14")
rule("errors.malformed_json", "a body that is not valid JSON (e.g. the docs' trailing comma) gets 400", "D9, D14")
rule("errors.invalid_parameter", "an invalid type or out-of-range value gets 400 naming the parameter", "D14")
rule(
    "errors.context_overflow", "prompt tokens + max_tokens over the context gets 400", "request table · max_tokens; D22"
)
rule("errors.negative_cases", "schema-invalid requests generated from the spec get 4xx, never 5xx", "D14")
rule(
    "discovery.info",
    "GET /info returns model_name, model_type and model_provider_name",
    "Azure AI Model Inference /info",
)
rule(
    "discovery.openapi",
    "the OpenAPI document can be obtained from the endpoint itself",
    "seeds 000:118, 001:121, 002:88, 003:85",
)
rule("positive.schema_cases", "valid requests generated from the spec get 2xx and valid responses", "whole spec")
rule("properties.invariants", "generated prompts and parameter combinations keep every invariant", "whole spec")
rule(
    "rate_limit.headers",
    "a rate-limited deployment reports x-ratelimit-* headers and 429 + Retry-After",
    "digest 'Deployment kinds' rate limits; D1",
)
rule(
    "content_safety.prompt",
    "a harmful prompt is refused with 400 content_filter (serverless profiles)",
    "digest 'Deployment kinds' content safety; finish_reason content_filter",
)
