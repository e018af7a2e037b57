"""Deployment profiles (spec/profiles.yaml): the platform rules of a deployment kind (D1)."""

from __future__ import annotations

import fnmatch
import functools
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "PROFILES_PATH",
    "RATE_LIMIT_BURST_SECONDS",
    "RATE_LIMIT_HEADERS",
    "RATE_LIMIT_RULE_ID",
    "REQUEST_LIMIT_HEADERS",
    "TOKEN_LIMIT_HEADERS",
    "Profile",
    "get_profile",
    "load_profiles",
]

PROFILES_PATH = Path(__file__).with_name("profiles.yaml")
REQUEST_LIMIT_HEADERS: tuple[str, ...] = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests")
TOKEN_LIMIT_HEADERS: tuple[str, ...] = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens")
RATE_LIMIT_HEADERS: tuple[str, ...] = REQUEST_LIMIT_HEADERS + TOKEN_LIMIT_HEADERS
"""What a rate-limited deployment's answers carry, a 429 included: the pair of each limit it has (D26)."""
RATE_LIMIT_BURST_SECONDS = 10.0
"""The widest window Azure measures a request rate over: a limit of N/min admits a burst of N/6 (D26)."""
RATE_LIMIT_RULE_ID = "rate_limit.enforced"
"""The conformance rule that judges enforcement (D26): registered by conformance, named by perf's verdict."""


class Profile(BaseModel):
    """Rate limits and content-safety rule of one deployment kind."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    name: str
    description: str
    requests_per_minute: int | None = Field(ge=1, description="RPM per deployment; None: no platform limit.")
    tokens_per_minute: int | None = Field(ge=1, description="TPM per deployment; None: no platform limit.")
    max_concurrent_requests: int | None = Field(ge=1, description="Concurrent requests cap; None: none.")
    content_safety: Literal["required", "optional"]
    requires: list[str] = Field(description="Glob patterns of the conformance rule ids a verdict needs.")
    source: str = Field(alias="x-source")

    def requires_rule(self, rule_id: str) -> bool:
        """The profile's `requires` patterns cover this conformance rule id."""
        return any(fnmatch.fnmatchcase(rule_id, pattern) for pattern in self.requires)

    @property
    def has_rate_limits(self) -> bool:
        return self.requests_per_minute is not None or self.tokens_per_minute is not None


@functools.cache
def load_profiles() -> dict[str, Profile]:
    """All profiles by name."""
    raw = yaml.safe_load(PROFILES_PATH.read_text(encoding="utf-8"))
    return {name: Profile(name=name, **fields) for name, fields in raw.items()}


def get_profile(name: str) -> Profile:
    """One profile; a clear error naming the known ones otherwise."""
    profiles = load_profiles()
    try:
        return profiles[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known profiles: {', '.join(sorted(profiles))}") from None
