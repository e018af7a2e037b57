"""perf.scenarios: the built-in scenarios parse, and the format refuses what cannot run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from perf.scenarios import SCENARIO_DIR, Scenario, ScenarioError, builtin_scenarios, load_scenario, parse_duration
from perf.workload import RequestKind


def test_the_builtin_scenarios() -> None:
    scenarios = builtin_scenarios()
    assert set(scenarios) == {
        "smoke", "throughput", "poisson", "sweep", "rate-limit", "rate-limit-under", "capacity",
        "shared-prefix", "multi-turn", "trace-replay",
    }  # fmt: skip
    smoke = scenarios["smoke"]
    assert {(kind.api, kind.stream, kind.route_family) for kind in smoke.mix} == {
        ("chat", True, "llama"), ("chat", False, "azure"), ("completion", True, "azure"), ("completion", False, "llama")
    }  # fmt: skip
    assert scenarios["throughput"].shape == "users"
    assert scenarios["poisson"].shape == "poisson" and scenarios["poisson"].rate == 2
    assert scenarios["sweep"].total_duration == 5 * 30
    limit = scenarios["rate-limit"]
    assert limit.rate_limit is not None and limit.rate_limit.mode == "above" and limit.rate_limit.multiple == 2
    assert not limit.honour_retry_after and limit.users >= 32
    under = scenarios["rate-limit-under"].rate_limit
    assert under is not None and under.mode == "under"
    prefix = scenarios["shared-prefix"]
    assert (prefix.prefix_tokens, prefix.prefix_share, prefix.prefix_count) == (512, 0.9, 4)
    assert scenarios["multi-turn"].turns == 5 and scenarios["multi-turn"].think_time == 1
    trace = scenarios["trace-replay"].trace
    # a trace named in a scenario file is found next to it
    assert trace is not None and trace.resolve() == SCENARIO_DIR.parent / "traces" / "example-mooncake.jsonl"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("2m", 120.0), ("1h30m", 5400.0), ("1m30.5s", 90.5), (15, 15.0)]
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "ten", "5 minutes", "-3"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def _scenario(**fields: Any) -> Scenario:
    return Scenario.model_validate({"name": "x", **fields})


def test_defaults() -> None:
    scenario = _scenario()
    assert scenario.mix == (RequestKind("chat", stream=True),)
    assert (scenario.users, scenario.duration, scenario.shape) == (1, 60.0, "users")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"shape": "poisson"}, "needs a rate"),
        ({"shape": "steps"}, "needs steps"),
        ({"shape": "steps", "steps": [{"users": 1}, {"rate": 2}], "step_arrival": "poisson"}, "all users or all rates"),
        ({"shape": "steps", "steps": [{"rate": 2}]}, "step_arrival constant or poisson"),
        ({"steps": [{"users": 1}]}, "only for shape steps"),
        ({"steps": [{"users": 1, "rate": 1}], "shape": "steps"}, "exactly one of users or rate"),
        ({"rate_limit": {"mode": "above", "multiple": 0.5}}, "multiple above 1"),
        ({"prompt_tokens": "9..3"}, "low <= high"),
        ({"requests": [{"api": "embeddings"}]}, "api"),
        ({"users": 2, "colour": "red"}, "colour"),
        ({"name": "Has Spaces"}, "name"),
    ],
)
def test_invalid_scenarios(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _scenario(**fields)


def test_scenario_files(tmp_path: Path) -> None:
    (tmp_path / "prompts.txt").write_text("hello\n")
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"name": "mine", "duration": "2m", "prompt_file": "prompts.txt"}))
    scenario = load_scenario(path)
    assert scenario.duration == 120 and scenario.prompt_file == tmp_path / "prompts.txt"
    assert load_scenario("smoke").name == "smoke"
    with pytest.raises(ScenarioError, match="built-in: "):
        load_scenario("nope")
    (tmp_path / "broken.yaml").write_text("name: broken\nusers: 0\n")
    with pytest.raises(ScenarioError, match=r"broken\.yaml"):
        load_scenario(tmp_path / "broken.yaml")
