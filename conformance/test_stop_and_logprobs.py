"""Stop sequences, stop_token_ids and the logprobs object."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.plugin import Api, Verifier
from conformance.rules.common import choice_texts

LOGPROB_RULES = ("logprobs.*", "usage.*", "errors.no_server_error")
STOP_TOKEN_WINDOWS = [list(range(start, start + 64)) for start in range(0, 512, 64)]
"""stop_token_ids holds at most 64 ids; the first 512 hold the commonest pieces of any BPE vocabulary."""


def _stop_inside(text: str) -> str | None:
    """A stop sequence that occurs after the start of the text: a word (or piece) from its middle."""
    words = text.split()
    for word in words[1:]:
        if len(word) >= 2 and text.find(word) > 0:
            return word
    return text[len(text) // 2 :][:2] if len(text) > 4 else None


@pytest.mark.rules("relations.stop_cuts_text", "finish_reason.stop_sequence", "stop.excluded")
@pytest.mark.parametrize("form", ["string", "list"])
def test_stop_cuts_the_greedy_text(api: Api, verify: Verifier, form: str) -> None:
    params: dict[str, Any] = {"max_tokens": 12, "temperature": 0, "ignore_eos": True}
    greedy = verify.post(api.path, api.body(**params), probe="stop_cut", role="greedy", valid=True)
    text = choice_texts(greedy).get(0, "") if greedy.status == 200 else ""
    stop = _stop_inside(text)
    if greedy.status == 200 and stop is None:
        pytest.skip(f"the greedy text {text!r} is too short to place a stop sequence in")
    if stop is not None:
        stop_value: str | list[str] = stop if form == "string" else ["\u241e never appears \u241e", stop]
        verify.post(
            api.path,
            api.body(**params, stop=stop_value),
            probe="stop_cut",
            role="cut",
            valid=True,
            note=f"stop {stop_value!r}",
            expect={"stop": stop},
        )
    verify.finish()


@pytest.mark.rules("stop_token_ids.stop")
def test_stop_token_ids_end_the_choice(api: Api, verify: Verifier) -> None:
    params: dict[str, Any] = {"max_tokens": 12, "temperature": 0, "ignore_eos": True}
    verify.post(api.path, api.body(**params), probe="stop_token_ids", role="greedy", valid=True)
    for number, ids in enumerate(STOP_TOKEN_WINDOWS):
        window = verify.post(
            api.path,
            api.body(**params, stop_token_ids=ids),
            probe="stop_token_ids",
            role=f"window_{number}",
            valid=True,
            note=f"stop_token_ids {ids[0]}..{ids[-1]}",
        )
        body = window.json if window.status == 200 and isinstance(window.json, dict) else {}
        if (body.get("choices") or [{}])[0].get("finish_reason") != "length":
            break  # this window ended the text (or was refused): the rule has its evidence
    verify.finish()


@pytest.mark.rules(*LOGPROB_RULES)
@pytest.mark.parametrize("k", [0, 3])
def test_logprobs_object(api: Api, verify: Verifier, k: int) -> None:
    body = api.body(max_tokens=6, temperature=0, logprobs=k)
    verify.post(api.path, body, probe="logprobs", valid=True, note=f"logprobs {k}")
    verify.finish()


@pytest.mark.rules(*LOGPROB_RULES, "stop.excluded", "envelope.choices")
def test_logprobs_with_stop_and_n(api: Api, verify: Verifier) -> None:
    body = api.body(max_tokens=8, temperature=0.9, n=2, logprobs=2, stop=[".", "\n"], seed=3)
    verify.post(api.path, body, probe="logprobs", valid=True, note="logprobs 2, stop list, n 2")
    verify.finish()
