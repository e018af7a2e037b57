"""Envelope, usage, finish_reason and defaults of plain (non-streamed) responses."""

from __future__ import annotations

from typing import Any

from conformance.exchange import EndpointClient
from conformance.plugin import Api, Verifier


def _text(body: dict[str, Any], api: Api, index: int = 0) -> str:
    choice = body["choices"][index]
    return str(choice["message"]["content"] if api.chat else choice["text"])


def test_basic_completion(api: Api, client: EndpointClient, verify: Verifier) -> None:
    exchange = verify.checks(client.post(api.path, api.body(max_tokens=6, temperature=0)), api)
    verify.status("errors.invalid_parameter", exchange, {200}, "a valid minimal request")
    verify.assert_ok()


def test_length_is_forced_by_ignore_eos(api: Api, client: EndpointClient, verify: Verifier) -> None:
    exchange = verify.checks(client.post(api.path, api.body(max_tokens=5, temperature=0, ignore_eos=True)), api)
    body = exchange.json or {}
    usage = body.get("usage") or {}
    finish = (body.get("choices") or [{}])[0].get("finish_reason")
    verify.rule(
        "finish_reason.length_forced",
        finish == "length" and usage.get("completion_tokens") == 5,
        f"ignore_eos with max_tokens 5 gave finish_reason {finish!r} after {usage.get('completion_tokens')} tokens",
        exchange,
    )
    verify.assert_ok()


def test_max_tokens_defaults_to_16(api: Api, client: EndpointClient, verify: Verifier) -> None:
    exchange = verify.checks(client.post(api.path, api.body(temperature=0, ignore_eos=True)), api)
    completion = ((exchange.json or {}).get("usage") or {}).get("completion_tokens")
    verify.rule(
        "defaults.max_tokens",
        completion == 16,
        f"without max_tokens (and with ignore_eos) {completion} tokens were generated, not 16",
        exchange,
    )
    verify.assert_ok()


def test_temperature_zero_is_deterministic_and_prompt_tokens_stable(
    api: Api, client: EndpointClient, verify: Verifier
) -> None:
    first = verify.checks(client.post(api.path, api.body(max_tokens=8, temperature=0)), api)
    second = verify.checks(client.post(api.path, api.body(max_tokens=4, temperature=0)), api)
    if first.status == 200 and second.status == 200:
        text_1, text_2 = _text(first.json, api), _text(second.json, api)
        verify.rule(
            "relations.deterministic",
            text_1.startswith(text_2),
            f"greedy texts disagree: {text_1!r} vs (shorter) {text_2!r}",
            second,
        )
        prompt_1, prompt_2 = first.json["usage"]["prompt_tokens"], second.json["usage"]["prompt_tokens"]
        verify.rule(
            "relations.prompt_tokens_stable",
            prompt_1 == prompt_2,
            f"the same prompt counted {prompt_1} then {prompt_2} tokens",
            second,
        )
    verify.assert_ok()


def test_n_choices(api: Api, client: EndpointClient, verify: Verifier) -> None:
    verify.checks(client.post(api.path, api.body(max_tokens=4, temperature=0.8, n=2, seed=7)), api)
    verify.assert_ok()


def test_best_of(api: Api, client: EndpointClient, verify: Verifier) -> None:
    exchange = verify.checks(client.post(api.path, api.body(max_tokens=4, temperature=0.8, n=1, best_of=3)), api)
    choices = (exchange.json or {}).get("choices") or []
    verify.rule(
        "best_of.returns_n",
        exchange.status == 200 and len(choices) == 1,
        f"best_of 3 with n 1 gave status {exchange.status} and {len(choices)} choices",
        exchange,
    )
    below_n = verify.checks(client.post(api.path, api.body(max_tokens=4, n=2, best_of=1)), api)
    verify.status("best_of.returns_n", below_n, {400}, "best_of smaller than n (D3)")
    streamed = verify.checks(client.post(api.path, api.body(max_tokens=4, n=1, best_of=2, stream=True)), api)
    verify.status("best_of.no_stream", streamed, {400}, "best_of > n with stream")
    verify.assert_ok()


def test_beam_search(api: Api, client: EndpointClient, verify: Verifier) -> None:
    exchange = verify.checks(
        client.post(api.path, api.body(max_tokens=4, temperature=0, n=2, best_of=2, use_beam_search=True)), api
    )
    choices = (exchange.json or {}).get("choices") or []
    verify.rule(
        "beam_search.rules",
        exchange.status == 200 and len(choices) == 2,
        f"beam search (best_of 2, n 2, temperature 0) gave status {exchange.status}, {len(choices)} choices",
        exchange,
    )
    hot = verify.checks(
        client.post(api.path, api.body(max_tokens=4, temperature=0.7, best_of=2, use_beam_search=True)), api
    )
    verify.status("beam_search.rules", hot, {400}, "beam search with temperature > 0 (D2)")
    narrow = verify.checks(client.post(api.path, api.body(max_tokens=4, temperature=0, use_beam_search=True)), api)
    verify.status("beam_search.rules", narrow, {400}, "beam search with best_of 1")
    verify.assert_ok()
