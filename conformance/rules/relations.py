"""Relations between exchanges: greedy determinism, stable prompt counts, unique ids, stream == non-stream,
and a stop sequence cutting the greedy text."""

from __future__ import annotations

from collections.abc import Mapping

from conformance.exchange import Exchange
from conformance.rules.common import choice_texts, refused_valid_request, success_body
from conformance.rules.registry import CheckFailure, JudgeContext, NotApplicable, probe_rule

__all__ = ["first_text", "served"]


def served(parts: Mapping[str, Exchange], *roles: str) -> list[Exchange]:
    """The exchanges of the roles, each a valid request that must have been served (else the rule fails)."""
    found = []
    for role in roles:
        exchange = parts.get(role)
        if exchange is None:
            raise NotApplicable
        what = "it" if role == "request" else f"the {role.replace('_', ' ')} request"
        refused_valid_request(exchange, what, whole_request=True)
        if exchange.status is None or not 200 <= exchange.status < 300:
            raise NotApplicable  # busy (429/503) after retries: no evidence either way
        found.append(exchange)
    return found


def first_text(exchange: Exchange) -> str:
    texts = choice_texts(exchange)
    if 0 not in texts:
        raise CheckFailure(f"the response has no choice 0: {exchange.excerpt(200)}")
    return texts[0]


@probe_rule(
    "relations.deterministic",
    "temperature 0 is deterministic: a shorter max_tokens gives a prefix of the same greedy text",
    ["#/components/schemas/CompletionRequest/properties/temperature"],
    probe="greedy_pair",
)
def _deterministic(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    long, short = served(parts, "long", "short")
    text_long, text_short = first_text(long), first_text(short)
    if not text_long.startswith(text_short):
        raise CheckFailure(f"greedy texts disagree: {text_long!r} vs (shorter) {text_short!r}")


@probe_rule(
    "relations.prompt_tokens_stable",
    "prompt_tokens is the same for the same prompt",
    ["#/components/schemas/Usage/properties/prompt_tokens"],
    probe="greedy_pair",
)
def _prompt_tokens(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    long, short = served(parts, "long", "short")
    counts = [(success_body(e).get("usage") or {}).get("prompt_tokens") for e in (long, short)]
    if counts[0] != counts[1]:
        raise CheckFailure(f"the same prompt counted {counts[0]} then {counts[1]} tokens")


@probe_rule(
    "relations.unique_ids",
    "two responses never carry the same id",
    ["#/components/schemas/CompletionResponse/properties/id"],
    probe="greedy_pair",
)
def _unique_ids(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    long, short = served(parts, "long", "short")
    ids = [success_body(e).get("id") for e in (long, short)]
    if ids[0] == ids[1]:
        raise CheckFailure(f"two responses carry the same id {ids[0]!r}")


@probe_rule(
    "relations.stream_equals_full",
    "at temperature 0 the streamed text equals the non-streamed text",
    ["#/components/schemas/CompletionStreamEvent"],
    probe="stream_vs_full",
)
def _stream_equals_full(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    full, streamed = served(parts, "full", "streamed")
    expected, got = first_text(full), first_text(streamed)
    if got != expected:
        raise CheckFailure(f"streamed text {got!r} differs from the non-streamed {expected!r}")


@probe_rule(
    "relations.stop_cuts_text",
    "with a stop sequence (string or list), the text is the greedy text cut before the stop",
    ["#/components/schemas/StopSequences"],
    probe="stop_cut",
)
def _stop_cuts(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    greedy, cut = served(parts, "greedy", "cut")
    stop = cut.label.expect.get("stop") if cut.label else None
    if not isinstance(stop, str):
        raise NotApplicable
    text = first_text(greedy)
    if stop not in text:
        raise NotApplicable
    expected, got = text[: text.index(stop)], first_text(cut)
    if got != expected:
        raise CheckFailure(f"stop {stop!r}: expected the greedy text cut before it, {expected!r}, got {got!r}")
