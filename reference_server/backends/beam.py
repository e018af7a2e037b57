"""Beam search as a state machine: the backend supplies next-token log-probabilities, this decides.

The llama.cpp backend feeds it from logits on its model thread, the vLLM backend from engine
requests gathered concurrently; both therefore search exactly the same way (spec D2: width
best_of, temperature 0, hypotheses ranked by mean token log-probability).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reference_server.backends.base import FinishReason, SamplingOptions

__all__ = ["BeamSearch", "Hypothesis", "ends_hypothesis"]


def ends_hypothesis(options: SamplingOptions, is_end_of_generation: Callable[[int], bool]) -> Callable[[int], bool]:
    """Whether a token finishes a hypothesis: an end of generation (unless ignore_eos) or a stop token id."""

    def ends(token_id: int) -> bool:
        return (is_end_of_generation(token_id) and not options.ignore_eos) or token_id in options.stop_token_ids

    return ends


@dataclass(frozen=True)
class Hypothesis:
    """A finished (or cut off) beam: its tokens, summed log-probability, and why it ended."""

    tokens: tuple[int, ...]
    score: float
    finish_reason: FinishReason

    @property
    def mean_logprob(self) -> float:
        return self.score / max(1, len(self.tokens))


class BeamSearch:
    """Width-`width` beam search; call `advance` with each pending beam's candidates until `done`."""

    def __init__(self, width: int, max_tokens: int, ends: Callable[[int], bool]) -> None:
        self.width = width
        self.max_tokens = max_tokens
        self._ends = ends
        self._beams: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
        self._finished: list[Hypothesis] = []
        self._steps = 0

    @property
    def candidates_per_beam(self) -> int:
        """How many of the most likely next tokens each beam needs: enough that `width` survive ends."""
        return 2 * self.width

    @property
    def done(self) -> bool:
        return not self._beams or len(self._finished) >= self.width or self._steps >= self.max_tokens

    def pending(self) -> list[tuple[int, ...]]:
        """The generated tokens of each live beam, in the order `advance` expects their candidates."""
        return [tokens for tokens, _ in self._beams]

    def advance(self, candidates: Sequence[Sequence[tuple[int, float]]]) -> None:
        """One step: `candidates[i]` holds (token id, log-probability) continuations of pending beam i."""
        expanded: list[tuple[tuple[int, ...], float, bool]] = []
        for (tokens, score), continuations in zip(self._beams, candidates, strict=True):
            best = sorted(continuations, key=lambda c: -c[1])[: self.candidates_per_beam]
            expanded.extend(((*tokens, token_id), score + logprob, self._ends(token_id)) for token_id, logprob in best)
        expanded.sort(key=lambda c: -c[1])
        self._beams = []
        for tokens, score, ends in expanded:
            if ends:
                if len(self._finished) < self.width:
                    self._finished.append(Hypothesis(tokens, score, "stop"))
            elif len(self._beams) < self.width:
                self._beams.append((tokens, score))
        self._steps += 1

    def best(self) -> list[Hypothesis]:
        """The `width` best hypotheses, best first; beams still open when the search ended count as `length`."""
        hypotheses = [*self._finished, *(Hypothesis(tokens, score, "length") for tokens, score in self._beams)]
        hypotheses.sort(key=lambda h: -h.mean_logprob)
        return hypotheses[: self.width]
