"""Discovery: GET /info and the OpenAPI document served by the endpoint itself."""

from __future__ import annotations

import pytest

from conformance.plugin import Suite, Verifier


@pytest.mark.rules("discovery.info")
def test_info(verify: Verifier) -> None:
    verify.get("/info", probe="info")
    verify.finish()


@pytest.mark.rules("discovery.openapi")
def test_openapi_document(suite: Suite, verify: Verifier) -> None:
    path = "/openapi.json" if suite.client().get("/openapi.json").status != 404 else "/swagger.json"
    verify.get(path, probe="openapi", role="document", expect={"paths": [api.path for api in suite.apis()]})
    verify.finish()
