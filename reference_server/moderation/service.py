"""Content safety as the HTTP layer applies it: a ContentFilter run off the event loop under a time limit,
on prompts (400 content_filter), completions (cut before the offending text, finish_reason content_filter)
and streams (the one StreamingModeration, fed token by token).

When the filter fails or times out, text it has not judged is never returned: a prompt is not answered
(D24) and a completion keeps only what was judged before the failure, ending with content_filter_error (D25).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from reference_server.backends.base import FinishReason, GeneratedToken, truncate_tokens
from reference_server.errors import ApiError
from reference_server.moderation.filter import ContentFilter, ContentFilterError, Verdict
from reference_server.moderation.streaming import ModerationStep, StreamingModeration

__all__ = ["ContentSafety", "ModerationOutcome", "StreamModerator"]

# What "the filter could not decide" means; any other exception is a bug and must surface.
FILTER_FAILURES = (ContentFilterError, TimeoutError)

Result = TypeVar("Result")


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

    def __init__(self, content_filter: ContentFilter, timeout_s: float) -> None:
        self.content_filter = content_filter
        self.timeout_s = timeout_s

    async def run(self, judge: Callable[..., Result], *arguments: Any) -> Result:
        """`judge(*arguments)` in a worker thread; TimeoutError past the time limit."""
        return await asyncio.wait_for(asyncio.to_thread(judge, *arguments), self.timeout_s)

    async def check_prompt(self, texts: list[str], param: str) -> bool:
        """400 content_filter for a flagged prompt; False when the filter could not decide."""
        for text in texts:
            try:
                verdict = await self.run(self.content_filter.classify, text)
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
        """The part of a whole completion that may be returned (D25: nothing when the filter fails)."""
        try:
            verdict = await self.run(self.content_filter.classify, text)
        except FILTER_FAILURES:
            return ModerationOutcome(0, "content_filter_error")
        if verdict.flagged:
            cut = verdict.first_flagged_offset if verdict.first_flagged_offset is not None else 0
            return ModerationOutcome(cut, "content_filter")
        return ModerationOutcome(len(text), None)

    def stream_moderator(self) -> StreamModerator:
        return StreamModerator(self)


class StreamModerator:
    """Moderates one streamed choice of tokens with StreamingModeration.

    Tokens are sent whole once moderation has released all their text, so a token is never split
    across chunks (logprobs and usage count it once); the last chunk of a cut choice carries the
    tokens up to the cut, the last one shortened, exactly as the non-streamed path truncates them.
    """

    def __init__(self, safety: ContentSafety) -> None:
        self._safety = safety
        self._moderation = StreamingModeration(safety.content_filter)
        self._held: list[GeneratedToken] = []
        self._held_start = 0  # offset in the choice text of the first held token
        self._released = 0  # characters of the choice text moderation has released
        self._done = False

    async def step(
        self, tokens: list[GeneratedToken], finish_reason: FinishReason | None
    ) -> tuple[list[GeneratedToken], FinishReason | None]:
        """The tokens that may be sent now, and the finish reason to send with them."""
        if self._done:
            return [], None
        self._held.extend(tokens)
        try:
            moderated = await self._safety.run(self._moderation.feed, "".join(token.text for token in tokens))
            self._released += len(moderated.text)
            if not moderated.stopped and finish_reason is not None:
                moderated = await self._safety.run(self._moderation.finish)
                self._released += len(moderated.text)
        except TimeoutError:
            # the late thread may still change the moderation; it is not read again
            moderated = ModerationStep("", stopped=True, finish_reason="content_filter_error")
        if moderated.stopped:
            self._done = True
            return truncate_tokens(self._held, self._released - self._held_start), moderated.finish_reason
        if finish_reason is not None:
            self._done = True
            return self._held, finish_reason
        return self._release_whole_tokens(), None

    def _release_whole_tokens(self) -> list[GeneratedToken]:
        sendable: list[GeneratedToken] = []
        while self._held and self._held_start + len(self._held[0].text) <= self._released:
            token = self._held.pop(0)
            self._held_start += len(token.text)
            sendable.append(token)
        return sendable
