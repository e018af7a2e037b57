"""Server-sent events: framing, chunk schema, finish_reason placement, [DONE], stream == non-stream."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.exchange import EndpointClient, Exchange
from conformance.plugin import Api, Verifier


def _streamed_text(exchange: Exchange, api: Api, index: int = 0) -> str:
    text = ""
    for chunk in exchange.chunks():
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) == index:
                text += (choice.get("delta") or {}).get("content") or "" if api.chat else choice.get("text") or ""
    return text


def test_stream_basic(api: Api, client: EndpointClient, verify: Verifier) -> None:
    verify.checks(client.post(api.path, api.body(max_tokens=6, temperature=0, stream=True)), api)
    verify.assert_ok()


def test_stream_with_usage_and_logprobs(api: Api, client: EndpointClient, verify: Verifier) -> None:
    body = api.body(max_tokens=6, temperature=0, stream=True, logprobs=2, stream_options={"include_usage": True})
    verify.checks(client.post(api.path, body), api)
    verify.assert_ok()


def test_stream_n_choices(api: Api, client: EndpointClient, verify: Verifier) -> None:
    verify.checks(client.post(api.path, api.body(max_tokens=4, temperature=0.8, n=2, stream=True)), api)
    verify.assert_ok()


@pytest.mark.parametrize("stop", [None, "."])
def test_stream_equals_non_stream(api: Api, client: EndpointClient, verify: Verifier, stop: str | None) -> None:
    params: dict[str, Any] = {"max_tokens": 10, "temperature": 0, "ignore_eos": True}
    if stop:
        params["stop"] = stop
    full = verify.checks(client.post(api.path, api.body(**params)), api)
    streamed = verify.checks(client.post(api.path, api.body(stream=True, **params)), api)
    if full.status == 200 and streamed.status == 200:
        choice = full.json["choices"][0]
        expected = choice["message"]["content"] if api.chat else choice["text"]
        got = _streamed_text(streamed, api)
        verify.rule(
            "relations.stream_equals_full",
            got == expected,
            f"streamed text {got!r} differs from the non-streamed {expected!r}",
            streamed,
        )
    verify.assert_ok()
