"""Rules over generated requests: valid ones from the spec (schemathesis) and from hypothesis are served,
schema-invalid ones are refused with a 4xx."""

from __future__ import annotations

from collections.abc import Mapping

from conformance.exchange import Exchange
from conformance.rules.registry import CheckFailure, JudgeContext, NotApplicable, probe_rule
from conformance.rules.relations import served

__all__: list[str] = []


@probe_rule(
    "positive.schema_cases",
    "valid requests generated from the spec are served (their responses meet every exchange rule)",
    ["#/components/schemas/CompletionRequest", "#/components/schemas/ChatCompletionRequest"],
    probe="generated_valid",
)
def _positive(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    served(parts, "request")


@probe_rule(
    "errors.negative_cases",
    "schema-invalid requests generated from the spec (never past the bounds D16 and D23 set) get a 4xx",
    ["D14", "D16", "R2"],
    probe="generated_invalid",
)
def _negative(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    exchange = parts.get("request")
    if exchange is None:
        raise NotApplicable
    if exchange.status is None or not 400 <= exchange.status < 500:
        raise CheckFailure(f"a schema-invalid request got {exchange.status}, not a 4xx: {exchange.excerpt(200)}")


@probe_rule(
    "properties.invariants",
    "generated prompts and parameter combinations are served (their responses meet every exchange rule)",
    ["#/components/schemas/CompletionRequest"],
    probe="property",
)
def _property(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    exchange = parts.get("request")
    if exchange is None:
        raise NotApplicable
    if exchange.status is None or not 200 <= exchange.status < 300:
        if exchange.status in (429, 503):
            raise NotApplicable
        raise CheckFailure(f"status {exchange.status} for a valid generated request: {exchange.excerpt(200)}")
