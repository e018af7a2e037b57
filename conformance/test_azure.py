"""Azure AI Model Inference behaviour on the Azure routes: the extra-parameters header and api-version (D40, D41).

Only the Azure route family is probed; a profile that does not require the `azure.*` rules skips them.
The SSE framing rule (azure.sse_framing) judges every Azure-route stream the other tests record.
"""

from __future__ import annotations

import pytest

from conformance.plugin import Api, Suite, Verifier
from spec.profiles import get_profile


def _azure_only(api: Api, suite: Suite, rule_id: str) -> None:
    if api.family != "azure":
        pytest.skip("an Azure AI Model Inference rule: the Llama routes are not judged on it")
    if suite.profile and not get_profile(suite.profile).requires_rule(rule_id):
        pytest.skip(f"the profile {suite.profile} does not require {rule_id}")


@pytest.mark.rules("azure.extra_parameters")
def test_extra_parameters_header(api: Api, suite: Suite, verify: Verifier) -> None:
    _azure_only(api, suite, "azure.extra_parameters")
    body = api.body(max_tokens=2, temperature=1.0, n=2)
    for role, value in (
        ("absent", None),
        ("error", "error"),
        ("drop", "drop"),
        ("pass_through", "pass-through"),
        ("bogus", "bogus"),
    ):
        headers = {} if value is None else {"extra-parameters": value}
        verify.post(api.path, body, probe="extra_parameters", role=role, headers=headers, azure_defaults=False)
    verify.finish()


@pytest.mark.rules("azure.api_version")
def test_unknown_api_version(api: Api, suite: Suite, verify: Verifier) -> None:
    _azure_only(api, suite, "azure.api_version")
    verify.get("/info?api-version=1999-01-01", probe="api_version", role="info")
    body = api.body(max_tokens=1, temperature=0)
    verify.post(f"{api.path}?api-version=1999-01-01", body, probe="api_version", role="generation")
    verify.finish()
