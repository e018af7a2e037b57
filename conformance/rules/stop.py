"""Stop rules on a single exchange: the returned text never contains a stop sequence."""

from __future__ import annotations

from conformance.exchange import Exchange
from conformance.rules.common import choice_texts, refused_valid_request, stop_sequences
from conformance.rules.registry import CheckFailure, JudgeContext, NotApplicable, exchange_rule

__all__: list[str] = []


@exchange_rule(
    "stop.excluded",
    "a valid request with stop (string or list) is served, and no returned text contains a stop sequence",
    ["#/components/schemas/StopSequences"],
)
def _excluded(exchange: Exchange, context: JudgeContext) -> None:
    stops = stop_sequences(exchange.request.params)
    if not stops:
        raise NotApplicable
    refused_valid_request(exchange, "stop")
    for index, text in choice_texts(exchange).items():
        for stop in stops:
            if stop in text:
                raise CheckFailure(f"choice {index} text contains the stop sequence {stop!r}: {text[:200]!r}")
