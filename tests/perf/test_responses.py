"""perf.responses: SSE events are stamped as they complete; usage, finish reasons and errors are read."""

from __future__ import annotations

import json

import pytest

from perf.responses import StreamReader, parse_body, parse_header_int, parse_retry_after


def _event(payload: object) -> list[bytes]:
    return [f"data: {json.dumps(payload)}\n".encode(), b"\n"]


def _chat(content: str | None, finish: str | None = None) -> dict[str, object]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }


def _feed(reader: StreamReader, lines: list[bytes], start: float = 0.0) -> None:
    for offset, line in enumerate(lines):
        reader.feed_line(line, start + offset)


def test_a_chat_stream() -> None:
    reader = StreamReader()
    role_only = {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
    lines = [
        *_event(role_only),
        *_event(_chat(" one")),
        *_event(_chat(" two three")),
        *_event(_chat("", "length")),
        *_event({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}}),
        b"data: [DONE]\n",
        b"\n",
    ]
    _feed(reader, lines)
    reader.finish(100.0)
    # Events complete on their blank lines (2, 4, ...): the role-only and empty deltas carry no text.
    assert reader.token_event_times == [3.0, 5.0]
    assert reader.first_token_time == 3.0
    assert (reader.prompt_tokens, reader.completion_tokens) == (4, 3)
    assert reader.finish_reason == "length" and reader.done and reader.error is None


def test_a_completions_stream_with_crlf_and_no_space_after_the_colon() -> None:
    reader = StreamReader()
    chunk = {"object": "text_completion", "choices": [{"index": 0, "text": " hi", "finish_reason": None}]}
    _feed(
        reader,
        [b"data:" + json.dumps(chunk).encode() + b"\r\n", b"\r\n", b": comment\r\n", b"data: [DONE]\r\n", b"\r\n"],
    )
    reader.finish(9.0)
    assert reader.token_event_times == [1.0] and reader.done and reader.error is None
    assert reader.completion_tokens is None


def test_a_stream_cut_short_and_an_in_band_error() -> None:
    cut = StreamReader()
    _feed(cut, _event(_chat(" a")))
    cut.finish(5.0)
    assert cut.error == "stream ended without [DONE]"
    failed = StreamReader()
    _feed(failed, [*_event({"error": {"code": "server_error", "message": "boom"}}), b"data: [DONE]\n", b"\n"])
    failed.finish(5.0)
    assert failed.error == "in-band error: server_error: boom"


def test_an_event_without_its_blank_line_is_still_read_at_the_end() -> None:
    reader = StreamReader()
    _feed(reader, [*_event(_chat(" a")), b"data: [DONE]\n"])
    reader.finish(7.0)
    assert reader.done and reader.error is None


def test_invalid_data_is_an_error() -> None:
    reader = StreamReader()
    _feed(reader, [b"data: {not json\n", b"\n", b"data: [DONE]\n", b"\n"])
    reader.finish(1.0)
    assert reader.error is not None and reader.error.startswith("invalid SSE data")


def test_bodies() -> None:
    body = {
        "choices": [{"index": 0, "text": "x", "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
    }
    outcome = parse_body(json.dumps(body).encode())
    assert (outcome.prompt_tokens, outcome.completion_tokens, outcome.finish_reason, outcome.error) == (
        2,
        1,
        "stop",
        None,
    )
    assert (
        parse_body(b'{"error": {"code": "rate_limit_exceeded", "message": "slow"}}').error
        == "rate_limit_exceeded: slow"
    )
    assert parse_body(b"<html>").error is not None
    assert parse_body(b'{"choices": []}').completion_tokens is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("-1", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ("inf", None),
        (None, None),
    ],
)
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_header_ints() -> None:
    assert parse_header_int("120") == 120
    assert parse_header_int("x") is None and parse_header_int("-3") is None and parse_header_int(None) is None


def test_the_answer_text_is_kept_when_asked() -> None:
    lines = [*_event(_chat(" one")), *_event(_chat(" two")), b"data: [DONE]\n", b"\n"]
    keeping, plain = StreamReader(keep_text=True), StreamReader()
    _feed(keeping, lines)
    _feed(plain, lines)
    assert keeping.text == " one two" and plain.text == ""
    chat = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}
    assert parse_body(json.dumps(chat).encode()).text == "hi"
    completion = {"choices": [{"index": 0, "text": " there", "finish_reason": "length"}]}
    assert parse_body(json.dumps(completion).encode()).text == " there"
    assert parse_body(b'{"choices": []}').text is None
