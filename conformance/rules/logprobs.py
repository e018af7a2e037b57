"""logprobs rules: list lengths, tokens joining to the text, text_offsets, top_logprobs size and values."""

from __future__ import annotations

import math

from conformance.exchange import Exchange
from conformance.rules.common import documented_logprobs, logprobs_objects
from conformance.rules.registry import CheckFailure, JudgeContext, NotApplicable, exchange_rule
from spec.document import Strictness

__all__: list[str] = []


@exchange_rule(
    "logprobs.lengths",
    "a valid request with logprobs is served, and tokens, token_logprobs, top_logprobs, text_offsets "
    "have one entry per token",
    ["#/components/schemas/Logprobs"],
)
def _lengths(exchange: Exchange, context: JudgeContext) -> None:
    for index, _, raw in logprobs_objects(exchange):
        logprobs = documented_logprobs(raw, context)
        offsets_key = (
            "text_offsets" if "text_offsets" in logprobs or context.strictness is Strictness.DOCS else "text_offset"
        )
        lengths = {key: len(logprobs.get(key) or []) for key in ("tokens", "token_logprobs", "top_logprobs")}
        if "content" not in raw:
            lengths[offsets_key] = len(logprobs.get(offsets_key) or [])
        if len(set(lengths.values())) > 1:
            raise CheckFailure(f"choice {index}: logprobs lists differ in length: {lengths}")


@exchange_rule(
    "logprobs.tokens_concatenate",
    "the logprobs tokens join to the choice's text (compat: or to the text plus the token that completed a stop)",
    ["#/components/schemas/Logprobs/properties/tokens", "D19", "R4"],
)
def _concatenate(exchange: Exchange, context: JudgeContext) -> None:
    for index, text, raw in logprobs_objects(exchange):
        tokens = documented_logprobs(raw, context).get("tokens") or []
        joined = "".join(t for t in tokens if isinstance(t, str))
        if joined == text:
            continue
        if context.strictness is Strictness.COMPAT and exchange.request.params.get("stop") and tokens:
            without_last = "".join(t for t in tokens[:-1] if isinstance(t, str))
            if joined.startswith(text) and without_last == text[: len(without_last)] and len(without_last) <= len(text):
                continue  # R4: the token that completed the stop string is listed though its text is cut
        raise CheckFailure(f"choice {index}: tokens join to {joined[:120]!r} but the text is {text[:120]!r}")


@exchange_rule(
    "logprobs.text_offsets",
    "text_offsets[i] is the offset of tokens[i] in the completion text",
    ["#/components/schemas/Logprobs/properties/text_offsets", "D19"],
)
def _offsets(exchange: Exchange, context: JudgeContext) -> None:
    for index, _, raw in logprobs_objects(exchange):
        logprobs = documented_logprobs(raw, context)
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


@exchange_rule(
    "logprobs.top_size",
    "top_logprobs holds at most logprobs+1 entries per token",
    ["#/components/schemas/CompletionRequest/properties/logprobs"],
)
def _top_size(exchange: Exchange, context: JudgeContext) -> None:
    k = exchange.request.params.get("logprobs")
    for index, _, raw in logprobs_objects(exchange):
        for i, top in enumerate(documented_logprobs(raw, context).get("top_logprobs") or []):
            if isinstance(top, dict) and isinstance(k, int) and len(top) > k + 1:
                raise CheckFailure(f"choice {index}: top_logprobs[{i}] has {len(top)} entries, more than {k}+1")


@exchange_rule(
    "logprobs.values",
    "log probabilities are finite and at most 0, and the chosen token agrees with its top entry",
    ["#/components/schemas/Logprobs/properties/token_logprobs", "D8"],
)
def _values(exchange: Exchange, context: JudgeContext) -> None:
    for index, _, raw in logprobs_objects(exchange):
        logprobs = documented_logprobs(raw, context)
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
