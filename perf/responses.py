"""Reading Llama API responses for load metrics: SSE streams event by event, and whole JSON bodies.

Only what the metrics need is extracted (token event times, usage, finish reason, in-band errors); judging
whether a response conforms to the spec is the conformance suite's job.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from spec.sse import DONE, SseDecoder

__all__ = ["BodyOutcome", "StreamReader", "parse_body", "parse_header_int", "parse_retry_after"]


def _usage(payload: dict[str, Any]) -> tuple[int | None, int | None]:
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None, None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) else None,
        completion if isinstance(completion, int) else None,
    )


def _error_text(payload: dict[str, Any]) -> str:
    error = payload.get("error")
    if isinstance(error, dict):
        return f"{error.get('code', '?')}: {error.get('message', '')}"[:200]
    return str(error)[:200]


@dataclass
class StreamReader:
    """Reads an SSE body line by line, stamping each event that carries generated text with its arrival time.

    Lines are fed as they arrive (with their line ending), so an event's time is when its last line came in.
    """

    token_event_times: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    done: bool = False
    keep_text: bool = False
    """Keep the first choice's text (a conversation appends the answer to its history); off, it costs nothing."""
    _text_parts: list[str] = field(default_factory=list)
    _decoder: SseDecoder = field(default_factory=SseDecoder)

    @property
    def text(self) -> str:
        """The first choice's generated text, when `keep_text`."""
        return "".join(self._text_parts)

    def feed_line(self, line: bytes, now: float) -> None:
        for message in self._decoder.feed(line.decode("utf-8", errors="replace")):
            self._dispatch(message.data, now)

    def finish(self, now: float) -> None:
        """The body ended: dispatch an event left without its blank line, and note a stream cut short."""
        for message in self._decoder.finish():
            self._dispatch(message.data, now)
        if not self.done and self.error is None:
            self.error = "stream ended without [DONE]"

    @property
    def first_token_time(self) -> float | None:
        return self.token_event_times[0] if self.token_event_times else None

    def _dispatch(self, data: str, now: float) -> None:
        if data == DONE:
            self.done = True
            return
        try:
            payload = json.loads(data)
        except json.JSONDecodeError:
            self.error = self.error or f"invalid SSE data: {data[:80]!r}"
            return
        if not isinstance(payload, dict):
            self.error = self.error or f"SSE data is not an object: {data[:80]!r}"
            return
        if "error" in payload:
            self.error = self.error or f"in-band error: {_error_text(payload)}"
            return
        carries_text = False
        for choice in payload.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            carries_text = carries_text or bool(text)
            if self.keep_text and isinstance(text, str) and choice.get("index", 0) == 0:
                self._text_parts.append(text)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if carries_text:
            self.token_event_times.append(now)
        prompt, completion = _usage(payload)
        if completion is not None:
            self.prompt_tokens, self.completion_tokens = prompt, completion


@dataclass(frozen=True)
class BodyOutcome:
    """What a whole (non-streamed) JSON body says."""

    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    error: str | None
    text: str | None = None
    """The first choice's text (chat: its message content)."""


def parse_body(body: bytes) -> BodyOutcome:
    """Usage and finish reason of a completion or chat completion body, or the error it carries."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return BodyOutcome(None, None, None, f"invalid JSON body: {body[:80]!r}")
    if not isinstance(payload, dict):
        return BodyOutcome(None, None, None, "body is not a JSON object")
    if "error" in payload:
        return BodyOutcome(None, None, None, _error_text(payload))
    choices = payload.get("choices")
    first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    finish = first.get("finish_reason")
    message = first.get("message")
    text = message.get("content") if isinstance(message, dict) else first.get("text")
    return BodyOutcome(
        *_usage(payload), finish if isinstance(finish, str) else None, None, text if isinstance(text, str) else None
    )


def parse_header_int(value: str | None) -> int | None:
    """A non-negative integer header value; None when absent or malformed."""
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds. The spec's form is an integer; a non-negative decimal is tolerated.

    The HTTP-date form is not accepted: the Llama API documents seconds, and a 429 that sends a date is
    reported as lacking a valid Retry-After.
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
