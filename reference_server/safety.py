"""Content safety as the HTTP layer applies it: prompts (400 content_filter) and completions
(cut before the offending text, finish_reason content_filter; content_filter_error when the
filter fails or times out), streaming included.

The classifier itself is pluggable (reference_server/content_safety.py: patterns by default).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from reference_server.backends.base import FinishReason, GeneratedToken
from reference_server.content_safety import ContentFilter, ContentFilterError, Verdict
from reference_server.errors import ApiError

__all__ = ["ContentSafety", "ModerationOutcome", "StreamModerator"]

# What "the filter could not decide" means; any other exception is a bug and must surface.
FILTER_FAILURES = (ContentFilterError, TimeoutError)


@dataclass(frozen=True)
class ModerationOutcome:
    """How much of a text may be returned, and the finish reason moderation imposes (None: no change)."""

    safe_length: int
    finish_reason: FinishReason | None


def _categories(verdict: Verdict) -> dict[str, Any]:
    return {
        name: {"severity": result.severity, "filtered": result.filtered} for name, result in verdict.categories.items()
    }


class ContentSafety:
    """Runs a ContentFilter off the event loop, with a time limit."""

    def __init__(self, content_filter: ContentFilter, timeout_s: float, stream_holdback_chars: int = 32) -> None:
        self.content_filter = content_filter
        self.timeout_s = timeout_s
        self.stream_holdback_chars = stream_holdback_chars

    async def classify(self, text: str, start: int = 0) -> Verdict:
        """The verdict; raises on filter failure or timeout (callers map that to content_filter_error)."""
        return await asyncio.wait_for(asyncio.to_thread(self.content_filter.classify, text, start), self.timeout_s)

    async def check_prompt(self, texts: list[str], param: str) -> bool:
        """400 content_filter for a flagged prompt; False when the filter could not decide."""
        for text in texts:
            try:
                verdict = await self.classify(text)
            except FILTER_FAILURES:
                return False
            if verdict.flagged:
                flagged = sorted(name for name, result in verdict.categories.items() if result.filtered)
                raise ApiError(
                    400,
                    "content_filter",
                    f"the prompt was filtered by content safety (categories: {', '.join(flagged)})",
                    param=param,
                    details={"categories": _categories(verdict)},
                )
        return True

    async def moderate_completion(self, text: str) -> ModerationOutcome:
        try:
            verdict = await self.classify(text)
        except FILTER_FAILURES:
            return ModerationOutcome(len(text), "content_filter_error")
        if verdict.flagged:
            cut = verdict.first_flagged_offset if verdict.first_flagged_offset is not None else 0
            return ModerationOutcome(cut, "content_filter")
        return ModerationOutcome(len(text), None)

    def stream_moderator(self) -> StreamModerator:
        return StreamModerator(self)


@dataclass
class StreamModerator:
    """Moderates one streamed choice: holds back the last few characters until they are judged,
    so no offending text is ever sent (a pattern is only recognised once complete)."""

    safety: ContentSafety
    text: str = ""
    held: list[GeneratedToken] = field(default_factory=list)
    done: bool = False

    def _release(self, upto: int) -> list[GeneratedToken]:
        released: list[GeneratedToken] = []
        emitted_end = len(self.text) - sum(len(t.text) for t in self.held)
        while self.held and emitted_end + len(self.held[0].text) <= upto:
            token = self.held.pop(0)
            emitted_end += len(token.text)
            released.append(token)
        return released

    def _cut(self, cut: int) -> list[GeneratedToken]:
        emitted_end = len(self.text) - sum(len(t.text) for t in self.held)
        kept: list[GeneratedToken] = []
        for token in self.held:
            if emitted_end >= cut:
                break
            token.text = token.text[: cut - emitted_end]
            emitted_end += len(token.text)
            kept.append(token)
        self.held = []
        return kept

    async def step(
        self, tokens: list[GeneratedToken], finish_reason: FinishReason | None
    ) -> tuple[list[GeneratedToken], FinishReason | None]:
        """The tokens that may be sent now, and the finish reason to send with them."""
        if self.done:
            return [], None
        self.held.extend(tokens)
        self.text += "".join(t.text for t in tokens)
        # only text not yet sent can change the verdict; what precedes it is context
        unsent_start = len(self.text) - sum(len(t.text) for t in self.held)
        try:
            verdict = await self.safety.classify(self.text, max(0, unsent_start - self.safety.stream_holdback_chars))
        except FILTER_FAILURES:
            self.done = True
            return self._release(len(self.text)), "content_filter_error"
        if verdict.flagged:
            self.done = True
            cut = verdict.first_flagged_offset if verdict.first_flagged_offset is not None else 0
            return self._cut(cut), "content_filter"
        if finish_reason is not None:
            self.done = True
            return self._release(len(self.text)), finish_reason
        return self._release(len(self.text) - self.safety.stream_holdback_chars), None
