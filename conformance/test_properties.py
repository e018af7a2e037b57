"""hypothesis properties: generated prompts and parameter combinations are served and meet every exchange rule.

Bounded and reproducible: a fixed number of examples, derandomized, no example database.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.plugin import Api, Suite, Verifier

prompts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40
).filter(lambda text: text.strip() != "")
parameters = st.fixed_dictionaries(
    {
        "max_tokens": st.integers(1, 6),
        "temperature": st.sampled_from([0, 0.3, 0.7, 1.0, 1.5]),
    },
    optional={
        "top_p": st.sampled_from([0.1, 0.5, 0.9, 1.0]),
        "n": st.integers(1, 2),
        "stop": st.one_of(
            st.sampled_from([".", "\n", " the", "e"]),
            st.lists(st.sampled_from([".", ",", "a"]), min_size=1, max_size=2),
        ),
        "logprobs": st.integers(0, 3),
        "presence_penalty": st.sampled_from([-1.0, 0.0, 1.5]),
        "stream": st.booleans(),
        "ignore_eos": st.booleans(),
        "seed": st.integers(0, 1000),
    },
)


REFUSAL_RULE = "properties.invariants"
"""A refused generated request is this rule's finding, not that of every feature it happened to combine."""


@pytest.mark.rules("properties.invariants")
def test_generated_requests_keep_every_invariant(api: Api, suite: Suite, verify: Verifier) -> None:
    runs = itertools.count()

    @settings(
        max_examples=4 if suite.quick else 12,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(prompt=prompts, params=parameters)
    def send(prompt: str, params: dict[str, Any]) -> None:
        verify.post(
            api.path, api.body(prompt, **params), probe="property", run=next(runs), valid=True, demands=[REFUSAL_RULE]
        )

    send()
    verify.finish()
