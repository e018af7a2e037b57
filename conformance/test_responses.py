"""Plain (non-streamed) responses: envelope, usage, finish_reason, defaults, n, best_of, beam search, sampling."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.plugin import Api, Verifier

EXCHANGE_RULES = ("envelope.*", "usage.*", "finish_reason.enum", "finish_reason.length", "errors.no_server_error")


@pytest.mark.rules(*EXCHANGE_RULES)
def test_basic_completion(api: Api, verify: Verifier) -> None:
    verify.post(api.path, api.body(max_tokens=6, temperature=0), probe="basic", valid=True)
    verify.finish()


@pytest.mark.rules("finish_reason.length_forced", *EXCHANGE_RULES)
def test_length_is_forced_by_ignore_eos(api: Api, verify: Verifier) -> None:
    verify.post(api.path, api.body(max_tokens=5, temperature=0, ignore_eos=True), probe="ignore_eos", valid=True)
    verify.finish()


@pytest.mark.rules("defaults.max_tokens")
def test_max_tokens_defaults_to_16(api: Api, verify: Verifier) -> None:
    verify.post(api.path, api.body(temperature=0, ignore_eos=True), probe="default_max_tokens", valid=True)
    verify.finish()


@pytest.mark.rules("relations.deterministic", "relations.prompt_tokens_stable", "relations.unique_ids")
def test_temperature_zero_is_deterministic_and_prompt_tokens_stable(api: Api, verify: Verifier) -> None:
    verify.post(api.path, api.body(max_tokens=8, temperature=0), probe="greedy_pair", role="long", valid=True)
    verify.post(api.path, api.body(max_tokens=4, temperature=0), probe="greedy_pair", role="short", valid=True)
    verify.finish()


@pytest.mark.rules("envelope.choices", *EXCHANGE_RULES)
def test_n_choices(api: Api, verify: Verifier) -> None:
    verify.post(
        api.path, api.body(max_tokens=4, temperature=0.8, n=2, seed=7), probe="n", valid=True, demands=["n"], note="n 2"
    )
    verify.finish()


@pytest.mark.rules("sampling.accepted")
def test_sampling_parameters_are_accepted(api: Api, verify: Verifier) -> None:
    sampling: dict[str, dict[str, Any]] = {
        "presence_penalty": {"presence_penalty": 1.5},
        "top_p": {"top_p": 0.5, "temperature": 0.7},
        "seed": {"seed": 11, "temperature": 0.7},
    }
    for role, params in sampling.items():
        verify.post(api.path, api.body(max_tokens=3, **params), probe="sampling", role=role, valid=True, note=role)
    verify.finish()


@pytest.mark.rules("best_of.*")
def test_best_of(api: Api, verify: Verifier) -> None:
    chosen = api.body(max_tokens=4, temperature=0.8, n=1, best_of=3)
    verify.post(api.path, chosen, probe="best_of", role="chosen", valid=True, note="best_of 3, n 1")
    verify.post(api.path, api.body(max_tokens=4, n=2, best_of=1), probe="best_of", role="below_n", invalid=True)
    verify.post(
        api.path, api.body(max_tokens=4, n=1, best_of=2, stream=True), probe="best_of", role="streamed", invalid=True
    )
    verify.finish()


@pytest.mark.rules("beam_search.rules")
def test_beam_search(api: Api, verify: Verifier) -> None:
    documented = api.body(max_tokens=4, temperature=0, n=2, best_of=2, use_beam_search=True)
    verify.post(api.path, documented, probe="beam_search", role="documented", valid=True, note="beam search")
    hot = api.body(max_tokens=4, temperature=0.7, best_of=2, use_beam_search=True)
    verify.post(api.path, hot, probe="beam_search", role="hot")
    narrow = api.body(max_tokens=4, temperature=0, use_beam_search=True)
    verify.post(api.path, narrow, probe="beam_search", role="best_of_1", invalid=True)
    verify.finish()
