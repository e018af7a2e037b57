"""Deployment profiles as data (D1)."""

from __future__ import annotations

import pytest

from spec.profiles import get_profile, load_profiles


def test_the_three_profiles() -> None:
    assert set(load_profiles()) == {"serverless-llama3", "serverless-llama31", "managed-compute"}


@pytest.mark.parametrize(
    ("name", "rpm", "tpm", "safety"),
    [
        ("serverless-llama3", 1000, 200_000, "required"),
        ("serverless-llama31", 1000, 400_000, "required"),
        ("managed-compute", None, None, "optional"),
    ],
)
def test_profile_limits(name: str, rpm: int | None, tpm: int | None, safety: str) -> None:
    profile = get_profile(name)
    assert (profile.requests_per_minute, profile.tokens_per_minute, profile.content_safety) == (rpm, tpm, safety)
    assert profile.has_rate_limits is (rpm is not None)
    assert profile.source


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="managed-compute"):
        get_profile("serverless-llama4")
