"""The one small interface every backend implements, and the data that crosses it.

The HTTP layer only sees these types: it never imports llama.cpp or vLLM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "GREEDY_BELOW",
    "Backend",
    "BackendInfo",
    "BackendOverloaded",
    "ChatTurn",
    "Choice",
    "ChoiceDelta",
    "FinishReason",
    "GeneratedToken",
    "Generation",
    "SamplingOptions",
    "plain_chat_prompt",
    "prompt_with_a_start",
    "truncate_tokens",
]

FinishReason = Literal["stop", "length", "content_filter", "content_filter_error"]

GREEDY_BELOW = 1e-4
"""Temperatures below this are greedy decoding on every backend (dividing logits by less overflows)."""


@dataclass(frozen=True)
class SamplingOptions:
    """What to generate, already validated by the HTTP layer (spec/models.py)."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    best_of: int = 1
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    logprobs: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    ignore_eos: bool = False
    use_beam_search: bool = False
    skip_special_tokens: bool = True
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW


@dataclass(frozen=True)
class ChatTurn:
    """One message for the chat template (vision parts already reduced to text by the HTTP layer)."""

    role: str
    content: str


@dataclass(frozen=True)
class GeneratedToken:
    """One generated token as it appears in the returned text.

    `text` is the token's share of the choice text: the tokens of a choice concatenate to its
    text exactly (a token that completes a multi-byte character carries the whole character; a
    token cut by a stop string carries only the part before it). `logprob` is None when the
    request needs no log-probabilities (no logprobs asked for and no best_of ranking).
    """

    token_id: int
    text: str
    logprob: float | None
    top_logprobs: dict[str, float] | None = None


@dataclass(frozen=True)
class Choice:
    """One finished choice (immutable: moderation and ranking make new ones)."""

    index: int
    tokens: list[GeneratedToken]
    finish_reason: FinishReason

    @property
    def text(self) -> str:
        """The choice's text: its tokens' texts joined, so the two can never disagree."""
        return "".join(token.text for token in self.tokens)

    def truncated(self, length: int, finish_reason: FinishReason) -> Choice:
        """A new choice holding the first `length` characters of this one's text, ending for `finish_reason`."""
        return Choice(self.index, truncate_tokens(self.tokens, length), finish_reason)


def plain_chat_prompt(messages: list[ChatTurn]) -> str:
    """The prompt of a chat for a model without a chat template: one `role: content` line per turn."""
    return "".join(f"{message.role}: {message.content}\n" for message in messages) + "assistant:"


def prompt_with_a_start(tokens: list[int], text: str, start_token: int) -> list[int]:
    """Some control characters tokenize to nothing; a non-empty prompt still gets a start token (D23)."""
    return [start_token] if not tokens and text else tokens


def truncate_tokens(tokens: list[GeneratedToken], length: int) -> list[GeneratedToken]:
    """New tokens holding the first `length` characters of `tokens`' joined text; the given ones are left as they are.

    A token cut in the middle keeps its id and log-probability: it was generated, only part of it is shown.
    """
    kept: list[GeneratedToken] = []
    position = 0
    for token in tokens:
        if position >= length:
            break
        kept.append(
            token if position + len(token.text) <= length else replace(token, text=token.text[: length - position])
        )
        position += len(token.text)
    return kept


@dataclass(frozen=True)
class ChoiceDelta:
    """A streamed piece of one choice: new tokens, and the finish reason on the last."""

    index: int
    tokens: list[GeneratedToken] = field(default_factory=list)
    finish_reason: FinishReason | None = None


@dataclass(frozen=True)
class Generation:
    """A finished request: the returned choices, and how many tokens were generated for them."""

    choices: list[Choice]
    generated_tokens: int
    """Every token generated, discarded best_of candidates and beams included (for rate limiting)."""


@dataclass(frozen=True)
class BackendInfo:
    """What /info reports, plus the context length the HTTP layer enforces."""

    model_name: str
    model_type: Literal["chat-completion", "text-generation"]
    model_provider_name: str
    context_length: int
    backend: str
    concurrency: int | None = None
    """Requests the backend generates at once; None when it has no fixed number (then nobody waits
    in the HTTP layer's admission gate, and the backend's own queue decides)."""


class BackendOverloaded(RuntimeError):
    """The backend's queue is full; the client should retry after `retry_after_s`."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"the server is at capacity; retry after {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


@runtime_checkable
class Backend(Protocol):
    """generate / stream / tokenize / abort, and the model's info."""

    info: BackendInfo

    async def start(self) -> None:
        """Load the model; called once before serving."""

    async def close(self) -> None:
        """Free the model; running requests are aborted."""

    async def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` as the model sees a prompt (BOS included when the model adds one).

        The HTTP layer tokenizes each prompt once, to count and bound it, and hands the ids on.
        """

    async def render_chat(self, messages: list[ChatTurn]) -> str:
        """The prompt text for a chat history, from the model's chat template."""

    async def generate(self, prompt_ids: list[int], options: SamplingOptions, request_id: str) -> Generation:
        """All choices of a request (n, best_of and beam search handled here)."""

    def stream(self, prompt_ids: list[int], options: SamplingOptions, request_id: str) -> AsyncIterator[ChoiceDelta]:
        """Choice deltas as tokens are generated; the last delta of each choice has its finish_reason."""

    async def abort(self, request_id: str) -> None:
        """Stop a running request and free its slot (a no-op for an unknown id)."""
