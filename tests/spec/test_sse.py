"""The one SSE codec: what the server writes decodes to the same events however the bytes are split."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from spec.sse import DONE, DONE_EVENT, SseDecoder, decode_all, encode_event


def _decode(*pieces: str) -> tuple[list[str], SseDecoder]:
    decoder = SseDecoder()
    data = [message.data for piece in pieces for message in decoder.feed(piece)]
    data += [message.data for message in decoder.finish()]
    return data, decoder


def test_encoded_events_decode_to_their_data() -> None:
    body = encode_event(json.dumps({"a": 1})) + encode_event(json.dumps({"b": "x y"})) + DONE_EVENT
    data, decoder = _decode(body)
    assert data == ['{"a": 1}', '{"b": "x y"}', DONE]
    assert decoder.framing.line_endings == {"\n"}
    assert not decoder.framing.unterminated_event


def test_a_whole_body_decodes_at_once_as_piece_by_piece() -> None:
    body = encode_event('{"a": 1}') + ": ping\n\n" + encode_event("two") + "data: unterminated"
    assert [message.data for message in decode_all(body)] == _decode(*body)[0] == ['{"a": 1}', "two", "unterminated"]


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_any_split_of_the_bytes_gives_the_same_events(cuts: list[int]) -> None:
    body = "data: one\r\n\r\n: keep-alive\r\ndata:two\r\ndata: three\r\n\r\nevent: x\rdata: four\r\r" + DONE_EVENT
    points = sorted({min(cut, len(body)) for cut in cuts})
    pieces = [body[start:end] for start, end in zip([0, *points], [*points, len(body)], strict=True)]
    data, decoder = _decode(*pieces)
    assert data == ["one", "two\nthree", "four", DONE]
    assert decoder.framing.line_endings == {"\r\n", "\r", "\n"}


def test_framing_liberties_are_noted() -> None:
    _, decoder = _decode("data:x\n\n: ping\n\nevent: message\ndata: y\n\nnonsense\ndata: z")
    framing = decoder.framing
    assert framing.data_without_space == 1
    assert framing.comment_lines == 1
    assert framing.event_fields == 1
    assert framing.stray_lines == ["nonsense"]
    assert framing.unterminated_event


def test_an_event_field_is_carried_with_its_data() -> None:
    decoder = SseDecoder()
    (message,) = decoder.feed("event: error\ndata: {}\n\n")
    assert (message.event, message.data) == ("error", "{}")
