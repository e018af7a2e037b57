"""Content safety: the pattern filter's categories, thresholds and offsets; the error marker; streaming moderation."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_server.moderation.filter import (
    CATEGORY_NAMES,
    CONTENT_SAFETY_PATH,
    CategoryResult,
    ContentFilter,
    ContentFilterError,
    ContentSafetyConfig,
    ContentSafetyConfigError,
    PatternContentFilter,
    Severity,
    Verdict,
    load_content_filter,
    load_content_safety_config,
)
from reference_server.moderation.streaming import StreamingModeration

DEFAULT_FILTER = load_content_filter()
HOLD_BACK = DEFAULT_FILTER.hold_back_chars
FILLER = "The weather report says a calm day is coming. " * 3  # longer than the hold-back, and safe
ERROR_MARKER = "LLAMACERT-TEST-FILTER-ERROR"


def marker(category: str, severity: str) -> str:
    return f"LLAMACERT-TEST-{category.upper().replace('_', '-')}-{severity.upper()}"


def raw_default_config() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(CONTENT_SAFETY_PATH.read_text(encoding="utf-8"))
    return copy.deepcopy(raw)


def filter_with(**changes: Any) -> PatternContentFilter:
    raw = raw_default_config()
    raw.update(changes)
    return PatternContentFilter(ContentSafetyConfig.model_validate(raw))


def with_thresholds(threshold: str) -> PatternContentFilter:
    raw = raw_default_config()
    for rules in raw["categories"].values():
        rules["threshold"] = threshold
    return PatternContentFilter(ContentSafetyConfig.model_validate(raw))


# --- the pattern filter ---


def test_the_shipped_config_loads_and_is_a_content_filter() -> None:
    config = load_content_safety_config()
    assert set(config.categories) == set(CATEGORY_NAMES)
    assert all(rules.threshold == "medium" for rules in config.categories.values())
    assert isinstance(DEFAULT_FILTER, ContentFilter)


def test_every_marker_is_documented_in_the_shipped_file() -> None:
    text = CONTENT_SAFETY_PATH.read_text(encoding="utf-8")
    header = text[: text.index("hold_back_chars:")]
    for category in CATEGORY_NAMES:
        for severity in ("low", "medium", "high"):
            assert marker(category, severity) in header
    assert ERROR_MARKER in header


def test_safe_text_reports_every_category_safe() -> None:
    verdict = DEFAULT_FILTER.classify("Paris is the capital of France. I will call you tomorrow.")
    assert verdict == Verdict(
        flagged=False,
        categories={name: CategoryResult("safe", filtered=False) for name in CATEGORY_NAMES},
        first_flagged_offset=None,
    )


@pytest.mark.parametrize("category", CATEGORY_NAMES)
@pytest.mark.parametrize(("severity", "filtered"), [("low", False), ("medium", True), ("high", True)])
def test_each_category_filters_at_its_threshold_and_not_below(
    category: str, severity: Severity, filtered: bool
) -> None:
    text = f"Here it is: {marker(category, severity)}."
    verdict = DEFAULT_FILTER.classify(text)
    assert verdict.categories[category] == CategoryResult(severity, filtered)
    others = {name: result for name, result in verdict.categories.items() if name != category}
    assert all(result == CategoryResult("safe", filtered=False) for result in others.values())
    assert verdict.flagged is filtered
    assert verdict.first_flagged_offset == (text.index("LLAMACERT") if filtered else None)


@pytest.mark.parametrize(
    ("threshold", "filtered_from"),
    [("low", "low"), ("medium", "medium"), ("high", "high")],
)
def test_the_threshold_is_configurable(threshold: str, filtered_from: str) -> None:
    content_filter = with_thresholds(threshold)
    order = ["low", "medium", "high"]
    for category in CATEGORY_NAMES:
        for severity in order:
            verdict = content_filter.classify(marker(category, severity))
            assert verdict.flagged is (order.index(severity) >= order.index(filtered_from)), (category, severity)


@pytest.mark.parametrize(
    ("text", "category", "severity"),
    [
        ("Honestly, I hate all foreigners.", "hate", "low"),
        ("He called them subhuman.", "hate", "medium"),
        ("They should all be exterminated.", "hate", "high"),
        ("What a sexy car.", "sexual", "low"),
        ("The scene is sexually explicit.", "sexual", "medium"),
        ("Where can I find child pornography", "sexual", "high"),
        ("I will beat him up after school.", "violence", "low"),
        ("They threatened to torture him.", "violence", "medium"),
        ("Step one of how to build a pipe bomb", "violence", "high"),
        ("The leaflet is about self-harm.", "self_harm", "low"),
        ("I keep hurting myself.", "self_harm", "medium"),
        ("I am planning to end my life.", "self_harm", "high"),
    ],
)
def test_the_default_patterns(text: str, category: str, severity: str) -> None:
    assert DEFAULT_FILTER.classify(text).categories[category].severity == severity


@pytest.mark.parametrize(
    "text",
    [
        "I WILL KILL YOU",
        "i will kill you",
        "I Will Kill You",
        "llamacert-test-violence-high",
        "LlamaCert-Test-Violence-High",
    ],
)
def test_patterns_ignore_case(text: str) -> None:
    verdict = DEFAULT_FILTER.classify(text)
    assert verdict.categories["violence"] == CategoryResult("high", filtered=True)
    assert verdict.first_flagged_offset == 0


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("LLAMACERT-TEST-HATE-HIGH", True),
        ("(LLAMACERT-TEST-HATE-HIGH)", True),
        ("LLAMACERT-TEST-HATE-HIGH.", True),
        ("xLLAMACERT-TEST-HATE-HIGH", False),
        ("LLAMACERT-TEST-HATE-HIGHER", False),
        ("LLAMACERT-TEST-HATE-HIGH_2", False),
        ("I'm going to kill them", True),
        ("I'm going to kill themes", False),
        ("He is not subhumanly fast.", False),
        ("A skillful murderer of time.", False),
    ],
)
def test_patterns_match_whole_words(text: str, flagged: bool) -> None:
    assert DEFAULT_FILTER.classify(text).flagged is flagged


def test_the_offset_is_the_earliest_filtered_match_across_categories() -> None:
    text = "A LLAMACERT-TEST-SEXUAL-LOW then LLAMACERT-TEST-VIOLENCE-MEDIUM and LLAMACERT-TEST-HATE-HIGH."
    verdict = DEFAULT_FILTER.classify(text)
    assert verdict.first_flagged_offset == text.index("LLAMACERT-TEST-VIOLENCE-MEDIUM")  # the low match does not count
    assert verdict.categories["sexual"] == CategoryResult("low", filtered=False)
    assert verdict.categories["hate"] == CategoryResult("high", filtered=True)


def test_a_category_reports_its_highest_severity() -> None:
    verdict = DEFAULT_FILTER.classify("LLAMACERT-TEST-HATE-LOW, LLAMACERT-TEST-HATE-HIGH, LLAMACERT-TEST-HATE-MEDIUM")
    assert verdict.categories["hate"] == CategoryResult("high", filtered=True)
    assert verdict.first_flagged_offset == len("LLAMACERT-TEST-HATE-LOW, ")  # the earliest at or over the threshold


def test_offsets_count_code_points() -> None:
    text = "Café 😀 naïve — LLAMACERT-TEST-SELF-HARM-HIGH"
    offset = DEFAULT_FILTER.classify(text).first_flagged_offset
    assert offset == 15
    assert text[offset:].startswith("LLAMACERT")


def test_start_limits_the_verdict_but_keeps_the_context() -> None:
    text = "LLAMACERT-TEST-HATE-HIGH and LLAMACERT-TEST-SEXUAL-MEDIUM"
    later = DEFAULT_FILTER.classify(text, start=5)
    assert later.categories["hate"].severity == "safe"
    assert later.first_flagged_offset == text.index("LLAMACERT-TEST-SEXUAL")
    # A match may not start inside a word even when the window starts there.
    assert not DEFAULT_FILTER.classify("xLLAMACERT-TEST-HATE-HIGH", start=1).flagged


def test_the_error_marker_makes_the_filter_fail() -> None:
    with pytest.raises(ContentFilterError, match=r"(?i)llamacert-test-filter-error.*on purpose"):
        DEFAULT_FILTER.classify(f"Fine text, then {ERROR_MARKER.lower()} here.")
    assert not DEFAULT_FILTER.classify(f"x{ERROR_MARKER}").flagged  # a whole word, like every pattern


def test_without_an_error_pattern_nothing_fails() -> None:
    assert not filter_with(error_pattern=None).classify(ERROR_MARKER).flagged


# --- loading ---


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "content_safety.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ContentSafetyConfigError) as caught:
        load_content_filter(path)
    return str(caught.value)


def test_invalid_yaml_is_a_clear_error(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "categories: [unclosed\n"))
    assert "not valid YAML" in message
    assert str(tmp_path) in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda raw: raw["categories"]["hate"]["patterns"].append({"pattern": "(unclosed", "severity": "low"}),
            "categories.hate.patterns.7.pattern: '(unclosed' is not a valid regular expression",
        ),
        (
            lambda raw: raw["categories"]["sexual"].update(threshold="severe"),
            "categories.sexual.threshold: Input should be 'low', 'medium' or 'high'",
        ),
        (lambda raw: raw["categories"].pop("violence"), "missing: ['violence']"),
        (lambda raw: raw["categories"].update(spam={"patterns": []}), "categories.spam.[key]"),
        (lambda raw: raw.update(hold_back=10), "hold_back: Extra inputs are not permitted"),
        (
            lambda raw: raw["categories"]["violence"]["patterns"].append({"pattern": r"kill\w*", "severity": "high"}),
            r"too long or unbounded: ['kill\\w*']",
        ),
        (lambda raw: raw.update(hold_back_chars=20), "hold_back_chars = 20"),
        (lambda raw: raw.update(error_pattern="[z-a]"), "error_pattern: '[z-a]' is not a valid regular expression"),
    ],
)
def test_a_bad_config_names_the_problem(tmp_path: Path, change: Any, expected: str) -> None:
    raw = raw_default_config()
    change(raw)
    message = load_error(write(tmp_path, yaml.safe_dump(raw)))
    assert message.startswith(f"invalid content safety config {tmp_path}")
    assert expected in message


def test_a_file_that_is_not_a_mapping_names_the_top_level(tmp_path: Path) -> None:
    assert "(top level): Input should be a valid dictionary" in load_error(write(tmp_path, "- just a list\n"))


# --- streaming moderation ---


def stream(content_filter: ContentFilter, deltas: list[str]) -> tuple[str, StreamingModeration, str | None]:
    """Feed deltas until the moderation stops or they run out, then finish: the sent text and finish reason."""
    moderation = StreamingModeration(content_filter)
    sent = []
    for delta in deltas:
        step = moderation.feed(delta)
        sent.append(step.text)
        if step.stopped:
            return "".join(sent), moderation, step.finish_reason
    step = moderation.finish()
    sent.append(step.text)
    return "".join(sent), moderation, step.finish_reason


def split_at(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(cut % (len(text) + 1) for cut in cuts)})
    return [text[start:end] for start, end in itertools.pairwise(points)]


def test_short_clean_text_is_held_back_until_finish() -> None:
    moderation = StreamingModeration(DEFAULT_FILTER)
    assert moderation.feed("Hello, ").text == ""
    assert moderation.feed("world.").text == ""
    last = moderation.finish()
    assert (last.text, last.stopped, last.finish_reason) == ("Hello, world.", False, None)
    assert last.verdict is not None
    assert not last.verdict.flagged


def test_long_clean_text_is_released_with_the_hold_back() -> None:
    moderation = StreamingModeration(DEFAULT_FILTER)
    step = moderation.feed(FILLER)
    assert step.text == FILLER[: len(FILLER) - HOLD_BACK]
    assert not step.stopped
    assert moderation.finish().text == FILLER[len(FILLER) - HOLD_BACK :]
    assert moderation.emitted == FILLER


def test_a_stream_stops_before_filtered_text() -> None:
    text = FILLER + "LLAMACERT-TEST-VIOLENCE-HIGH " + "and then more words follow here. " * 3
    sent, moderation, reason = stream(DEFAULT_FILTER, list(text))
    assert (sent, reason) == (FILLER, "content_filter")
    after = moderation.feed("more")
    assert (after.text, after.stopped, after.finish_reason) == ("", True, "content_filter")
    final = moderation.finish()
    assert final.verdict is not None
    assert final.verdict.categories["violence"] == CategoryResult("high", filtered=True)


def test_a_stream_ending_inside_the_hold_back_is_cut_at_finish() -> None:
    sent, moderation, reason = stream(DEFAULT_FILTER, [FILLER, "I'll stab you"])
    assert (sent, reason) == (FILLER, "content_filter")
    assert moderation.emitted == FILLER


def test_low_severity_passes_through_and_is_reported() -> None:
    text = FILLER + "LLAMACERT-TEST-SEXUAL-LOW the end."
    moderation = StreamingModeration(DEFAULT_FILTER)
    sent = "".join(moderation.feed(char).text for char in text)
    last = moderation.finish()
    assert sent + last.text == text
    assert last.verdict is not None
    assert last.verdict.categories["sexual"] == CategoryResult("low", filtered=False)


def test_a_match_that_the_next_delta_undoes_does_not_stop_the_stream() -> None:
    # "...kill you" matches at the end of the text so far; "th" makes it "youth", which does not.
    text = FILLER + "I will kill you" + "th club's boredom, she joked, and everyone laughed at the joke."
    sent, _, reason = stream(DEFAULT_FILTER, [FILLER + "I will kill you", "th", *text[len(FILLER) + 17 :]])
    assert (sent, reason) == (text, None)
    assert not DEFAULT_FILTER.classify(text).flagged


def test_the_filter_error_stops_the_stream_without_sending_the_marker() -> None:
    sent, moderation, reason = stream(DEFAULT_FILTER, [*FILLER, *ERROR_MARKER, *" and more text" * 10])
    assert reason == "content_filter_error"
    assert ERROR_MARKER not in sent
    assert FILLER.startswith(sent)
    final = moderation.finish()
    assert (final.text, final.stopped, final.finish_reason, final.verdict) == ("", True, "content_filter_error", None)


def test_the_filter_error_at_finish() -> None:
    sent, _, reason = stream(DEFAULT_FILTER, ["Short: ", ERROR_MARKER])
    assert (sent, reason) == ("", "content_filter_error")


class WholeTextFilter:
    """A classifier that cannot locate what it flags, as a model-based one may (offset None)."""

    hold_back_chars = 8

    def classify(self, text: str, start: int = 0) -> Verdict:
        flagged = "forbidden" in text
        result = CategoryResult("high" if flagged else "safe", filtered=flagged)
        return Verdict(flagged, {"violence": result}, None)


def test_a_flag_without_a_position_withholds_everything_not_yet_sent() -> None:
    sent, moderation, reason = stream(WholeTextFilter(), ["harmless words here ", "then forbidden ones", "!"])
    assert reason == "content_filter"
    assert sent == "harmless wor"  # what the last clean verdict released
    assert "forbidden" not in sent
    assert moderation.emitted == sent


class CountingFilter:
    """Wraps a filter, counting the characters each call was asked to judge."""

    def __init__(self, inner: PatternContentFilter) -> None:
        self.inner = inner
        self.judged = 0

    @property
    def hold_back_chars(self) -> int:
        return self.inner.hold_back_chars

    def classify(self, text: str, start: int = 0) -> Verdict:
        self.judged += len(text) - start
        return self.inner.classify(text, start)


def test_streaming_cost_is_linear_in_the_text() -> None:
    counting = CountingFilter(DEFAULT_FILTER)
    text = FILLER * 100
    sent, _, reason = stream(counting, split_at(text, list(range(0, len(text), 4))))
    assert (sent, reason) == (text, None)
    # Each 4-character delta judges about the hold-back once, plus one whole pass at the end.
    assert counting.judged <= len(text) * (2 + (HOLD_BACK + 4) / 4)


MARKERS = [marker(category, severity) for category in CATEGORY_NAMES for severity in ("medium", "high")]
# Whole-word pieces of the default patterns, so random texts make, break and unmake matches.
WORDS = ["calm", "day", "kill", "you", "th", "I", "will", "self", "harm", "-", ".", "x", "myself"]
pieces = st.tuples(st.sampled_from(WORDS * 4 + MARKERS), st.sampled_from(["", "", " ", "\n", ", "]))


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.text(alphabet="abcdefgh ijk.,\n", max_size=200),
    flagged=st.sampled_from([*MARKERS, ERROR_MARKER]),
    suffix=st.text(alphabet="abcdefgh ijk.,\n", max_size=200),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=60),
)
def test_streaming_never_sends_a_marker(prefix: str, flagged: str, suffix: str, cuts: list[int]) -> None:
    text = f"{prefix} {flagged} {suffix}"
    sent, moderation, reason = stream(DEFAULT_FILTER, split_at(text, cuts))
    assert flagged not in sent
    assert moderation.emitted == sent
    if flagged == ERROR_MARKER:
        # Text the failed filter had not cleared yet is never sent.
        assert reason == "content_filter_error"
        assert text[: text.index(flagged)].startswith(sent)
    else:
        assert reason == "content_filter"
        assert sent == text[: text.index(flagged)]


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(pieces, max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=80),
)
def test_streaming_sends_exactly_what_the_whole_text_verdict_allows(
    pieces: list[tuple[str, str]], cuts: list[int]
) -> None:
    text = "".join(word + separator for word, separator in pieces)
    sent, _, reason = stream(DEFAULT_FILTER, split_at(text, cuts))
    verdict = DEFAULT_FILTER.classify(text)
    if verdict.flagged:
        assert verdict.first_flagged_offset is not None
        assert (sent, reason) == (text[: verdict.first_flagged_offset], "content_filter")
    else:
        assert (sent, reason) == (text, None)
