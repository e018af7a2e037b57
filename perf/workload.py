"""What a load test sends: the request mix (API, streaming, route family), prompt and output lengths, bodies.

Pure and Locust-free, so scenarios, the runner and the tests share one parser for each setting.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, get_args

from spec.routes import Api, RouteFamily, generation_route

__all__ = [
    "Api",
    "LengthRange",
    "PlannedRequest",
    "RequestKind",
    "RouteFamily",
    "Workload",
    "format_mix",
    "load_prompts",
    "parse_mix",
    "synthetic_prompt",
]


# Common English words: one token each for Llama tokenizers (with their leading space) and for the
# simulated backend, so a prompt of N words is close to N prompt tokens without shipping a tokenizer.
_WORD_TEXT: Final = (
    "the of and to in is was for on that with as by at from it this be are or an which not have time data "
    "value result system network city river mountain ocean sky blue green red quick brown fox jumps over lazy "
    "dog one two three four five six seven eight nine ten light water stone house garden table window road"
)
_WORDS: Final = tuple(_WORD_TEXT.split())


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


def synthetic_prompt(words: int, rng: random.Random) -> str:
    """About `words` tokens of random words: random so that no prefix cache serves one prompt to every user."""
    return " ".join(rng.choices(_WORDS, k=words))


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
class PlannedRequest:
    """One request ready to send."""

    kind: RequestKind
    body: bytes


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

    def plan(self, rng: random.Random) -> PlannedRequest:
        kind = self.mix[0] if len(self.mix) == 1 else rng.choices(self.mix, [k.weight for k in self.mix])[0]
        prompt = rng.choice(self.prompts) if self.prompts else synthetic_prompt(self.prompt_tokens.sample(rng), rng)
        body: dict[str, Any] = (
            {"messages": [{"role": "user", "content": prompt}]} if kind.api == "chat" else {"prompt": prompt}
        )
        body["max_tokens"] = self.output_tokens.sample(rng)
        if self.ignore_eos:
            body["ignore_eos"] = True
        if kind.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return PlannedRequest(kind, json.dumps(body, separators=(",", ":")).encode())

    def mean_tokens_per_request(self) -> float:
        """Prompt plus output tokens of an average request, for sizing load against a tokens-per-minute limit."""
        prompt = (
            sum(len(p.split()) for p in self.prompts) / len(self.prompts) if self.prompts else self.prompt_tokens.mean
        )
        return prompt + self.output_tokens.mean
