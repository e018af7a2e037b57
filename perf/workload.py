"""What a load test sends: the request mix (API, streaming, route family), prompt and output lengths, bodies,
shared prompt prefixes, and multi-turn conversations (trace replay is in perf/trace.py).

Pure and Locust-free, so scenarios, the runner and the tests share one parser for each setting.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Final, get_args

from spec.routes import Api, RouteFamily, generation_route

__all__ = [
    "APPROXIMATE_LENGTHS",
    "PROMPT_WORDS",
    "Api",
    "Conversation",
    "LengthRange",
    "PlannedRequest",
    "RequestKind",
    "RouteFamily",
    "SharedPrefix",
    "Workload",
    "format_mix",
    "load_prompts",
    "parse_mix",
    "request_body",
    "seeded_words",
    "synthetic_prompt",
]

APPROXIMATE_LENGTHS: Final = (
    "approximate: prompts are common English words, about one token each (the endpoint's tokenizer was not used)"
)
"""How prompt lengths are made when the endpoint's tokenizer was not asked (perf/runner.py `prompt_lengths` says
why, or that they are exact): a prompt of N words stands for N tokens; `usage` has the true counts."""


# Common English words: one token each for Llama tokenizers (with their leading space) and for the
# simulated backend, so a prompt of N words is close to N prompt tokens without shipping a tokenizer.
_WORD_TEXT: Final = (
    "the of and to in is was for on that with as by at from it this be are or an which not have time data "
    "value result system network city river mountain ocean sky blue green red quick brown fox jumps over lazy "
    "dog one two three four five six seven eight nine ten light water stone house garden table window road"
)
_WORDS: Final = tuple(_WORD_TEXT.split())
PROMPT_WORDS: Final = _WORDS
"""The words synthetic prompts are made of; where the endpoint tokenizes, the runner keeps those it proves to be
one token each (perf/tokenize.py), and prompts of those words have exact lengths."""


@dataclass(frozen=True)
class RequestKind:
    """One entry of the request mix, written `API[+stream][@FAMILY][:WEIGHT]`, e.g. `chat+stream@azure:3`."""

    api: Api
    stream: bool = False
    route_family: RouteFamily = "llama"
    weight: float = 1.0

    @property
    def route(self) -> str:
        return generation_route(self.api, self.route_family).path

    @property
    def stats_name(self) -> str:
        """The entry's name in Locust's statistics: streamed and plain requests have different latencies."""
        return f"{self.route} (stream)" if self.stream else self.route

    def __str__(self) -> str:
        stream = "+stream" if self.stream else ""
        return f"{self.api}{stream}@{self.route_family}:{self.weight:g}"

    @classmethod
    def parse(cls, text: str) -> RequestKind:
        spec, _, weight_text = text.strip().partition(":")
        spec, _, family = spec.partition("@")
        api, _, stream = spec.partition("+")
        if api not in get_args(Api):
            raise ValueError(f"request kind {text!r}: API must be one of {', '.join(get_args(Api))}")
        if stream not in ("", "stream"):
            raise ValueError(f"request kind {text!r}: only '+stream' may follow the API")
        family = family or "llama"
        if family not in get_args(RouteFamily):
            raise ValueError(f"request kind {text!r}: route family must be one of {', '.join(get_args(RouteFamily))}")
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            raise ValueError(f"request kind {text!r}: weight must be a number") from None
        if not weight > 0:
            raise ValueError(f"request kind {text!r}: weight must be positive")
        return cls(api, stream == "stream", family, weight)  # type: ignore[arg-type]  # checked against the Literals


def parse_mix(text: str) -> list[RequestKind]:
    """A comma-separated request mix, e.g. `chat+stream:3,completion@azure:1`."""
    kinds = [RequestKind.parse(part) for part in text.split(",") if part.strip()]
    if not kinds:
        raise ValueError("the request mix is empty")
    return kinds


def format_mix(kinds: Sequence[RequestKind]) -> str:
    return ",".join(str(kind) for kind in kinds)


@dataclass(frozen=True)
class LengthRange:
    """A token count drawn uniformly from low..high (inclusive); `32` is fixed, `16..64` uniform."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.high:
            raise ValueError(f"length range {self.low}..{self.high}: need 1 <= low <= high")

    @classmethod
    def parse(cls, text: str | int) -> LengthRange:
        if isinstance(text, int):
            return cls(text, text)
        low, separator, high = str(text).strip().partition("..")
        try:
            return cls(int(low), int(high)) if separator else cls(int(low), int(low))
        except ValueError as error:
            raise ValueError(f"length {text!r}: expected N or MIN..MAX ({error})") from None

    def sample(self, rng: random.Random) -> int:
        return self.low if self.low == self.high else rng.randint(self.low, self.high)

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}..{self.high}"


def synthetic_prompt(words: int, rng: random.Random, vocabulary: Sequence[str] = _WORDS) -> str:
    """`words` random words of `vocabulary` (about as many tokens; exactly as many with calibrated words): random
    so that no prefix cache serves one prompt to every user."""
    return " ".join(rng.choices(vocabulary, k=words))


def seeded_words(words: int, *key: object, vocabulary: Sequence[str] = _WORDS) -> str:
    """`words` random words that depend only on `key`: every user, process and run with the same key gets the
    same text, which is what makes a shared prefix shared (and a run reproducible)."""
    return " ".join(random.Random(":".join(map(str, ("llamacert", *key)))).choices(vocabulary, k=words))


def load_prompts(path: Path) -> list[str]:
    """Prompts from a dataset file: JSONL with a "prompt" string per line, or plain text with one per line."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        prompts = []
        for number, line in enumerate(lines, start=1):
            item = json.loads(line)
            if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
                raise ValueError(f"{path}:{number}: expected an object with a 'prompt' string")
            prompts.append(item["prompt"])
    else:
        prompts = lines
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


@dataclass(frozen=True)
class SharedPrefix:
    """Prompts that start with one of `count` shared prefixes of `tokens` tokens, on a `share` of requests.

    So a server's prefix cache can be measured: with `count` 1 and `share` 1 every prompt starts alike (what
    vLLM's prefix-repetition and GuideLLM's prefix workloads send); the rest of each prompt stays random. The
    prefixes depend only on the seed, so every user and worker sends the same ones, and a run can be repeated.
    """

    tokens: int
    share: float = 1.0
    count: int = 1
    seed: int = 0
    words: tuple[str, ...] = _WORDS

    def __post_init__(self) -> None:
        if self.tokens < 1:
            raise ValueError("--prefix-tokens must be at least 1 (0 turns shared prefixes off)")
        if not 0 < self.share <= 1:
            raise ValueError("--prefix-share is the fraction of requests with a shared prefix: above 0, at most 1")
        if self.count < 1:
            raise ValueError("--prefix-count (distinct prefixes) must be at least 1")

    @cached_property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(
            seeded_words(self.tokens, "prefix", self.seed, index, vocabulary=self.words) for index in range(self.count)
        )

    def draw(self, rng: random.Random) -> str | None:
        """A prefix for the next request, or None when it is one of the (1 - share) without."""
        if self.share < 1 and rng.random() >= self.share:
            return None
        return self.prefixes[0] if self.count == 1 else rng.choice(self.prefixes)

    def __str__(self) -> str:
        return f"{self.tokens} tokens on {self.share:.0%} of requests, {self.count} distinct"


def request_body(kind: RequestKind, prompt: str | list[dict[str, str]], max_tokens: int, ignore_eos: bool) -> bytes:
    """A request of `kind`: a completion of a prompt, or a chat of one user message (or of a whole history)."""
    body: dict[str, Any]
    if kind.api == "chat":
        body = {"messages": [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt}
    else:
        body = {"prompt": prompt}
    body["max_tokens"] = max_tokens
    if ignore_eos:
        body["ignore_eos"] = True
    if kind.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class PlannedRequest:
    """One request ready to send; `turn` numbers a conversation's requests from 1 (None: no conversation)."""

    kind: RequestKind
    body: bytes
    turn: int | None = None
    keep_answer: bool = False
    """Read the answer's text: a conversation appends it to its history."""

    @property
    def stats_name(self) -> str:
        """Its name in Locust's statistics: a conversation's first turn apart from the later, longer ones."""
        if self.turn is None:
            return self.kind.stats_name
        return f"{self.kind.stats_name} turn {1 if self.turn == 1 else '2+'}"


@dataclass(frozen=True)
class Workload:
    """Draws requests: a kind from the mix by weight, a prompt, and max_tokens from the output length range.

    With `ignore_eos` the server generates exactly max_tokens, so the output length is the one configured
    (ignore_eos is in the Llama API's request table). Streaming requests ask for the usage chunk
    (stream_options.include_usage), the only honest source of token counts for a stream.
    """

    mix: tuple[RequestKind, ...]
    prompt_tokens: LengthRange
    output_tokens: LengthRange
    prompts: tuple[str, ...] = ()
    ignore_eos: bool = True
    prefix: SharedPrefix | None = None
    turns: int = 1
    """Above 1: each user holds conversations of this many turns (chat only)."""
    think_time_s: float = 0.0
    """Seconds a user waits between one turn's answer and its next message."""
    words: tuple[str, ...] = _WORDS
    """What synthetic prompts are made of (the calibrated one-token words, where the endpoint tokenizes)."""

    def __post_init__(self) -> None:
        if self.turns < 1:
            raise ValueError("--turns must be at least 1")
        if self.think_time_s < 0:
            raise ValueError("--think-time must not be negative")
        if self.turns > 1 and any(kind.api != "chat" for kind in self.mix):
            raise ValueError("--turns above 1 holds conversations, which need the chat API: use a chat-only --mix")

    def draw_kind(self, rng: random.Random) -> RequestKind:
        """A request kind from the mix, by weight."""
        return self.mix[0] if len(self.mix) == 1 else rng.choices(self.mix, [k.weight for k in self.mix])[0]

    def draw_prompt(self, rng: random.Random) -> str:
        """A prompt: from the file or synthetic, after a shared prefix when one is drawn."""
        prompt = (
            rng.choice(self.prompts)
            if self.prompts
            else synthetic_prompt(self.prompt_tokens.sample(rng), rng, self.words)
        )
        prefix = self.prefix.draw(rng) if self.prefix is not None else None
        return prompt if prefix is None else f"{prefix} {prompt}"

    def plan(self, rng: random.Random) -> PlannedRequest:
        kind = self.draw_kind(rng)
        return PlannedRequest(
            kind, request_body(kind, self.draw_prompt(rng), self.output_tokens.sample(rng), self.ignore_eos)
        )

    def conversation(self, rng: random.Random) -> Conversation:
        """A new conversation of `turns` turns, on one request kind drawn from the mix."""
        return Conversation(self, self.draw_kind(rng))

    def mean_tokens_per_request(self) -> float:
        """Prompt plus output tokens of an average request, for sizing load against a tokens-per-minute limit."""
        prompt = (
            sum(len(p.split()) for p in self.prompts) / len(self.prompts) if self.prompts else self.prompt_tokens.mean
        )
        if self.prefix is not None:
            prompt += self.prefix.tokens * self.prefix.share
        if self.turns > 1:
            # turn k carries k user messages and k - 1 answers: on average (turns + 1) / 2 and (turns - 1) / 2
            prompt = prompt * (self.turns + 1) / 2 + self.output_tokens.mean * (self.turns - 1) / 2
        return prompt + self.output_tokens.mean


@dataclass
class Conversation:
    """One user's conversation: each turn sends the whole history plus a new user message; the assistant's real
    answer is appended before the next turn, so later turns carry ever longer prompts."""

    workload: Workload
    kind: RequestKind
    messages: list[dict[str, str]] = field(default_factory=list)
    turn: int = 0

    @property
    def done(self) -> bool:
        return self.turn >= self.workload.turns

    def next_request(self, rng: random.Random) -> PlannedRequest:
        if self.done:
            raise ValueError(f"the conversation has had its {self.workload.turns} turns")
        self.turn += 1
        self.messages.append({"role": "user", "content": self.workload.draw_prompt(rng)})
        max_tokens = self.workload.output_tokens.sample(rng)
        body = request_body(self.kind, self.messages, max_tokens, self.workload.ignore_eos)
        return PlannedRequest(self.kind, body, turn=self.turn, keep_answer=True)

    def answered(self, text: str) -> None:
        """The assistant's answer to the last turn, as the endpoint sent it."""
        self.messages.append({"role": "assistant", "content": text})
