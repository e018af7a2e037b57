"""The streaming policy: what of a growing choice text may be sent, judged by any ContentFilter.

The one moderator of streams: the server's streamed path (moderation/service.py) drives it, and its
properties are tested (tests/reference_server/test_content_safety.py), so what is served is what is tested.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from reference_server.moderation.filter import ContentFilter, ContentFilterError, ModerationFinishReason, Verdict

__all__ = ["ModerationStep", "StreamingModeration"]


@dataclass(frozen=True)
class ModerationStep:
    """What a streamed delta releases.

    `text` is safe to send now. `stopped` ends the choice with `finish_reason`; a step from `finish()`
    that is not stopped means the stream ended cleanly and the backend's finish_reason stands. `verdict`
    (on the last step only; None after a filter error) classifies the whole text, for reporting.
    """

    text: str
    stopped: bool
    finish_reason: ModerationFinishReason | None = None
    verdict: Verdict | None = None


_NOTHING_YET = ModerationStep("", stopped=False)


class StreamingModeration:
    """Moderates one streamed choice: feed it the text deltas, send what each step releases.

    Hold-back: the last `hold_back_chars` characters are not released until more text arrives or the
    stream finishes, because a filtered match may still be completing there. Text is released only after
    a classification that covered it, so no filtered text is ever sent when every match fits in the
    hold-back (PatternContentFilter's config guarantees it). A flag inside the held-back tail does not stop
    the stream yet, since what follows may undo it (a whole-word match at the very end: "kill" before
    "ogram"); the stream stops once the flagged offset lies more than `hold_back_chars` behind the end
    (the match is then complete), or at `finish()`. The released text is therefore exactly the
    non-streaming result: the text cut at the whole text's first flagged offset. Each step classifies only
    the unreleased text (with the rest as context), so a stream costs time linear in its length.
    """

    def __init__(self, content_filter: ContentFilter) -> None:
        self._filter = content_filter
        self._hold_back = content_filter.hold_back_chars
        self._text = ""
        self._released = 0
        self._end: ModerationStep | None = None

    @property
    def emitted(self) -> str:
        """All text released so far."""
        return self._text[: self._released]

    def feed(self, delta: str) -> ModerationStep:
        """Add a delta; what may be sent now. After the stream stopped, returns the stop again with no text."""
        if self._end is not None:
            return replace(self._end, text="")
        self._text += delta
        if len(self._text) - self._released <= self._hold_back:
            return _NOTHING_YET
        try:
            verdict = self._filter.classify(self._text, self._released)
        except ContentFilterError:
            return self._stop_on_error()
        if verdict.flagged:
            offset = self._not_before_released(verdict.first_flagged_offset)
            if len(self._text) - offset > self._hold_back:
                # The match ends before the text does, so no continuation can undo it.
                return self._stop_on_flag(offset)
            # Otherwise it starts inside the held-back tail, where what follows may still undo it.
        return ModerationStep(self._release(len(self._text) - self._hold_back), stopped=False)

    def finish(self) -> ModerationStep:
        """The stream ended: classify the whole text, release the held-back tail up to any flagged offset."""
        if self._end is not None:
            return replace(self._end, text="")
        try:
            verdict = self._filter.classify(self._text)
        except ContentFilterError:
            return self._stop_on_error()
        if verdict.flagged:
            offset = self._not_before_released(verdict.first_flagged_offset)
            self._end = ModerationStep(
                self._release(offset), stopped=True, finish_reason="content_filter", verdict=verdict
            )
        else:
            self._end = ModerationStep(self._release(len(self._text)), stopped=False, verdict=verdict)
        return self._end

    def _not_before_released(self, offset: int | None) -> int:
        # Released text cannot be recalled; an unknown position withholds everything not yet released.
        return self._released if offset is None else max(offset, self._released)

    def _release(self, until: int) -> str:
        released = self._text[self._released : until]
        self._released = max(self._released, until)
        return released

    def _stop_on_flag(self, offset: int) -> ModerationStep:
        # The windowed verdict only covers unreleased text; report categories for the whole text.
        try:
            verdict = self._filter.classify(self._text)
        except ContentFilterError:
            return self._stop_on_error()
        self._end = ModerationStep(self._release(offset), stopped=True, finish_reason="content_filter", verdict=verdict)
        return self._end

    def _stop_on_error(self) -> ModerationStep:
        # Text the filter could not judge is never sent.
        self._end = ModerationStep("", stopped=True, finish_reason="content_filter_error")
        return self._end
