"""The content filter: classifies a text into the four categories with severities (the classifier only).

Serverless deployments pass prompts and completions through a content safety service; this module is the
reference server's stand-in. `PatternContentFilter` is deterministic, configured by `content_safety.yaml`
(categories of case-insensitive whole-word regexes with severities, and test markers that trigger every
path, `content_filter_error` included). How a stream is moderated is moderation/streaming.py; how the
HTTP layer applies a filter, with its time limit, is moderation/service.py.

Plugging in a model-based classifier (e.g. Llama Guard served by llama.cpp): write a class with
`hold_back_chars` and `classify(text, start)` returning a `Verdict` (the `ContentFilter` protocol), raising
`ContentFilterError` when the classifier fails or answers nonsense, and hand it to the HTTP layer instead of
`load_content_filter()`. Such a classifier judges whole passages, so it should set `first_flagged_offset`
to the start of the passage it objects to (None when it cannot say: the caller then withholds all of the
text not yet released), may read all of `text` rather than only `text[start:]`, and should report a
`hold_back_chars` covering the span over which its verdict can still change. `classify` is synchronous and
called once per streamed delta; a slow classifier should be fed larger deltas, and the HTTP layer runs it
under a timeout (a timeout is a `content_filter_error`).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "CATEGORY_NAMES",
    "CONTENT_SAFETY_PATH",
    "CategoryName",
    "CategoryResult",
    "CategoryRules",
    "ContentFilter",
    "ContentFilterError",
    "ContentSafetyConfig",
    "ContentSafetyConfigError",
    "FilterSeverity",
    "ModerationFinishReason",
    "PatternContentFilter",
    "PatternRule",
    "Severity",
    "Verdict",
    "load_content_filter",
    "load_content_safety_config",
]

CONTENT_SAFETY_PATH = Path(__file__).with_name("content_safety.yaml")

Severity = Literal["safe", "low", "medium", "high"]
FilterSeverity = Literal["low", "medium", "high"]
CategoryName = Literal["hate", "sexual", "violence", "self_harm"]
ModerationFinishReason = Literal["content_filter", "content_filter_error"]

CATEGORY_NAMES: tuple[CategoryName, ...] = ("hate", "sexual", "violence", "self_harm")
_SEVERITIES: tuple[Severity, ...] = ("safe", "low", "medium", "high")
_RANK: dict[str, int] = {severity: rank for rank, severity in enumerate(_SEVERITIES)}


# --- verdicts and the filter interface ---


@dataclass(frozen=True)
class CategoryResult:
    """One category's finding: the highest severity seen, and whether it reached the category's threshold."""

    severity: Severity
    filtered: bool


@dataclass(frozen=True)
class Verdict:
    """The classification of one text.

    `first_flagged_offset` is the character (code point) offset into the classified text where the
    earliest filtered content starts, so a completion can be cut just before it; None when nothing is
    filtered (or, from a classifier that cannot locate it, when the position is unknown).
    """

    flagged: bool
    categories: dict[str, CategoryResult]
    first_flagged_offset: int | None


class ContentFilterError(Exception):
    """The filter could not classify the text; the request ends with finish_reason content_filter_error."""


@runtime_checkable
class ContentFilter(Protocol):
    """Classifies text; sync and fast, since it runs on the server's event loop for every streamed delta."""

    @property
    def hold_back_chars(self) -> int:
        """How many trailing characters of a growing text may still change the verdict (streaming holds them)."""

    def classify(self, text: str, start: int = 0) -> Verdict:
        """The verdict on `text[start:]`, reading the text before `start` only as context.

        Offsets are into `text`. Raises ContentFilterError when classification fails.
        """


# --- configuration (content_safety.yaml) ---


def _compiled(pattern: str) -> re.Pattern[str]:
    # Whole words: the pattern may not start or end inside a longer word, whatever its first and last
    # characters are (a plain \b would demand a word character there).
    return re.compile(rf"(?<!\w)(?:{pattern})(?!\w)", re.IGNORECASE)


def _max_match_chars(pattern: str) -> int:
    # CPython's own regex parser knows a pattern's longest possible match; typeshed has no stub for it.
    parser: Any = importlib.import_module("re._parser")
    return int(parser.parse(pattern, re.IGNORECASE).getwidth()[1])


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern, re.IGNORECASE)
    except re.error as error:
        raise ValueError(f"{pattern!r} is not a valid regular expression: {error}") from None
    return pattern


class PatternRule(BaseModel):
    """One regular expression and the severity of what it matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str = Field(min_length=1, description="Case-insensitive regex, matched as whole words.")
    severity: FilterSeverity = Field(description="Severity of a match.")

    @field_validator("pattern")
    @classmethod
    def _pattern_is_a_regex(cls, pattern: str) -> str:
        return _check_regex(pattern)


class CategoryRules(BaseModel):
    """The patterns of one category and the severity from which it filters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: FilterSeverity = Field(default="medium", description="Filter at or above this severity.")
    patterns: list[PatternRule] = Field(description="What the category matches.")


class ContentSafetyConfig(BaseModel):
    """The whole content_safety.yaml file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hold_back_chars: int = Field(
        default=64, ge=1, description="Characters a stream holds back; every pattern must match at most this many."
    )
    error_pattern: str | None = Field(
        default=None, description="A regex whose presence makes the filter fail (to test content_filter_error)."
    )
    categories: dict[CategoryName, CategoryRules] = Field(description="Rules of each of the four categories.")

    @field_validator("error_pattern")
    @classmethod
    def _error_pattern_is_a_regex(cls, pattern: str | None) -> str | None:
        return None if pattern is None else _check_regex(pattern)

    @model_validator(mode="after")
    def _complete_and_streamable(self) -> ContentSafetyConfig:
        missing = [name for name in CATEGORY_NAMES if name not in self.categories]
        if missing:
            raise ValueError(f"every category needs rules (an empty pattern list is fine); missing: {missing}")
        patterns = [rule.pattern for rules in self.categories.values() for rule in rules.patterns]
        if self.error_pattern is not None:
            patterns.append(self.error_pattern)
        # Longer matches could be streamed out in part before the filter sees them whole.
        too_long = [pattern for pattern in patterns if _max_match_chars(pattern) > self.hold_back_chars]
        if too_long:
            raise ValueError(
                f"patterns must match at most hold_back_chars = {self.hold_back_chars} characters "
                f"(bound repetitions such as \\s+ as \\s{{1,3}}); too long or unbounded: {too_long}"
            )
        return self


class ContentSafetyConfigError(ValueError):
    """content_safety.yaml is not valid YAML or breaks the schema; the message names every problem."""


def load_content_safety_config(path: Path | None = None) -> ContentSafetyConfig:
    """Read and validate a content safety file (default: the shipped content_safety.yaml)."""
    path = CONTENT_SAFETY_PATH if path is None else path
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ContentSafetyConfigError(f"invalid content safety config {path}: not valid YAML: {error}") from None
    try:
        return ContentSafetyConfig.model_validate(raw)
    except ValidationError as error:
        problems = "\n".join(
            f"  {_location(item['loc'])}: {item['msg'].removeprefix('Value error, ')}" for item in error.errors()
        )
        raise ContentSafetyConfigError(f"invalid content safety config {path}:\n{problems}") from None


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


# --- the pattern filter ---


@dataclass(frozen=True)
class _CompiledRule:
    regex: re.Pattern[str]
    rank: int


class PatternContentFilter:
    """A deterministic ContentFilter from regex rules (see content_safety.yaml).

    Immutable after construction, so it may be called from worker threads (the HTTP layer's timeout).
    """

    def __init__(self, config: ContentSafetyConfig) -> None:
        self._hold_back_chars = config.hold_back_chars
        self._error = None if config.error_pattern is None else _compiled(config.error_pattern)
        self._rules = {
            name: (
                _RANK[config.categories[name].threshold],
                [
                    _CompiledRule(_compiled(rule.pattern), _RANK[rule.severity])
                    for rule in config.categories[name].patterns
                ],
            )
            for name in CATEGORY_NAMES
        }

    @property
    def hold_back_chars(self) -> int:
        return self._hold_back_chars

    def classify(self, text: str, start: int = 0) -> Verdict:
        """Every category's highest severity in `text[start:]`, and where the earliest filtered match starts."""
        if self._error is not None and (marker := self._error.search(text, start)) is not None:
            raise ContentFilterError(
                f"the content filter failed: the text contains the test marker {marker.group()!r} at offset "
                f"{marker.start()}, which makes it fail on purpose"
            )
        categories: dict[str, CategoryResult] = {}
        first_flagged: int | None = None
        for name, (threshold, rules) in self._rules.items():
            rank = 0
            category_first: int | None = None
            for rule in rules:
                # `search` from `start` still reads the text before it, so the whole-word check sees real context.
                match = rule.regex.search(text, start)
                if match is None:
                    continue
                rank = max(rank, rule.rank)
                if rule.rank >= threshold and (category_first is None or match.start() < category_first):
                    category_first = match.start()
            categories[name] = CategoryResult(_SEVERITIES[rank], filtered=category_first is not None)
            if category_first is not None and (first_flagged is None or category_first < first_flagged):
                first_flagged = category_first
        return Verdict(flagged=first_flagged is not None, categories=categories, first_flagged_offset=first_flagged)


def load_content_filter(path: Path | None = None) -> PatternContentFilter:
    """The pattern filter of a content safety file (default: the shipped content_safety.yaml)."""
    return PatternContentFilter(load_content_safety_config(path))
