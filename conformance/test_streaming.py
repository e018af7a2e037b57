"""Server-sent events: framing, chunk schema, finish_reason placement, [DONE], stream == non-stream."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.plugin import Api, Verifier

STREAM_RULES = ("stream.*", "envelope.created", "errors.no_server_error")


@pytest.mark.rules(*STREAM_RULES)
def test_stream_basic(api: Api, verify: Verifier) -> None:
    verify.post(api.path, api.body(max_tokens=6, temperature=0, stream=True), probe="stream", valid=True)
    verify.finish()


@pytest.mark.rules(*STREAM_RULES, "stream.usage_chunk", "usage.*", "logprobs.*")
def test_stream_with_usage_and_logprobs(api: Api, verify: Verifier) -> None:
    body = api.body(max_tokens=6, temperature=0, stream=True, logprobs=2, stream_options={"include_usage": True})
    verify.post(
        api.path,
        body,
        probe="stream",
        valid=True,
        demands=["logprobs", "stream_options"],
        note="stream, usage, logprobs",
    )
    verify.finish()


@pytest.mark.rules(*STREAM_RULES)
def test_stream_n_choices(api: Api, verify: Verifier) -> None:
    body = api.body(max_tokens=4, temperature=0.8, n=2, stream=True)
    verify.post(api.path, body, probe="stream", valid=True, demands=["n"], note="stream with n 2")
    verify.finish()


@pytest.mark.rules("relations.stream_equals_full", *STREAM_RULES)
@pytest.mark.parametrize("stop", [None, "."])
def test_stream_equals_non_stream(api: Api, verify: Verifier, stop: str | None) -> None:
    params: dict[str, Any] = {"max_tokens": 10, "temperature": 0, "ignore_eos": True}
    if stop:
        params["stop"] = stop
    verify.post(api.path, api.body(**params), probe="stream_vs_full", role="full", valid=True)
    verify.post(api.path, api.body(stream=True, **params), probe="stream_vs_full", role="streamed", valid=True)
    verify.finish()
