"""finish_reason rules: the documented enum, `length` exactly when max_tokens ran out (or ignore_eos forced it),
`stop` when a stop sequence ended the text."""

from __future__ import annotations

from collections.abc import Mapping

from conformance.exchange import Exchange
from conformance.rules.common import FINISH_REASONS, success_body, usage_of
from conformance.rules.registry import CheckFailure, JudgeContext, NotApplicable, exchange_rule, probe_rule
from conformance.rules.relations import first_text, served

__all__: list[str] = []


@exchange_rule(
    "finish_reason.enum",
    "every choice of a response has a finish_reason of the documented enum",
    ["#/components/schemas/FinishReason"],
)
def _enum(exchange: Exchange, context: JudgeContext) -> None:
    body = success_body(exchange)
    for choice in body.get("choices") or []:
        if choice.get("finish_reason") not in FINISH_REASONS:
            raise CheckFailure(f"choice {choice.get('index')} has finish_reason {choice.get('finish_reason')!r}")


@exchange_rule(
    "finish_reason.length",
    "with n 1, finish_reason length means exactly max_tokens tokens, and stop means no more than max_tokens",
    ["#/components/schemas/FinishReason"],
)
def _length(exchange: Exchange, context: JudgeContext) -> None:
    params = exchange.request.params
    if params.get("n", 1) != 1 or params.get("best_of") not in (None, 1):
        raise NotApplicable
    usage = usage_of(exchange)
    if exchange.is_stream:
        reasons = [c["choices"][0].get("finish_reason") for c in exchange.chunks() if c.get("choices")]
        finish = next((r for r in reasons if r is not None), None)
    else:
        finish = (success_body(exchange).get("choices") or [{}])[0].get("finish_reason")
    completion = usage.get("completion_tokens")
    max_tokens = params.get("max_tokens", 16)
    if finish == "length" and completion != max_tokens:
        raise CheckFailure(f"finish_reason is length but {completion} tokens were generated (max_tokens {max_tokens})")
    if finish == "stop" and isinstance(completion, int) and isinstance(max_tokens, int) and completion > max_tokens:
        raise CheckFailure(f"finish_reason is stop after {completion} tokens, beyond max_tokens {max_tokens}")


@probe_rule(
    "finish_reason.length_forced",
    "with ignore_eos the completion runs to max_tokens and finish_reason is length",
    ["#/components/schemas/CompletionRequest/properties/ignore_eos", "#/components/schemas/FinishReason"],
    probe="ignore_eos",
)
def _length_forced(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    (exchange,) = served(parts, "request")
    body = success_body(exchange)
    max_tokens = exchange.request.params.get("max_tokens")
    completion = (body.get("usage") or {}).get("completion_tokens")
    finish = (body.get("choices") or [{}])[0].get("finish_reason")
    if finish != "length" or completion != max_tokens:
        raise CheckFailure(
            f"ignore_eos with max_tokens {max_tokens} gave finish_reason {finish!r} after {completion} tokens"
        )


@probe_rule(
    "finish_reason.stop_sequence",
    "a stop sequence that ends the text ends the choice with finish_reason stop",
    ["#/components/schemas/FinishReason", "#/components/schemas/StopSequences"],
    probe="stop_cut",
)
def _stop_sequence(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    greedy, cut = served(parts, "greedy", "cut")
    stop = cut.label.expect.get("stop") if cut.label else None
    if not isinstance(stop, str) or stop not in first_text(greedy):
        raise NotApplicable
    finish = (success_body(cut).get("choices") or [{}])[0].get("finish_reason")
    if finish != "stop":
        raise CheckFailure(f"the stop sequence {stop!r} ended the text but finish_reason is {finish!r}")
