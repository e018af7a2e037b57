"""Content safety of the reference server: the filter (filter.py), the streaming policy (streaming.py),
and the service the HTTP layer calls (service.py)."""

from __future__ import annotations

from reference_server.moderation.filter import (
    ContentFilter,
    ContentFilterError,
    PatternContentFilter,
    load_content_filter,
)
from reference_server.moderation.service import ContentSafety, ModerationOutcome, StreamModerator
from reference_server.moderation.streaming import ModerationStep, StreamingModeration

__all__ = [
    "ContentFilter",
    "ContentFilterError",
    "ContentSafety",
    "ModerationOutcome",
    "ModerationStep",
    "PatternContentFilter",
    "StreamModerator",
    "StreamingModeration",
    "load_content_filter",
]
