"""Sampling features the docs promise: the max_tokens default, presence_penalty / top_p / seed accepted,
stop_token_ids, best_of and beam search."""

from __future__ import annotations

from collections.abc import Mapping

from conformance.exchange import Exchange
from conformance.rules.common import error_object, success_body
from conformance.rules.registry import CheckFailure, JudgeContext, NotApplicable, probe_rule
from conformance.rules.relations import first_text, served

__all__: list[str] = []


def _refused_naming(exchange: Exchange | None, param: str, what: str) -> None:
    """A 400 whose error names `param` (any param accepted when the body names none: an honest variant)."""
    if exchange is None:
        raise NotApplicable
    if exchange.status != 400:
        raise CheckFailure(f"{what}: expected status 400, got {exchange.status}: {exchange.excerpt(200)}")
    named = error_object(exchange).get("param")
    if isinstance(named, str) and named and named != param and param not in named:
        raise CheckFailure(f"{what}: the 400 names param {named!r}, not {param!r}")


@probe_rule(
    "defaults.max_tokens",
    "max_tokens defaults to 16",
    ["#/components/schemas/CompletionRequest/properties/max_tokens"],
    probe="default_max_tokens",
)
def _default_max_tokens(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    (exchange,) = served(parts, "request")
    completion = (success_body(exchange).get("usage") or {}).get("completion_tokens")
    if completion != 16:
        raise CheckFailure(f"without max_tokens (and with ignore_eos) {completion} tokens were generated, not 16")


@probe_rule(
    "sampling.accepted",
    "a valid request using presence_penalty, top_p or seed is served",
    [
        "#/components/schemas/CompletionRequest/properties/presence_penalty",
        "#/components/schemas/CompletionRequest/properties/top_p",
        "#/components/schemas/CompletionRequest/properties/seed",
    ],
    probe="sampling",
)
def _accepted(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    served(parts, *sorted(parts))


def _stopped_early(exchange: Exchange) -> bool:
    body = success_body(exchange)
    completion = (body.get("usage") or {}).get("completion_tokens")
    finish = (body.get("choices") or [{}])[0].get("finish_reason")
    max_tokens = exchange.request.params.get("max_tokens")
    return finish == "stop" and isinstance(completion, int) and isinstance(max_tokens, int) and completion < max_tokens


@probe_rule(
    "stop_token_ids.stop",
    "a window of stop_token_ids (64 ids, at most 8 windows from id 0) ends the greedy text early, "
    "with finish_reason stop, at a prefix of it",
    ["#/components/schemas/CompletionRequest/properties/stop_token_ids"],
    probe="stop_token_ids",
)
def _stop_token_ids(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    windows = sorted((role for role in parts if role.startswith("window_")), key=lambda r: int(r.split("_")[1]))
    (greedy,) = served(parts, "greedy")
    tried = served(parts, *windows)
    stopped = next((exchange for exchange in tried if _stopped_early(exchange)), None)
    if stopped is None:
        ids = [i for exchange in tried for i in exchange.request.params.get("stop_token_ids") or []]
        span = f"{min(ids)}..{max(ids)}" if ids else "none"
        raise CheckFailure(
            f"no stop_token_ids window (ids {span}, which hold the commonest pieces of any vocabulary) ended "
            f"the greedy text before max_tokens: the parameter looks ignored"
        )
    text, cut = first_text(greedy), first_text(stopped)
    if not text.startswith(cut):
        raise CheckFailure(f"the text stopped by a token id, {cut!r}, is not a prefix of the greedy text {text!r}")
    greedy_tokens = (success_body(greedy).get("usage") or {}).get("completion_tokens")
    completion = (success_body(stopped).get("usage") or {}).get("completion_tokens")
    if isinstance(greedy_tokens, int) and isinstance(completion, int) and completion > greedy_tokens:
        raise CheckFailure(f"stopping at a token id gave {completion} tokens, more than the greedy {greedy_tokens}")


@probe_rule(
    "best_of.returns_n",
    "best_of 3 with n 1 is served with one choice; best_of below n gets 400 naming best_of",
    ["#/components/schemas/CompletionRequest/properties/best_of", "D3", "D4"],
    probe="best_of",
)
def _best_of(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    (chosen,) = served(parts, "chosen")
    choices = success_body(chosen).get("choices") or []
    if len(choices) != 1:
        raise CheckFailure(f"best_of 3 with n 1 gave {len(choices)} choices")
    _refused_naming(parts.get("below_n"), "best_of", "best_of smaller than n (D3)")


@probe_rule(
    "best_of.no_stream",
    "best_of > n cannot be streamed: 400 naming best_of",
    ["#/components/schemas/CompletionRequest/properties/best_of", "D3"],
    probe="best_of",
)
def _best_of_no_stream(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    _refused_naming(parts.get("streamed"), "best_of", "best_of > n with stream")


@probe_rule(
    "beam_search.rules",
    "beam search with best_of > 1 at temperature 0 is served with n choices; with best_of 1 it gets 400 "
    "(temperature > 0: either, D2)",
    ["#/components/schemas/CompletionRequest/properties/use_beam_search", "D2", "R3"],
    probe="beam_search",
)
def _beam_search(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    (beam,) = served(parts, "documented")
    n = beam.request.params.get("n", 1)
    choices = success_body(beam).get("choices") or []
    if len(choices) != n:
        raise CheckFailure(
            f"beam search (best_of {beam.request.params.get('best_of')}, n {n}) gave {len(choices)} choices"
        )
    narrow = parts.get("best_of_1")
    if narrow is not None and narrow.status != 400:
        raise CheckFailure(f"beam search with best_of 1: expected status 400, got {narrow.status}")
    hot = parts.get("hot")
    # R3 (D2): a server that also runs beam search at temperature > 0 is judged only on the documented combination
    if hot is not None and hot.status not in (200, 400):
        raise CheckFailure(f"beam search with temperature > 0: expected 400 or 200, got {hot.status}")
