"""Exact prompt lengths from the endpoint's own tokenizer: probe `POST /tokenize` once before a run (llama.cpp's
or vLLM's shape, D58), and calibrate the synthetic prompts' words so that a prompt of N words is N tokens.

Why calibrate words rather than fit each prompt: prompts stay random per request (no prefix cache serves one
prompt to every user), nothing is tokenized on Locust's request path, and the same words make shared prefixes
and trace blocks exact too. The calibration keeps the words the tokenizer counts as one token each, in a prompt
and at its start, then proves on random prompts of several lengths that N words tokenize to exactly N tokens;
an endpoint whose tokenizer breaks that gets approximate lengths, and the summary says so.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx

from spec.routes import tokenize_path

__all__ = ["EndpointTokenizer", "PromptCalibration", "calibrate_prompt_words", "probe_tokenizer"]

_PROOF_LENGTHS: Final = (1, 7, 33, 128)
"""Prompt lengths (in words) on which the calibrated words are proven to be one token each."""
_UNANSWERED: Final = "the endpoint has no tokenize route"


@dataclass(frozen=True)
class EndpointTokenizer:
    """Counts tokens with the endpoint's `POST /tokenize`, in the request shape it answered."""

    client: httpx.Client
    shape: str
    """"vllm" ({"prompt", "add_special_tokens"}) or "llama.cpp" ({"content", "add_special"})."""

    def tokens(self, text: str, *, special: bool = False) -> list[int]:
        response = self.client.post(tokenize_path(), json=_body(self.shape, text, special))
        response.raise_for_status()
        return _token_ids(response.json())

    def count(self, text: str, *, special: bool = False) -> int:
        return len(self.tokens(text, special=special))


def _body(shape: str, text: str, special: bool) -> dict[str, Any]:
    if shape == "vllm":
        return {"prompt": text, "add_special_tokens": special}
    return {"content": text, "add_special": special}


def _token_ids(answer: Any) -> list[int]:
    tokens = answer.get("tokens") if isinstance(answer, dict) else None
    if not isinstance(tokens, list):
        raise ValueError("the tokenize answer has no 'tokens' list")
    # llama.cpp's with_pieces form answers objects with an id; either way one entry per token
    return [token["id"] if isinstance(token, dict) else token for token in tokens]


def probe_tokenizer(client: httpx.Client) -> tuple[EndpointTokenizer | None, str]:
    """The endpoint's tokenizer in the first shape it answers (vLLM's, then llama.cpp's), or None and why not."""
    reason = _UNANSWERED
    for shape in ("vllm", "llama.cpp"):
        try:
            response = client.post(tokenize_path(), json=_body(shape, "the", False))
        except httpx.HTTPError as error:
            return None, f"the tokenize probe failed: {error}"
        if response.status_code in (401, 403):
            return None, f"the tokenize route refused the key ({response.status_code})"
        if response.status_code in (404, 405):
            return None, _UNANSWERED
        if response.status_code != 200:
            reason = f"the tokenize route answered {response.status_code}"
            continue
        try:
            if _token_ids(response.json()):
                return EndpointTokenizer(client, shape), ""
        except ValueError:
            pass
        # llama.cpp's server answers a body without `content` with no tokens: try its shape
        reason = "the tokenize route answered no tokens"
    return None, reason


@dataclass(frozen=True)
class PromptCalibration:
    """What the runner found: the words that are one token each (None: lengths stay approximate) and why."""

    words: tuple[str, ...] | None
    start_tokens: int = 0
    """Tokens the endpoint adds to every prompt (its start token), on top of the text's."""
    reason: str = ""


def calibrate_prompt_words(tokenizer: EndpointTokenizer, words: Sequence[str]) -> PromptCalibration:
    """The words of `words` that the endpoint's tokenizer counts as one token, proven on random prompts."""
    base = tokenizer.count("the")
    if tokenizer.count(" ".join(words)) == len(words):
        # every word is at least one token, so all are exactly one (the proof below checks it)
        kept = list(words)
    else:
        kept = [word for word in words if tokenizer.count(word) == 1 and tokenizer.count(f"the {word}") == base + 1]
    if len(kept) < 8:
        return PromptCalibration(None, reason=f"only {len(kept)} of the prompt words are one token each")
    rng = random.Random(0)
    for length in _PROOF_LENGTHS:
        prompt = " ".join(rng.choices(kept, k=length))
        counted = tokenizer.count(prompt)
        if counted != length:
            return PromptCalibration(None, reason=f"a prompt of {length} one-token words tokenized to {counted}")
    start = tokenizer.count("the", special=True) - base
    return PromptCalibration(tuple(kept), start_tokens=start)
