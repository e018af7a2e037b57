"""Usage rules: integer counts, their sum, the max_tokens bound, agreement with logprobs."""

from __future__ import annotations

from conformance.exchange import Exchange
from conformance.rules.common import stream_choices, success_body, usage_of
from conformance.rules.registry import CheckFailure, JudgeContext, NotApplicable, exchange_rule
from spec.document import Strictness

__all__: list[str] = []


@exchange_rule(
    "usage.integers",
    "usage has non-negative integer prompt_tokens, completion_tokens and total_tokens",
    ["#/components/schemas/Usage"],
)
def _integers(exchange: Exchange, context: JudgeContext) -> None:
    usage = usage_of(exchange)
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = usage.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CheckFailure(f"usage.{key} is {value!r}, not a non-negative integer")


@exchange_rule(
    "usage.total_is_sum",
    "usage.total_tokens equals prompt_tokens + completion_tokens",
    ["#/components/schemas/Usage/properties/total_tokens"],
)
def _total(exchange: Exchange, context: JudgeContext) -> None:
    usage = usage_of(exchange)
    prompt, completion, total = (usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    if not isinstance(prompt, int) or not isinstance(completion, int) or not isinstance(total, int):
        raise NotApplicable
    if total != prompt + completion:
        raise CheckFailure(f"total_tokens {total} != prompt_tokens {prompt} + completion_tokens {completion}")


@exchange_rule(
    "usage.within_max_tokens",
    "completion_tokens is at most max_tokens (default 16) times n",
    ["#/components/schemas/CompletionRequest/properties/max_tokens", "D18"],
)
def _within_max(exchange: Exchange, context: JudgeContext) -> None:
    usage = usage_of(exchange)
    params = exchange.request.params
    max_tokens = params.get("max_tokens", 16)
    n = params.get("n", 1)
    completion = usage.get("completion_tokens")
    if not isinstance(completion, int) or not isinstance(max_tokens, int) or not isinstance(n, int):
        raise NotApplicable
    if completion > max_tokens * n:
        raise CheckFailure(f"completion_tokens {completion} exceeds max_tokens {max_tokens} x n {n}")


@exchange_rule(
    "usage.matches_logprobs",
    "completion_tokens equals the number of logprobs tokens (compat: or one more per choice stopped by a stop string)",
    ["#/components/schemas/Usage/properties/completion_tokens", "D18", "R4"],
)
def _matches_logprobs(exchange: Exchange, context: JudgeContext) -> None:
    if exchange.request.params.get("logprobs") is None:
        raise NotApplicable
    usage = usage_of(exchange)
    stopped = 0
    if exchange.is_stream:
        counts = [len(c["logprobs"]["tokens"]) for c in stream_choices(exchange).values()]
        reasons = [choice.get("finish_reason") for chunk in exchange.chunks() for choice in chunk.get("choices") or []]
        stopped = reasons.count("stop")
    else:
        counts = []
        for choice in success_body(exchange).get("choices") or []:
            logprobs = choice.get("logprobs")
            if not isinstance(logprobs, dict) or not isinstance(logprobs.get("tokens"), list):
                raise NotApplicable
            counts.append(len(logprobs["tokens"]))
            stopped += choice.get("finish_reason") == "stop"
    completion = usage.get("completion_tokens")
    allowed = {sum(counts)}
    if context.strictness is Strictness.COMPAT and exchange.request.params.get("stop"):
        # R4: a server may bill the token that completed the stop string although its text is cut away
        allowed |= {sum(counts) + extra for extra in range(1, stopped + 1)}
    if completion not in allowed:
        raise CheckFailure(f"usage.completion_tokens is {completion} but the logprobs list {sum(counts)} tokens")
