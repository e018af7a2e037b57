"""Discovery: GET /info and the OpenAPI document served by the endpoint itself."""

from __future__ import annotations

from conformance.exchange import EndpointClient
from conformance.plugin import Verifier
from spec.document import schema_validator


def test_info(client: EndpointClient, verify: Verifier) -> None:
    exchange = verify.checks(client.get("/info"), None)
    errors = [e.message for e in schema_validator("ModelInfo").iter_errors(exchange.json)]
    verify.rule(
        "discovery.info",
        exchange.status == 200 and not errors,
        f"GET /info gave {exchange.status}: {'; '.join(errors[:3])}",
        exchange,
    )
    verify.assert_ok()


def test_openapi_document(client: EndpointClient, verify: Verifier) -> None:
    exchange = client.get("/openapi.json")
    if exchange.status == 404:
        exchange = client.get("/swagger.json")
    document = exchange.json
    ok = exchange.status == 200 and isinstance(document, dict) and "openapi" in document and "paths" in document
    verify.rule(
        "discovery.openapi", ok, f"no OpenAPI document at /openapi.json or /swagger.json ({exchange.status})", exchange
    )
    verify.assert_ok()
