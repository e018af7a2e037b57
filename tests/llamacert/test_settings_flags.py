"""`llamacert serve`'s flags are generated from ServerSettings: every field has one, with its description."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from launch import project_environment
from llamacert.settings_flags import add_settings_flags, settings_from_flags
from reference_server.settings import ServerSettings
from spec.profiles import load_profiles


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_settings_flags(
        parser,
        ServerSettings,
        aliases={"requests_per_minute": ["--rpm"]},
        choices={"profile": sorted(load_profiles())},
        key_value_flags={"vllm_engine_args": "--engine-arg"},
    )
    return parser


def test_every_setting_has_a_flag_with_help() -> None:
    actions = {action.dest: action for action in _parser()._actions if action.dest != "help"}
    assert set(actions) == set(ServerSettings.model_fields)
    undocumented = [name for name, action in actions.items() if not (action.help or "").strip()]
    assert not undocumented


def test_flags_become_typed_settings() -> None:
    flags = ["--port", "0", "--rpm", "12", "--no-content-safety", "--model", "m.gguf", "--api-key", "k"]
    engine = ["--engine-arg", "dtype=float32", "--engine-arg", "tensor_parallel_size=2"]
    namespace = _parser().parse_args([*flags, *engine, "--profile", "serverless-llama31"])
    settings = ServerSettings(**settings_from_flags(ServerSettings, namespace))
    assert (settings.port, settings.requests_per_minute, settings.content_safety) == (0, 12, False)
    assert settings.model == Path("m.gguf")
    assert settings.vllm_engine_args == {"dtype": "float32", "tensor_parallel_size": 2}
    assert settings.api_key == SecretStr("k")
    assert settings.profile == "serverless-llama31"


def test_flags_left_out_keep_defaults() -> None:
    assert settings_from_flags(ServerSettings, _parser().parse_args([])) == {}


def test_profile_choices_come_from_profiles_yaml() -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["--profile", "no-such-profile"])


def test_serve_help_lists_every_setting() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "llamacert.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env=project_environment(),
    ).stdout
    for name in ServerSettings.model_fields:
        flag = "--engine-arg" if name == "vllm_engine_args" else f"--{name.replace('_', '-')}"
        assert flag in help_text
