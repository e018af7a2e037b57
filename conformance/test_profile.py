"""Deployment-profile rules: rate-limit headers and content safety, for the profiles that require them."""

from __future__ import annotations

import pytest

from conformance.plugin import Api, Suite, Verifier
from spec.profiles import get_profile


@pytest.mark.rules("rate_limit.headers", "errors.retry_after")
def test_rate_limit_headers(api: Api, suite: Suite, verify: Verifier) -> None:
    if not suite.profile or not get_profile(suite.profile).has_rate_limits:
        pytest.skip("the profile has no platform rate limits")
    verify.post(api.path, api.body(max_tokens=2, temperature=0), probe="rate_limit", valid=True)
    verify.finish()


@pytest.mark.rules("content_safety.prompt")
def test_harmful_prompts_are_filtered(api: Api, suite: Suite, verify: Verifier) -> None:
    if not suite.profile or get_profile(suite.profile).content_safety != "required":
        pytest.skip("content safety is not required by the profile")
    prompts = suite.harmful_prompts()
    for number, prompt in enumerate(prompts[:2] if suite.quick else prompts):
        body = api.body(prompt, max_tokens=4)
        verify.post(api.path, body, probe="content_safety", role=f"harmful_{number}", note=prompt)
    verify.finish()
