"""SequenceDecoder over small hand-made and simulated models: what a seed draws, when log-probabilities are computed."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from reference_server.backends.base import SamplingOptions
from reference_server.backends.decoding import Logits, SequenceDecoder, TokenModel, log_softmax
from reference_server.backends.simulated import SimulatedTokenModel

VOCABULARY = 50


class TableModel:
    """Next-token logits drawn once per context length from a fixed seed; token i is the text f"<{i}>"."""

    def __init__(self) -> None:
        self.rows = np.random.default_rng(7).normal(0.0, 2.0, (64, VOCABULARY)).astype(np.float32)

    def next_logits(self, sequence: list[int]) -> Logits:
        logits: Logits = self.rows[len(sequence) % len(self.rows)].copy()
        return logits

    def token_bytes(self, token_id: int, *, special: bool) -> bytes:
        return f"<{token_id}>".encode()

    def is_end_of_generation(self, token_id: int) -> bool:
        return False

    def is_special(self, token_id: int) -> bool:
        return False


def _decode(options: SamplingOptions, model: TokenModel | None = None, index: int = 0) -> list[int]:
    decoder = SequenceDecoder(model or TableModel(), options, threading.Event())
    return [token.token_id for step in decoder.sample_choice([0], index) for token in step.tokens]


def _drawn_through_choice(options: SamplingOptions, tokens: int) -> list[int]:
    """The sampling the decoder replaced: a softmax and Generator.choice with p (seeds must keep their tokens)."""
    model, rng, sequence = TableModel(), np.random.default_rng(options.seed), [0]
    for _ in range(tokens):
        adjusted = model.next_logits(sequence).astype(np.float64)
        for token_id in set(sequence[1:]):
            occurrences = sequence[1:].count(token_id)
            adjusted[token_id] -= options.presence_penalty + options.frequency_penalty * occurrences
        adjusted = adjusted / options.temperature
        probs = np.exp(adjusted - adjusted.max())
        probs /= probs.sum()
        if options.top_p < 1.0:
            order = np.argsort(-probs)
            keep = order[: int(np.searchsorted(np.cumsum(probs[order]), options.top_p)) + 1]
            mask = np.zeros_like(probs)
            mask[keep] = probs[keep]
            probs = mask / mask.sum()
        sequence.append(int(rng.choice(VOCABULARY, p=probs)))
    return sequence[1:]


@pytest.mark.parametrize(
    "sampling",
    [
        {"temperature": 1.0},
        {"temperature": 0.6, "top_p": 0.8},
        {"temperature": 1.4, "presence_penalty": 1.5},
        {"temperature": 0.3, "top_p": 0.5, "presence_penalty": -0.5},
        {"temperature": 1.2, "frequency_penalty": 1.0},
        {"temperature": 0.8, "presence_penalty": 0.5, "frequency_penalty": -0.7},
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_a_seed_draws_the_tokens_generator_choice_drew(sampling: dict[str, float], seed: int) -> None:
    options = SamplingOptions(max_tokens=40, seed=seed, **sampling)
    assert _decode(options) == _drawn_through_choice(options, 40)


def test_choices_of_one_seed_differ_and_unseeded_requests_vary() -> None:
    seeded = SamplingOptions(max_tokens=20, seed=3)
    assert _decode(seeded, index=0) == _decode(seeded, index=0) != _decode(seeded, index=1)
    unseeded = SamplingOptions(max_tokens=20)
    assert len({tuple(_decode(unseeded)) for _ in range(5)}) > 1


@pytest.mark.parametrize(
    ("logprobs", "best_of", "n", "computed"),
    [(None, 1, 1, False), (0, 1, 1, True), (2, 1, 1, True), (None, 3, 1, True), (None, 2, 2, False)],
)
def test_log_probabilities_are_computed_only_when_returned_or_ranked(
    logprobs: int | None, best_of: int, n: int, computed: bool
) -> None:
    options = SamplingOptions(max_tokens=6, temperature=0.0, logprobs=logprobs, best_of=best_of, n=n)
    model = TableModel()
    decoder = SequenceDecoder(model, options, threading.Event())
    tokens = [token for step in decoder.sample_choice([0], 0) for token in step.tokens]
    assert len(tokens) == 6
    if not computed:
        assert all(token.logprob is None and token.top_logprobs is None for token in tokens)
        return
    for position, token in enumerate(tokens, start=1):
        expected = log_softmax(model.next_logits([0] * position))[token.token_id]
        assert token.logprob is not None and math.isclose(token.logprob, float(expected), abs_tol=1e-5)
        assert (token.top_logprobs is not None) == (logprobs is not None)


def test_every_sampled_token_is_counted_those_of_discarded_candidates_too() -> None:
    decoder = SequenceDecoder(TableModel(), SamplingOptions(max_tokens=5, best_of=3), threading.Event())
    for index in range(3):
        list(decoder.sample_choice([0], index))
    assert decoder.sampled_tokens == 15


def test_the_simulated_model_is_deterministic_and_stops_naturally() -> None:
    model = SimulatedTokenModel(mean_length=8)
    prompt = model.tokenize("the quick brown fox")
    assert np.array_equal(model.next_logits(prompt), SimulatedTokenModel(mean_length=8).next_logits(prompt))
    options = SamplingOptions(max_tokens=200, seed=1)
    decoder = SequenceDecoder(model, options, threading.Event())
    finishes = [list(decoder.sample_choice(prompt, index))[-1].finish_reason for index in range(20)]
    assert finishes.count("stop") >= 15


def test_frequency_penalty_grows_with_each_occurrence() -> None:
    """Greedy over a model that always prefers token 1: the penalty per occurrence moves it off 1 in time."""

    class Repeating(TableModel):
        def next_logits(self, sequence: list[int]) -> Logits:
            logits = np.zeros(VOCABULARY, dtype=np.float32)
            logits[1], logits[2] = 3.0, 2.0
            return logits

    greedy = _decode(SamplingOptions(max_tokens=6, temperature=0.0), Repeating())
    assert greedy == [1] * 6
    # presence alone lowers token 1 by 0.5 once: still the best (2.5 > 2.0)
    assert _decode(SamplingOptions(max_tokens=6, temperature=0.0, presence_penalty=0.5), Repeating()) == [1] * 6
    # frequency 0.4: token 1 at 3.0 - 0.4k, token 2 at 2.0 - 0.4j; they alternate once token 1 has been used 3 times
    penalised = _decode(SamplingOptions(max_tokens=6, temperature=0.0, frequency_penalty=0.4), Repeating())
    assert penalised[:3] == [1, 1, 1] and 2 in penalised[3:]
