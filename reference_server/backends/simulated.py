"""The `simulated` backend: deterministic text at configurable latency, for load tests only.

A 135M model on two cores cannot serve 1,000+ requests per minute, so rate-limit compliance is
measured against this backend. Its "model" is tokenizer-free: a fixed vocabulary of words,
tokens are words (and the spaces before them), and next-token logits come from a hash of the
recent tokens, so every field of the spec (n, best_of, beam search, logprobs, stop) still works.
It is never the default and never what the conformance suite certifies.
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from reference_server.backends.base import BackendInfo, plain_chat_prompt
from reference_server.backends.decoding import Logits
from reference_server.backends.token_backend import ModelSlot, TokenBackend

__all__ = ["SimulatedTokenModel", "create_simulated_backend"]

_WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "it",
    "this",
    "be",
    "are",
    "or",
    "an",
    "which",
    "not",
    "have",
    "model",
    "llama",
    "token",
    "stream",
    "request",
    "server",
    "answer",
    "moon",
    "earth",
    "distance",
    "miles",
    "about",
    "average",
    "light",
    "time",
    "data",
    "value",
    "result",
    "system",
    "network",
    "paris",
    "france",
    "capital",
    "city",
    "river",
    "mountain",
    "ocean",
    "sky",
    "blue",
    "green",
    "red",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
]
BOS, EOS = 0, 1
_SPECIAL = {BOS: "<s>", EOS: "</s>"}
_VOCABULARY = [_SPECIAL[BOS], _SPECIAL[EOS], *(f" {w}" for w in _WORDS), ".", ",", "\n"]
_IDS = {piece: index for index, piece in enumerate(_VOCABULARY)}
_PIECE = re.compile(r"\s*[^\s.,]+|[.,]|\n|\s+")


# Rows of logits the contexts are hashed onto: enough that text does not visibly repeat.
_LOGIT_ROWS = 4096
_CONTEXT_TOKENS = 4


class SimulatedTokenModel:
    """Deterministic next-token logits from a hash of the last few tokens."""

    def __init__(self, mean_length: int = 24) -> None:
        self.mean_length = mean_length
        self.n_vocab = len(_VOCABULARY)
        # Drawn once from a fixed seed: a fresh generator per token cost more than all the rest of a
        # request, and load tests need this backend to be nearly free.
        self._logit_rows = np.random.default_rng(0).normal(0.0, 2.0, (_LOGIT_ROWS, self.n_vocab)).astype(np.float32)
        self._logit_rows[:, BOS] = -30.0

    def tokenize(self, text: str) -> list[int]:
        ids = [BOS]
        for piece in _PIECE.findall(text):
            stripped = piece.strip()
            word = " " + stripped if stripped else piece
            token_id = _IDS.get(word)
            if token_id is None:
                # unknown words map onto the vocabulary by hash: still one token each
                digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
                token_id = 2 + digest % len(_WORDS)
            ids.append(token_id)
        return ids

    def next_logits(self, sequence: list[int]) -> Logits:
        # token ids are below 256, so each is one byte of the context
        context = bytes(sequence[-_CONTEXT_TOKENS:])
        row = int.from_bytes(hashlib.blake2b(context, digest_size=8).digest(), "little") % _LOGIT_ROWS
        logits: Logits = self._logit_rows[row].copy()
        # the chance of ending grows with length, so natural stops happen around mean_length
        generated = len(sequence) - (sequence.index(EOS) if EOS in sequence else 0)
        logits[EOS] = -8.0 + 16.0 * min(1.0, (generated % 97) / (2 * self.mean_length))
        return logits

    def token_bytes(self, token_id: int, *, special: bool) -> bytes:
        if token_id in _SPECIAL and not special:
            return b""
        return _VOCABULARY[token_id].encode()

    def is_end_of_generation(self, token_id: int) -> bool:
        return token_id == EOS

    def is_special(self, token_id: int) -> bool:
        return token_id in _SPECIAL


def create_simulated_backend(
    *,
    first_token_delay_s: float = 0.0,
    token_delay_s: float = 0.0,
    context_length: int = 8192,
    max_waiting: int = 100_000,
    slots: int | None = None,
) -> TokenBackend:
    """A simulated deployment, latencies as configured: unlimited concurrency, or `slots` requests at once, which
    gives it a known capacity of slots / (first-token delay + tokens x token delay) requests/s (a load test's knee).
    """
    model = SimulatedTokenModel()

    info = BackendInfo(
        model_name="simulated",
        model_type="chat-completion",
        model_provider_name="llamacert",
        context_length=context_length,
        backend="simulated",
        concurrency=slots,
    )
    # Many "slots" sharing one stateless model: requests overlap as on a real batched server.
    pool = [ModelSlot(model, ThreadPoolExecutor(1)) for _ in range(slots or 1024)]
    return TokenBackend(
        info,
        pool,
        model.tokenize,
        plain_chat_prompt,
        max_waiting=max_waiting,
        first_token_delay_s=first_token_delay_s,
        token_delay_s=token_delay_s,
        inline=True,
    )
