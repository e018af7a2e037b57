"""The load test's own settings: one table of Locust command-line options, parsed into `LoadSettings`.

The locustfile registers the table with Locust's parser (so the options show in `locust --help` and the web
UI, and reach workers from the master); the runner turns `LoadSettings` back into those options. Option
values may arrive as strings from the web UI, so parsing converts every value itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

from perf.trace import MOONCAKE_BLOCK_TOKENS, TraceReplay, load_trace
from perf.workload import (
    PROMPT_WORDS,
    LengthRange,
    RequestKind,
    SharedPrefix,
    Workload,
    format_mix,
    load_prompts,
    parse_mix,
)

__all__ = [
    "API_KEY_ENV",
    "OPTIONS",
    "Arrival",
    "AuthHeader",
    "LoadSettings",
    "Option",
    "parse_steps",
]

API_KEY_ENV: Final = "LLAMACERT_API_KEY"
"""The endpoint key is read from this variable by default, so it stays out of process listings."""

Arrival = Literal["closed", "constant", "poisson"]
AuthHeader = Literal["bearer", "api-key"]


@dataclass(frozen=True)
class Option:
    """One command-line option: argparse's arguments plus Locust's web-UI flags."""

    flag: str
    kwargs: Mapping[str, Any]

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


OPTIONS: Final[tuple[Option, ...]] = (
    Option(
        "--endpoint-key",
        {
            "default": "",
            "env_var": API_KEY_ENV,
            "is_secret": True,
            "help": f"The endpoint's key (default: ${API_KEY_ENV}).",
        },
    ),
    Option(
        "--auth-header",
        {"default": "bearer", "choices": list(get_args(AuthHeader)), "help": "Send the key as Bearer or api-key."},
    ),
    Option(
        "--mix",
        {
            "default": "chat+stream",
            "help": "Request mix: comma-separated API[+stream][@llama|@azure][:WEIGHT], "
            "e.g. chat+stream:3,completion@azure",
        },
    ),
    Option("--prompt-tokens", {"default": "64", "help": "Prompt length in tokens: N or MIN..MAX (uniform)."}),
    Option("--output-tokens", {"default": "64", "help": "max_tokens: N or MIN..MAX (uniform)."}),
    Option("--prompt-file", {"default": "", "help": "Prompts to draw from: .jsonl with 'prompt', or one per line."}),
    Option(
        "--no-ignore-eos",
        {"action": "store_true", "default": False, "help": "Let generation stop at EOS (default: ignore_eos=true)."},
    ),
    Option(
        "--prefix-tokens",
        {"type": int, "default": 0, "help": "Shared-prefix prompts: a prefix of this many tokens (0: none)."},
    ),
    Option(
        "--prefix-share",
        {"type": float, "default": 1.0, "help": "Shared-prefix prompts: fraction of requests with a prefix (0..1]."},
    ),
    Option("--prefix-count", {"type": int, "default": 1, "help": "Shared-prefix prompts: distinct prefixes."}),
    Option("--turns", {"type": int, "default": 1, "help": "Multi-turn chat: turns per conversation (1: none)."}),
    Option("--think-time", {"type": float, "default": 0.0, "help": "Multi-turn chat: seconds between turns."}),
    Option(
        "--trace",
        {
            "default": "",
            "help": "Replay this Mooncake-style JSONL trace at its recorded times (timestamp in ms, "
            "input_length, output_length, optional hash_ids).",
        },
    ),
    Option(
        "--trace-time-scale",
        {"type": float, "default": 1.0, "help": "Trace replay: multiply the recorded gaps (0.5: twice as fast)."},
    ),
    Option(
        "--trace-block-tokens",
        {
            "type": int,
            "default": MOONCAKE_BLOCK_TOKENS,
            "help": f"Trace replay: tokens per hash_ids block (default {MOONCAKE_BLOCK_TOKENS}, Mooncake's).",
        },
    ),
    Option(
        "--prompt-words",
        {
            "default": "",
            "help": "Comma-separated words synthetic prompts are made of (set by llamacert load: the words the "
            "endpoint's /tokenize counts as one token each; empty: the built-in list).",
        },
    ),
    Option(
        "--arrival",
        {
            "default": "closed",
            "choices": list(get_args(Arrival)),
            "help": "closed: each user sends again as soon as answered; constant/poisson: open-loop arrivals "
            "at --user-rate per user (or --rate in all).",
        },
    ),
    Option("--user-rate", {"type": float, "default": 0.0, "help": "Open loop: requests/s each user sends."}),
    Option(
        "--rate",
        {"type": float, "default": 0.0, "help": "Open loop: requests/s in all, divided among -u users at start."},
    ),
    Option(
        "--honour-retry-after",
        {
            "action": "store_true",
            "default": False,
            "help": "After a 429 a user waits Retry-After before sending again.",
        },
    ),
    Option(
        "--records-dir",
        {
            "default": "perf-results/records",
            "include_in_web_ui": False,
            "help": "Each Locust process appends its raw request records to its own JSONL file here.",
        },
    ),
    Option("--request-timeout", {"type": float, "default": 120.0, "help": "Seconds before a request counts as hung."}),
    Option("--seed", {"type": int, "default": 0, "help": "Seed of the prompt and mix draws (0: random)."}),
    Option(
        "--check-fraction",
        {
            "type": float,
            "default": 0.0,
            "help": "Record this share of requests whole (0: none) for the conformance rules to judge after the run.",
        },
    ),
    Option(
        "--steps",
        {"default": "", "help": "Stepped sweep (perf/shapes.py): users per step, comma-separated, e.g. 1,2,4,8."},
    ),
    Option("--step-duration", {"type": float, "default": 30.0, "help": "Stepped sweep: seconds per step."}),
    Option(
        "--stop-after",
        {
            "type": float,
            "default": 0.0,
            "include_in_web_ui": False,
            "help": "Master: stop the test after this many seconds, wait for every worker's last records, quit "
            "(instead of -t, which quits before workers finish their requests in flight).",
        },
    ),
)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _number(value: Any, name: str) -> float:
    text = _text(value)
    try:
        number = float(text) if text else 0.0
    except ValueError:
        raise ValueError(f"--{name}: not a number: {value!r}") from None
    if number < 0:
        raise ValueError(f"--{name} must not be negative")
    return number


def _number_or(value: Any, name: str, default: float) -> float:
    """A number option whose empty value (the web UI's blank field) means its default; 0 stays 0, to be judged."""
    return default if _text(value) == "" else _number(value, name)


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else _text(value).lower() in ("1", "true", "yes", "on")


def parse_steps(text: str) -> tuple[int, ...]:
    """Users per step of a sweep: `1,2,4,8`."""
    try:
        steps = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--steps: expected comma-separated user counts, got {text!r}") from None
    if any(step < 0 for step in steps):
        raise ValueError("--steps: user counts must not be negative")
    return steps


_DEFAULT_LENGTH: Final = LengthRange(64, 64)


@dataclass(frozen=True)
class LoadSettings:
    """Everything a Locust user of perf/locustfile.py needs to know."""

    endpoint_key: str = field(default="", repr=False)
    auth_header: AuthHeader = "bearer"
    mix: tuple[RequestKind, ...] = (RequestKind("chat", stream=True),)
    prompt_tokens: LengthRange = _DEFAULT_LENGTH
    output_tokens: LengthRange = _DEFAULT_LENGTH
    prompt_file: Path | None = None
    ignore_eos: bool = True
    arrival: Arrival = "closed"
    user_rate: float = 0.0
    honour_retry_after: bool = False
    records_dir: Path = Path("perf-results/records")
    request_timeout: float = 120.0
    seed: int = 0
    check_fraction: float = 0.0
    """Share of requests recorded whole for `llamacert load --check` (0: none)."""
    steps: tuple[int, ...] = ()
    step_duration: float = 30.0
    prefix_tokens: int = 0
    prefix_share: float = 1.0
    prefix_count: int = 1
    turns: int = 1
    think_time: float = 0.0
    trace: Path | None = None
    trace_time_scale: float = 1.0
    trace_block_tokens: int = MOONCAKE_BLOCK_TOKENS
    prompt_words: tuple[str, ...] = PROMPT_WORDS
    """Synthetic prompts' words: the runner's calibrated one-token words when the endpoint tokenizes."""

    def __post_init__(self) -> None:
        if not self.prompt_words or any(not word or " " in word or "," in word for word in self.prompt_words):
            raise ValueError("--prompt-words must be a comma-separated list of words without spaces")
        if self.arrival not in get_args(Arrival):
            raise ValueError(f"--arrival must be one of {', '.join(get_args(Arrival))}")
        if self.auth_header not in get_args(AuthHeader):
            raise ValueError(f"--auth-header must be one of {', '.join(get_args(AuthHeader))}")
        if self.arrival != "closed" and self.user_rate <= 0:
            raise ValueError(f"--arrival {self.arrival} needs a positive --user-rate or --rate")
        if self.request_timeout <= 0:
            raise ValueError("--request-timeout must be positive")
        if not 0 <= self.check_fraction <= 1:
            raise ValueError("--check-fraction must be between 0 and 1")
        if self.prefix_tokens < 0:
            raise ValueError("--prefix-tokens must not be negative")
        if self.trace is not None:
            others = {
                "--prefix-tokens": self.prefix_tokens > 0,
                "--turns": self.turns > 1,
                "--prompt-file": self.prompt_file is not None,
                "--arrival (the trace's times are the arrivals)": self.arrival != "closed",
                "--steps": bool(self.steps),
            }
            given = [flag for flag, used in others.items() if used]
            if given:
                raise ValueError(f"--trace sets prompts, lengths and arrival times itself: drop {', '.join(given)}")

    @classmethod
    def from_options(cls, options: Any, *, users: int | None = None) -> LoadSettings:
        """From Locust's parsed options; `--rate` is divided among `users` when given."""
        values = vars(options)
        rate = _number(values.get("rate"), "rate")
        user_rate = _number(values.get("user_rate"), "user-rate")
        if rate and not user_rate:
            if not users:
                raise ValueError("--rate needs the user count (-u) to divide it among users")
            user_rate = rate / users
        prompt_file = _text(values.get("prompt_file"))
        trace = _text(values.get("trace"))
        return cls(
            endpoint_key=_text(values.get("endpoint_key")) or os.environ.get(API_KEY_ENV, ""),
            auth_header=_text(values.get("auth_header")) or "bearer",  # type: ignore[arg-type]  # validated above
            mix=tuple(parse_mix(_text(values.get("mix")) or "chat+stream")),
            prompt_tokens=LengthRange.parse(_text(values.get("prompt_tokens")) or "64"),
            output_tokens=LengthRange.parse(_text(values.get("output_tokens")) or "64"),
            prompt_file=Path(prompt_file) if prompt_file else None,
            ignore_eos=not _flag(values.get("no_ignore_eos")),
            arrival=_text(values.get("arrival")) or "closed",  # type: ignore[arg-type]  # validated above
            user_rate=user_rate,
            honour_retry_after=_flag(values.get("honour_retry_after")),
            records_dir=Path(_text(values.get("records_dir")) or "perf-results/records"),
            request_timeout=_number(values.get("request_timeout"), "request-timeout") or 120.0,
            seed=int(_number(values.get("seed"), "seed")),
            check_fraction=_number(values.get("check_fraction"), "check-fraction"),
            steps=parse_steps(_text(values.get("steps"))),
            step_duration=_number(values.get("step_duration"), "step-duration") or 30.0,
            prefix_tokens=int(_number(values.get("prefix_tokens"), "prefix-tokens")),
            prefix_share=_number_or(values.get("prefix_share"), "prefix-share", 1.0),
            prefix_count=int(_number_or(values.get("prefix_count"), "prefix-count", 1)),
            turns=int(_number_or(values.get("turns"), "turns", 1)),
            think_time=_number(values.get("think_time"), "think-time"),
            trace=Path(trace) if trace else None,
            trace_time_scale=_number_or(values.get("trace_time_scale"), "trace-time-scale", 1.0),
            trace_block_tokens=int(
                _number_or(values.get("trace_block_tokens"), "trace-block-tokens", MOONCAKE_BLOCK_TOKENS)
            ),
            prompt_words=tuple(_text(values.get("prompt_words")).split(","))
            if values.get("prompt_words")
            else PROMPT_WORDS,
        )

    def workload(self) -> Workload:
        prompts = tuple(load_prompts(self.prompt_file)) if self.prompt_file else ()
        prefix = (
            SharedPrefix(self.prefix_tokens, self.prefix_share, self.prefix_count, self.seed, self.prompt_words)
            if self.prefix_tokens
            else None
        )
        return Workload(
            self.mix,
            self.prompt_tokens,
            self.output_tokens,
            prompts,
            self.ignore_eos,
            prefix=prefix,
            turns=self.turns,
            think_time_s=self.think_time,
            words=self.prompt_words,
        )

    def trace_replay(self) -> TraceReplay | None:
        """The trace to replay, read and checked (a TraceError names file:line), or None."""
        if self.trace is None:
            return None
        return TraceReplay(
            load_trace(self.trace),
            self.trace_time_scale,
            self.trace_block_tokens,
            self.seed,
            self.ignore_eos,
            self.prompt_words,
        )

    def locust_arguments(self) -> list[str]:
        """The options that reproduce these settings (the key excepted: it travels in $LLAMACERT_API_KEY)."""
        arguments = [
            f"--auth-header={self.auth_header}",
            f"--mix={format_mix(self.mix)}",
            f"--prompt-tokens={self.prompt_tokens}",
            f"--output-tokens={self.output_tokens}",
            f"--arrival={self.arrival}",
            f"--user-rate={self.user_rate!r}",
            f"--records-dir={self.records_dir}",
            f"--request-timeout={self.request_timeout!r}",
            f"--seed={self.seed}",
            f"--step-duration={self.step_duration!r}",
        ]
        if self.prompt_file is not None:
            arguments.append(f"--prompt-file={self.prompt_file}")
        if self.prompt_words != PROMPT_WORDS:
            arguments.append(f"--prompt-words={','.join(self.prompt_words)}")
        if not self.ignore_eos:
            arguments.append("--no-ignore-eos")
        if self.honour_retry_after:
            arguments.append("--honour-retry-after")
        if self.check_fraction:
            arguments.append(f"--check-fraction={self.check_fraction!r}")
        if self.steps:
            arguments.append(f"--steps={','.join(map(str, self.steps))}")
        if self.prefix_tokens:
            arguments += [
                f"--prefix-tokens={self.prefix_tokens}",
                f"--prefix-share={self.prefix_share!r}",
                f"--prefix-count={self.prefix_count}",
            ]
        if self.turns > 1:
            arguments += [f"--turns={self.turns}", f"--think-time={self.think_time!r}"]
        if self.trace is not None:
            arguments += [
                f"--trace={self.trace}",
                f"--trace-time-scale={self.trace_time_scale!r}",
                f"--trace-block-tokens={self.trace_block_tokens}",
            ]
        return arguments
