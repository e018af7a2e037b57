"""perf.settings: the option table, parsing as Locust (or its web UI) hands options over, and back."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from perf.settings import API_KEY_ENV, OPTIONS, LoadSettings
from perf.workload import LengthRange, parse_mix

_LOCUST_ONLY = ("env_var", "is_secret", "include_in_web_ui", "is_required", "is_multiple")


def _parser() -> argparse.ArgumentParser:
    """The option table on plain argparse, without Locust's web-UI keywords."""
    parser = argparse.ArgumentParser()
    for option in OPTIONS:
        parser.add_argument(option.flag, **{k: v for k, v in option.kwargs.items() if k not in _LOCUST_ONLY})
    return parser


def test_defaults_parse_to_the_default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert LoadSettings.from_options(_parser().parse_args([])) == LoadSettings()


def test_settings_survive_a_round_trip_through_options() -> None:
    settings = LoadSettings(
        endpoint_key="k",
        auth_header="api-key",
        mix=tuple(parse_mix("chat+stream@azure:3,completion")),
        prompt_tokens=LengthRange(8, 16),
        output_tokens=LengthRange(4, 4),
        prompt_file=Path("prompts.txt"),
        ignore_eos=False,
        arrival="poisson",
        user_rate=0.25,
        honour_retry_after=True,
        records_dir=Path("/tmp/records"),
        request_timeout=30.0,
        seed=7,
        check_fraction=0.25,
        steps=(1, 2, 4),
        step_duration=12.5,
    )
    options = _parser().parse_args(["--endpoint-key=k", *settings.locust_arguments()])
    assert LoadSettings.from_options(options) == settings


@pytest.mark.parametrize(
    "workload",
    [
        {"prefix_tokens": 256, "prefix_share": 0.75, "prefix_count": 3, "turns": 4, "think_time": 1.5},
        {"trace": Path("trace.jsonl"), "trace_time_scale": 0.5, "trace_block_tokens": 16},
        {"prompt_words": ("the", "of", "river")},
    ],
)
def test_workload_settings_survive_a_round_trip_through_options(workload: dict[str, object]) -> None:
    settings = LoadSettings(mix=tuple(parse_mix("chat+stream")), seed=3, **workload)  # type: ignore[arg-type]
    options = _parser().parse_args(settings.locust_arguments())
    assert LoadSettings.from_options(options) == settings


def test_the_key_is_not_on_the_command_line_but_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = LoadSettings(endpoint_key="secret")
    assert not any("secret" in argument for argument in settings.locust_arguments())
    monkeypatch.setenv(API_KEY_ENV, "secret")
    assert LoadSettings.from_options(_parser().parse_args(settings.locust_arguments())).endpoint_key == "secret"


def test_web_ui_strings_are_parsed() -> None:
    options = argparse.Namespace(
        user_rate="", rate="10", honour_retry_after="true", no_ignore_eos=False, arrival="constant", seed="3"
    )
    settings = LoadSettings.from_options(options, users=4)
    assert settings.user_rate == 2.5 and settings.honour_retry_after and settings.seed == 3
    # a blank field is the option's default; an explicit 0 is kept, and judged
    blank = argparse.Namespace(prefix_tokens="8", prefix_share="", prefix_count="", turns="", trace_time_scale="")
    settings = LoadSettings.from_options(blank)
    assert (settings.prefix_share, settings.prefix_count, settings.turns, settings.trace_time_scale) == (1, 1, 1, 1)
    with pytest.raises(ValueError, match="--prefix-share"):
        LoadSettings.from_options(argparse.Namespace(prefix_tokens="8", prefix_share="0")).workload()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--arrival=poisson"], "needs a positive --user-rate"),
        (["--rate=5", "--arrival=poisson"], "needs the user count"),
        (["--user-rate=x"], "not a number"),
        (["--mix=chat+slow"], "stream"),
        (["--steps=1,x"], "--steps"),
        (["--check-fraction=1.5"], "--check-fraction must be between 0 and 1"),
        (["--check-fraction=-0.5"], "--check-fraction must not be negative"),
        (["--prefix-tokens=-4"], "--prefix-tokens must not be negative"),
        (["--trace=t.jsonl", "--turns=3"], "--trace sets prompts, lengths and arrival times itself: drop --turns"),
        (["--trace=t.jsonl", "--prefix-tokens=8"], "drop --prefix-tokens"),
        (["--trace=t.jsonl", "--arrival=constant", "--user-rate=1"], "drop --arrival"),
        (["--prompt-words=the,,of"], "--prompt-words must be a comma-separated list"),
    ],
)
def test_bad_options(arguments: list[str], message: str) -> None:
    options = argparse.Namespace(**{**vars(_parser().parse_args([])), **_raw(arguments)})
    with pytest.raises(ValueError, match=message):
        LoadSettings.from_options(options)


def _raw(arguments: list[str]) -> dict[str, str]:
    return {flag.removeprefix("--").replace("-", "_"): value for flag, value in (a.split("=", 1) for a in arguments)}
