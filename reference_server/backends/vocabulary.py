"""Token ids to bytes for a Hugging Face tokenizer, as llama.cpp gives them for a GGUF.

The vLLM backend assembles choice text from token ids itself (decoding.ChoiceAssembler), which
needs each token's exact bytes: a character split over two tokens must come out whole, and a
logprobs key must be the token's own text. Hugging Face vocabularies store tokens in one of two
encodings: byte-level BPE (GPT-2's printable alphabet for the 256 bytes; Llama 3, SmolLM2) or
SentencePiece ("▁" for a space, "<0x0A>" for a raw byte; Llama 2). Added tokens are plain text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Vocabulary"]

_SENTENCEPIECE_SPACE = "\u2581"
_SENTENCEPIECE_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's reversible map: printable bytes stand for themselves, the others for chr(256 + i)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    characters = {byte: chr(byte) for byte in printable}
    shifted = 0
    for byte in range(256):
        if byte not in characters:
            characters[byte] = chr(256 + shifted)
            shifted += 1
    return {character: byte for byte, character in characters.items()}


def _byte_level_bytes(token: str, alphabet: dict[str, int]) -> bytes:
    return bytes(alphabet[character] for character in token)


def _sentencepiece_bytes(token: str) -> bytes:
    byte = _SENTENCEPIECE_BYTE.fullmatch(token)
    if byte is not None:
        return bytes([int(byte[1], 16)])
    return token.replace(_SENTENCEPIECE_SPACE, " ").encode("utf-8")


@dataclass(frozen=True)
class Vocabulary:
    """Each token's bytes, which tokens are control tokens, and which end a generation."""

    pieces: tuple[bytes, ...]
    special: frozenset[int]
    end_of_generation: frozenset[int]
    start_token: int

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, end_of_generation: Iterable[int] = ()) -> Vocabulary:
        """From a transformers tokenizer; `end_of_generation` adds ids beyond its EOS (generation_config)."""
        size = len(tokenizer)
        strings: list[str | None] = tokenizer.convert_ids_to_tokens(list(range(size)))
        added = {int(token_id): token for token_id, token in tokenizer.added_tokens_decoder.items()}
        sentencepiece = any(s is not None and s.startswith(_SENTENCEPIECE_SPACE) for s in strings)
        alphabet = _byte_level_alphabet()
        pieces: list[bytes] = []
        for token_id, string in enumerate(strings):
            if token_id in added:
                pieces.append(str(added[token_id].content).encode("utf-8"))
            elif string is None:
                pieces.append(b"")
            elif sentencepiece:
                pieces.append(_sentencepiece_bytes(string))
            elif all(character in alphabet for character in string):
                pieces.append(_byte_level_bytes(string, alphabet))
            else:
                pieces.append(string.encode("utf-8"))
        ends = {int(i) for i in end_of_generation}
        if tokenizer.eos_token_id is not None:
            ends.add(int(tokenizer.eos_token_id))
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return cls(
            pieces=tuple(pieces),
            special=frozenset(token_id for token_id, token in added.items() if token.special),
            end_of_generation=frozenset(ends),
            start_token=int(start or 0),
        )

    @property
    def size(self) -> int:
        return len(self.pieces)

    def piece(self, token_id: int, *, special: bool) -> bytes:
        """The token's bytes; control tokens render as b'' unless `special` (skip_special_tokens off)."""
        if token_id >= self.size or (token_id in self.special and not special):
            return b""
        return self.pieces[token_id]

    def key(self, token_id: int) -> str:
        """The token as a top_logprobs key: its own text, control tokens included (as llama.cpp keys them)."""
        return self.piece(token_id, special=True).decode("utf-8", errors="replace")

    def is_end_of_generation(self, token_id: int) -> bool:
        return token_id in self.end_of_generation
