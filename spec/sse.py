"""Server-sent events as the Llama API uses them: the one encoder and the one incremental decoder.

The server writes `data: {json}\\n\\n` events ending with `data: [DONE]\\n\\n`. Readers (the conformance
suite, the load generator) decode by the WHATWG EventSource rules, which leave free how bytes are split
and which line ending is used; the decoder also notes every framing liberty it met, so a rule can judge
what a stricter client (the azure-ai-inference SDK) would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DONE", "DONE_EVENT", "SseDecoder", "SseFraming", "SseMessage", "decode_all", "encode_event"]

DONE = "[DONE]"


def encode_event(data: str) -> str:
    """One `data:` event; `data` must hold no line break (JSON from json.dumps / model_dump_json holds none)."""
    return f"data: {data}\n\n"


DONE_EVENT = encode_event(DONE)

_FIELDS = frozenset({"data", "event", "id", "retry"})


@dataclass(frozen=True)
class SseMessage:
    """One dispatched event: its data lines joined by newlines, and its `event` field if any."""

    data: str
    event: str | None = None


@dataclass
class SseFraming:
    """The liberties of SSE framing a decoded stream took (all legal SSE; not all clients accept them)."""

    line_endings: set[str] = field(default_factory=set)
    comment_lines: int = 0
    event_fields: int = 0
    id_or_retry_fields: int = 0
    data_without_space: int = 0
    multiline_data: int = 0
    unterminated_event: bool = False
    stray_lines: list[str] = field(default_factory=list)


class SseDecoder:
    """Feed text as it arrives; get each event when its blank line arrives; `finish()` at end of body."""

    def __init__(self) -> None:
        self.framing = SseFraming()
        self._pending = ""
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, text: str) -> list[SseMessage]:
        self._pending += text
        messages: list[SseMessage] = []
        while True:
            line, ending = self._next_line()
            if ending is None:
                return messages
            self.framing.line_endings.add(ending)
            message = self._line(line)
            if message is not None:
                messages.append(message)

    def finish(self) -> list[SseMessage]:
        """The body ended: a last line without its ending, and an event left without its blank line."""
        messages: list[SseMessage] = []
        if self._pending:
            line, self._pending = self._pending.rstrip("\r"), ""
            message = self._line(line)
            if message is not None:
                messages.append(message)
        if self._data:
            # EventSource would drop it; readers here keep it and the rules judge the framing
            self.framing.unterminated_event = True
            messages.append(self._dispatch())
        return messages

    def _next_line(self) -> tuple[str, str | None]:
        for index, character in enumerate(self._pending):
            if character == "\n":
                line, self._pending = self._pending[:index], self._pending[index + 1 :]
                return line, "\n"
            if character == "\r":
                if index + 1 == len(self._pending):
                    return "", None  # a CR at the end of a piece may be the first half of CRLF
                ending = "\r\n" if self._pending[index + 1] == "\n" else "\r"
                line, self._pending = self._pending[:index], self._pending[index + len(ending) :]
                return line, ending
        return "", None

    def _line(self, line: str) -> SseMessage | None:
        if not line:
            return self._dispatch() if self._data else None
        if line.startswith(":"):
            self.framing.comment_lines += 1
            return None
        name, colon, value = line.partition(":")
        if not colon or name not in _FIELDS:
            self.framing.stray_lines.append(line)
            return None
        if value.startswith(" "):
            value = value[1:]
        elif name == "data":
            self.framing.data_without_space += 1
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self.framing.event_fields += 1
            self._event = value
        else:
            self.framing.id_or_retry_fields += 1
        return None

    def _dispatch(self) -> SseMessage:
        if len(self._data) > 1:
            self.framing.multiline_data += 1
        message = SseMessage("\n".join(self._data), self._event)
        self._data, self._event = [], None
        return message


def decode_all(text: str) -> list[SseMessage]:
    """Every event of a body read whole (a body still arriving is fed to an `SseDecoder` piece by piece)."""
    decoder = SseDecoder()
    return [*decoder.feed(text), *decoder.finish()]
