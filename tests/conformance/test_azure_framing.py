"""azure.sse_framing accepts exactly what azure-ai-inference's own stream parser reads, framing by framing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conformance.exchange import Exchange, RecordedRequest
from conformance.rules.azure import sdk_framing_problems
from spec.sse import SseDecoder

# the clients extra; tox's vllm env, which runs none of these tests, does not install it
StreamingChatCompletions = pytest.importorskip("azure.ai.inference.models").StreamingChatCompletions

CHUNK = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}],
    }
)
# name -> (body, how many chunks it carries)
FRAMINGS: dict[str, tuple[str, int]] = {
    "as the reference sends it": (f"data: {CHUNK}\n\ndata: {CHUNK}\n\ndata: [DONE]\n\n", 2),
    "keep-alive comment": (f": ping\n\ndata: {CHUNK}\n\ndata: [DONE]\n\n", 1),
    "CRLF line ends": (f"data: {CHUNK}\r\n\r\ndata: [DONE]\r\n\r\n", 1),
    "event field": (f"event: message\ndata: {CHUNK}\n\ndata: [DONE]\n\n", 1),
    "id field": (f"id: 1\ndata: {CHUNK}\n\ndata: [DONE]\n\n", 1),
    "data without the space": (f"data:{CHUNK}\n\ndata: [DONE]\n\n", 1),
    "JSON over two data lines": (f"data: {CHUNK[:20]}\ndata: {CHUNK[20:]}\n\ndata: [DONE]\n\n", 1),
    "last event without its line end": (f"data: {CHUNK}\n\ndata: {CHUNK}", 2),
}


class _Response:
    """The part of azure-core's HttpResponse the SDK's stream reader uses."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def iter_bytes(self) -> Any:
        return iter(self.pieces)

    def close(self) -> None:
        pass


def _sdk_reads(text: str, pieces: int) -> int | None:
    """How many updates the SDK yields from the body (read in `pieces` parts); None when it raises."""
    data = text.encode()
    size = max(1, len(data) // pieces)
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    try:
        return len(list(StreamingChatCompletions(_Response(parts))))  # type: ignore[arg-type]
    except (ValueError, json.JSONDecodeError):
        return None


def _exchange(text: str) -> Exchange:
    decoder = SseDecoder()
    decoder.feed(text)
    decoder.finish()
    request = RecordedRequest("POST", "/chat/completions", {"messages": [], "stream": True})
    headers = {"content-type": "text/event-stream"}
    return Exchange(request, 200, headers, text, events=[], framing=decoder.framing)


@pytest.mark.parametrize("pieces", [1, 7])
@pytest.mark.parametrize("name", sorted(FRAMINGS))
def test_the_rule_passes_exactly_what_the_sdk_reads(name: str, pieces: int) -> None:
    text, chunks = FRAMINGS[name]
    sdk_reads_every_chunk = _sdk_reads(text, pieces) == chunks
    assert (sdk_framing_problems(_exchange(text)) == []) == sdk_reads_every_chunk
    assert sdk_reads_every_chunk == (name == "as the reference sends it")
