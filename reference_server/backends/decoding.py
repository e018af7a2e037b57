"""Token-level generation shared by the token backends (llama.cpp, simulated).

A backend supplies a `TokenModel` (tokenize, next-token logits, token bytes); this module turns it
into choices: sampling (temperature, top_p, presence_penalty, frequency_penalty, seed), logprobs, stop strings and
stop token ids with usage/logprobs/text kept in agreement (spec D18), n, best_of and beam search.
"""

from __future__ import annotations

import codecs
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt

from reference_server.backends.base import Choice, FinishReason, GeneratedToken, SamplingOptions
from reference_server.backends.beam import BeamSearch, Hypothesis, ends_hypothesis

__all__ = [
    "Aborted",
    "ChoiceAssembler",
    "DecodedStep",
    "SequenceDecoder",
    "TokenModel",
    "add_generated",
    "best_of",
    "log_softmax",
    "log_sum_exp",
    "mean_logprob",
]

Logits = npt.NDArray[np.float32]

# Requests without a seed share one generator: seeding a new one from the OS's entropy costs more
# than sampling all of a short request's tokens. (A Generator locks its bit generator, so decoders
# on different threads can share it.)
_UNSEEDED = np.random.default_rng()


class TokenModel(Protocol):
    """The token-level operations a decoding backend provides."""

    def next_logits(self, sequence: list[int]) -> Logits:
        """Logits of the token after `sequence` (prompt + generated so far)."""

    def token_bytes(self, token_id: int, *, special: bool) -> bytes:
        """The token's bytes; special tokens render as b'' unless `special`."""

    def is_end_of_generation(self, token_id: int) -> bool:
        """EOS / end-of-turn tokens."""

    def is_special(self, token_id: int) -> bool:
        """Control tokens (never shown when skip_special_tokens)."""


class Aborted(Exception):
    """The request was aborted (client gone, server closing)."""


def log_sum_exp(logits: Logits) -> float:
    """log(sum(exp(logits))): a token's log-probability is its logit minus this."""
    peak = float(np.max(logits))
    return peak + math.log(float(np.sum(np.exp(logits - peak))))


def log_softmax(logits: Logits) -> Logits:
    shifted = logits.astype(np.float64) - float(np.max(logits))
    result: Logits = (shifted - math.log(float(np.sum(np.exp(shifted))))).astype(np.float32)
    return result


@dataclass
class _PendingToken:
    token_id: int
    start: int
    text: str
    logprob: float | None
    top_logprobs: dict[str, float] | None


@dataclass
class ChoiceAssembler:
    """Builds one choice's text from token pieces, cutting at stop strings.

    The returned tokens concatenate to the returned text. A stop string is never returned; the
    token that completes it is dropped (not counted, D18) and a token straddling its start keeps
    only the part before it. While streaming, text that could still turn into a stop string is
    held back, so nothing emitted ever has to be taken back.
    """

    stop: tuple[str, ...] = ()
    text: str = ""
    tokens: list[_PendingToken] = field(default_factory=list)
    emitted: int = 0
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )

    def add(self, token_id: int, piece: bytes, logprob: float | None, top: dict[str, float] | None) -> bool:
        """Add a token; True when a stop string has now ended the choice."""
        text = self._decoder.decode(piece)
        start = len(self.text)
        self.tokens.append(_PendingToken(token_id, start, text, logprob, top))
        self.text += text
        if not self.stop or not text:
            return False
        window_start = max(0, start - max(len(s) for s in self.stop) + 1)
        hits = [pos for s in self.stop if (pos := self.text.find(s, window_start)) != -1]
        if not hits:
            return False
        cut = min(hits)
        self.text = self.text[:cut]
        kept: list[_PendingToken] = []
        for token in self.tokens:
            if token.start >= cut:
                break
            token.text = token.text[: cut - token.start]
            kept.append(token)
        self.tokens = kept
        return True

    def _held_back(self) -> int:
        """Characters at the end of the text that could be the start of a stop string."""
        longest = 0
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def ready(self) -> list[GeneratedToken]:
        """Tokens that can be streamed now (their text can no longer become part of a stop string)."""
        safe_end = len(self.text) - self._held_back()
        out: list[GeneratedToken] = []
        while self.emitted < len(self.tokens):
            token = self.tokens[self.emitted]
            if token.start + len(token.text) > safe_end:
                break
            out.append(GeneratedToken(token.token_id, token.text, token.logprob, token.top_logprobs))
            self.emitted += 1
        return out

    def rest(self) -> list[GeneratedToken]:
        """Everything not yet emitted (call once the choice has finished)."""
        tail = self._decoder.decode(b"", final=True)
        if tail and self.tokens:
            self.tokens[-1].text += tail
            self.text += tail
        out = [GeneratedToken(t.token_id, t.text, t.logprob, t.top_logprobs) for t in self.tokens[self.emitted :]]
        self.emitted = len(self.tokens)
        return out


def add_generated(
    assembler: ChoiceAssembler,
    options: SamplingOptions,
    is_end_of_generation: Callable[[int], bool],
    token_id: int,
    piece: bytes,
    logprob: float | None,
    top: dict[str, float] | None,
) -> bool:
    """Add a generated token to its choice; True when the token ends the choice.

    Every backend ends a choice the same way: an end of generation ends it without joining the text
    (unless ignore_eos), a completed stop string ends it with the text cut before the stop (D18),
    and a stop token id ends it but stays in the text.
    """
    if is_end_of_generation(token_id) and not options.ignore_eos:
        return True
    return assembler.add(token_id, piece, logprob, top) or token_id in options.stop_token_ids


@dataclass
class DecodedStep:
    """What the decoder produced for one generated token."""

    tokens: list[GeneratedToken]
    finish_reason: FinishReason | None


class SequenceDecoder:
    """Runs one request's decoding loop over a TokenModel (synchronously; callers pick the thread)."""

    def __init__(self, model: TokenModel, options: SamplingOptions, cancelled: threading.Event) -> None:
        self.model = model
        self.options = options
        self.cancelled = cancelled
        # A token's log-probability costs a pass over the vocabulary: only compute it when it is
        # returned (logprobs) or ranks the best_of candidates.
        self.needs_logprobs = options.logprobs is not None or options.best_of > options.n
        # what a request is charged for: every sampled token, discarded best_of candidates' too
        self.sampled_tokens = 0

    def _piece(self, token_id: int) -> bytes:
        special = not self.options.skip_special_tokens
        return self.model.token_bytes(token_id, special=special)

    def _top_entries(self, logits: Logits, normaliser: float, chosen: int) -> dict[str, float] | None:
        k = self.options.logprobs
        if k is None:
            return None
        entries: dict[str, float] = {}
        if k > 0:
            top_ids = np.argpartition(-logits, k - 1)[:k] if k < logits.shape[0] else np.arange(logits.shape[0])
            for token_id in sorted(top_ids.tolist(), key=lambda t: -float(logits[t])):
                key = self.model.token_bytes(int(token_id), special=True).decode("utf-8", errors="replace")
                entries.setdefault(key, float(logits[token_id]) - normaliser)
        chosen_key = self.model.token_bytes(chosen, special=True).decode("utf-8", errors="replace")
        entries.setdefault(chosen_key, float(logits[chosen]) - normaliser)
        return entries

    def _scored(self, logits: Logits, chosen: int) -> tuple[float | None, dict[str, float] | None]:
        """The chosen token's log-probability and its top_logprobs entries (None when not needed)."""
        if not self.needs_logprobs:
            return None, None
        normaliser = log_sum_exp(logits)
        return float(logits[chosen]) - normaliser, self._top_entries(logits, normaliser, chosen)

    def _add(self, assembler: ChoiceAssembler, logits: Logits, token_id: int) -> bool:
        """Add a generated token to its choice (see add_generated); True when it ends the choice."""
        piece = self._piece(token_id)
        return add_generated(
            assembler, self.options, self.model.is_end_of_generation, token_id, piece, *self._scored(logits, token_id)
        )

    def _sample(self, logits: Logits, generated: list[int], rng: np.random.Generator) -> int:
        options = self.options
        penalised = bool(generated) and bool(options.presence_penalty or options.frequency_penalty)
        if options.greedy and not penalised:
            return int(np.argmax(logits))  # greedy: no copy of the vocabulary-sized array
        adjusted = logits.astype(np.float64)
        if penalised:
            # OpenAI's definition: presence once per token seen, frequency once per occurrence
            seen, counts = np.unique(np.asarray(generated), return_counts=True)
            adjusted[seen] -= options.presence_penalty + options.frequency_penalty * counts
        if options.greedy:
            return int(np.argmax(adjusted))
        if options.temperature != 1.0:
            adjusted /= options.temperature
        # the ufuncs' reduce directly: ndarray.max and .sum add a Python-level wrapper per token
        adjusted -= np.maximum.reduce(adjusted)
        probs = np.exp(adjusted, out=adjusted)
        probs /= np.add.reduce(probs)
        if options.top_p < 1.0:
            order = np.argsort(-probs)
            cumulative = np.cumsum(probs[order])
            keep = order[: int(np.searchsorted(cumulative, options.top_p)) + 1]
            mask = np.zeros_like(probs)
            mask[keep] = probs[keep]
            probs = mask / mask.sum()
        # The inverse-CDF draw of Generator.choice(p=probs), step for step (so a seed picks the same
        # tokens as it did through choice), without choice's validation of p, which cost more than
        # the draw itself.
        cdf = probs.cumsum()
        cdf /= cdf[-1]
        return int(cdf.searchsorted(rng.random(), side="right"))

    def sample_choice(self, prompt: list[int], index: int) -> Iterator[DecodedStep]:
        """Choice `index`: the streamable tokens after each generated token; the last step has the finish reason."""
        options = self.options
        # each choice its own stream of the request's seed; any integer is a valid seed on the
        # wire, numpy wants a non-negative one
        rng = _UNSEEDED if options.seed is None else np.random.default_rng((options.seed + index) % 2**64)
        assembler = ChoiceAssembler(stop=options.stop)
        sequence = list(prompt)
        generated: list[int] = []
        finish: FinishReason = "length"
        for _ in range(options.max_tokens):
            if self.cancelled.is_set():
                raise Aborted
            logits = self.model.next_logits(sequence)
            self.sampled_tokens += 1
            token_id = self._sample(logits, generated, rng)
            sequence.append(token_id)
            generated.append(token_id)
            if self._add(assembler, logits, token_id):
                finish = "stop"
                break
            yield DecodedStep(assembler.ready(), None)
        yield DecodedStep(assembler.rest(), finish)

    def beam_search(self, prompt: list[int]) -> list[Hypothesis]:
        """Beam search of width best_of over the model's log-probabilities (temperature 0, D2), best first."""
        options = self.options
        ends = ends_hypothesis(options, self.model.is_end_of_generation)
        search = BeamSearch(options.best_of, options.max_tokens, ends)
        wanted = search.candidates_per_beam
        while not search.done:
            candidates: list[list[tuple[int, float]]] = []
            for tokens in search.pending():
                if self.cancelled.is_set():
                    raise Aborted
                logprobs = log_softmax(self.model.next_logits(prompt + list(tokens)))
                top = np.argpartition(-logprobs, wanted)[:wanted].tolist()
                candidates.append([(int(token_id), float(logprobs[token_id])) for token_id in top])
            search.advance(candidates)
        return search.best()

    def replay(self, prompt: list[int], tokens: Sequence[int], finish: FinishReason) -> Choice:
        """A choice from a known token sequence (beam search), with logprobs and stop strings applied."""
        options = self.options
        assembler = ChoiceAssembler(stop=options.stop)
        sequence = list(prompt)
        for token_id in tokens:
            logits = self.model.next_logits(sequence)
            sequence.append(token_id)
            if self._add(assembler, logits, token_id):
                finish = "stop"
                break
        kept = assembler.rest()
        return Choice(index=0, tokens=kept, finish_reason=finish)


def best_of(candidates: list[Choice], n: int) -> list[Choice]:
    """The `n` returned choices of best_of candidates (D4): the highest mean logprob first, re-indexed 0..n-1."""
    ranked = sorted(candidates, key=mean_logprob, reverse=True)[:n] if len(candidates) > n else candidates
    return [replace(choice, index=index) for index, choice in enumerate(ranked)]


def mean_logprob(choice: Choice) -> float:
    """The best_of ranking score (D4): mean log-probability per token; an empty choice ranks last."""
    if not choice.tokens:
        return -math.inf
    total = 0.0
    for token in choice.tokens:
        if token.logprob is None:
            raise ValueError("best_of ranking needs the tokens' log-probabilities: decode with best_of > n")
        total += token.logprob
    return total / len(choice.tokens)
