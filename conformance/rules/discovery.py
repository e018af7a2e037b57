"""Discovery rules: GET /info and the OpenAPI document served by the endpoint itself."""

from __future__ import annotations

from collections.abc import Mapping

from conformance.exchange import Exchange
from conformance.rules.common import schema_errors
from conformance.rules.registry import CheckFailure, JudgeContext, NotApplicable, probe_rule

__all__: list[str] = []


@probe_rule(
    "discovery.info",
    "GET /info, when offered, returns model_name, model_type and model_provider_name",
    ["#/paths/~1info/get", "R6"],
    probe="info",
    severity="advisory",
)
def _info(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    exchange = parts.get("request")
    if exchange is None or exchange.status == 404:
        raise NotApplicable  # R6: /info is an Azure AI Model Inference route; not offering it is allowed
    if exchange.status != 200:
        raise CheckFailure(f"GET /info gave {exchange.status}: {exchange.excerpt(200)}")
    errors = schema_errors("ModelInfo", exchange.json, context.strictness)
    if errors:
        raise CheckFailure("GET /info is not a ModelInfo: " + "; ".join(errors))


@probe_rule(
    "discovery.openapi",
    "the endpoint serves an OpenAPI document that describes the Llama API routes it serves",
    ["D30"],
    probe="openapi",
)
def _openapi(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    exchange = parts.get("document")
    if exchange is None:
        raise NotApplicable
    document = exchange.json
    if exchange.status != 200 or not isinstance(document, dict):
        raise CheckFailure(f"no OpenAPI document at /openapi.json or /swagger.json ({exchange.status})")
    version = document.get("openapi") or document.get("swagger")
    paths = document.get("paths")
    if not isinstance(version, str) or not isinstance(paths, dict):
        raise CheckFailure(f"{exchange.request.path} is not an OpenAPI document (keys {sorted(document)[:8]})")
    served = exchange.label.expect.get("paths", []) if exchange.label else []
    missing = [path for path in served if not isinstance(paths.get(path), dict) or "post" not in paths[path]]
    if missing:
        raise CheckFailure(
            f"the OpenAPI document does not describe POST {', '.join(missing)}, which the endpoint serves"
        )
