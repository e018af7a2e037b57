"""Stop sequences, stop_token_ids and the logprobs object."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.exchange import EndpointClient
from conformance.plugin import Api, Verifier


def _text(body: dict[str, Any], api: Api) -> str:
    choice = body["choices"][0]
    return str(choice["message"]["content"] if api.chat else choice["text"])


def _stop_inside(text: str) -> str | None:
    """A stop sequence that occurs after the start of the text: a word (or piece) from its middle."""
    words = text.split()
    for word in words[1:]:
        if len(word) >= 2 and text.find(word) > 0:
            return word
    return text[len(text) // 2 :][:2] if len(text) > 4 else None


@pytest.mark.parametrize("form", ["string", "list"])
def test_stop_cuts_the_greedy_text(api: Api, client: EndpointClient, verify: Verifier, form: str) -> None:
    greedy = verify.checks(client.post(api.path, api.body(max_tokens=12, temperature=0, ignore_eos=True)), api)
    if greedy.status != 200:
        verify.assert_ok()
        pytest.fail(f"the greedy request failed with {greedy.status}")
    text = _text(greedy.json, api)
    stop = _stop_inside(text)
    if stop is None:
        pytest.skip(f"the greedy text {text!r} is too short to place a stop sequence in")
    stop_value: str | list[str] = stop if form == "string" else ["\u241e never appears \u241e", stop]
    cut = verify.checks(
        client.post(api.path, api.body(max_tokens=12, temperature=0, ignore_eos=True, stop=stop_value)), api
    )
    if cut.status == 200:
        expected = text[: text.index(stop)]
        got = _text(cut.json, api)
        verify.rule(
            "relations.stop_cuts_text",
            got == expected,
            f"stop {stop!r}: expected the greedy text cut before it, {expected!r}, got {got!r}",
            cut,
        )
        finish = cut.json["choices"][0].get("finish_reason")
        verify.rule(
            "finish_reason.stop_sequence",
            finish == "stop",
            f"a stop sequence ended the text but finish_reason is {finish!r}",
            cut,
        )
    else:
        verify.status("relations.stop_cuts_text", cut, {200}, "a request with a stop sequence")
    verify.assert_ok()


def test_stop_token_ids_are_accepted(api: Api, client: EndpointClient, verify: Verifier) -> None:
    # Token ids are model-specific and not exposed by the API; id 0..2 are special on Llama-family
    # vocabularies, so generation either stops at one (finish stop) or runs on: both are valid.
    exchange = verify.checks(
        client.post(api.path, api.body(max_tokens=6, temperature=0, stop_token_ids=[0, 1, 2])), api
    )
    verify.status("stop_token_ids.stop", exchange, {200}, "a request with stop_token_ids")
    verify.assert_ok()


@pytest.mark.parametrize("k", [0, 3])
def test_logprobs_object(api: Api, client: EndpointClient, verify: Verifier, k: int) -> None:
    verify.checks(client.post(api.path, api.body(max_tokens=6, temperature=0, logprobs=k)), api)
    verify.assert_ok()


def test_logprobs_with_stop_and_n(api: Api, client: EndpointClient, verify: Verifier) -> None:
    verify.checks(
        client.post(api.path, api.body(max_tokens=8, temperature=0.9, n=2, logprobs=2, stop=[".", "\n"], seed=3)),
        api,
    )
    verify.assert_ok()
