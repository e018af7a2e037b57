"""Load scenarios: a small YAML format (perf/scenarios/*.yaml holds the built-in ones) and its parser.

A scenario says how many users, for how long, in what shape (fixed users, open-loop constant or Poisson
arrivals, stepped sweep), sending what (request mix, prompt and output lengths), and, for rate-limit
scenarios, how far above or below the endpoint's limits to offer load.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from perf.objectives import parse_objectives
from perf.workload import Api, LengthRange, RequestKind, RouteFamily

__all__ = [
    "SCENARIO_DIR",
    "RateLimitPlan",
    "RequestMixEntry",
    "Scenario",
    "ScenarioError",
    "Step",
    "builtin_scenarios",
    "load_scenario",
    "parse_duration",
]

SCENARIO_DIR: Final = Path(__file__).with_name("scenarios")

_DURATION: Final = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?$")


class ScenarioError(ValueError):
    """A scenario file that cannot be read or breaks the format."""


def parse_duration(value: str | float) -> float:
    """Seconds from `90`, `90s`, `2m`, `1h30m` or `1m30.5s` (Locust's -t forms)."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value.strip())
        if not value.strip() or match is None:
            raise ValueError(f"duration {value!r}: expected e.g. 90, 90s, 2m or 1h30m")
        seconds = sum(float(match[unit] or 0) * scale for unit, scale in (("h", 3600), ("m", 60), ("s", 1)))
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be positive")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _warmup(value: str | float) -> float:
    return 0.0 if value in (0, "0", "0s", "") else parse_duration(value)


Warmup = Annotated[float, BeforeValidator(_warmup)]


def _length(value: Any) -> str:
    return str(LengthRange.parse(value))


LengthText = Annotated[str, BeforeValidator(_length)]


class _ScenarioModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RequestMixEntry(_ScenarioModel):
    """One kind of request and its share of the mix."""

    api: Api
    stream: bool = False
    route_family: RouteFamily = "llama"
    weight: float = Field(default=1.0, gt=0)

    def kind(self) -> RequestKind:
        return RequestKind(self.api, self.stream, self.route_family, self.weight)


class Step(_ScenarioModel):
    """One step of a sweep: a user count (closed loop) or a request rate (open loop)."""

    users: int | None = Field(default=None, ge=1)
    rate: float | None = Field(default=None, gt=0, description="Requests per second in all.")

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.users is None) == (self.rate is None):
            raise ValueError("a step has exactly one of users or rate")
        return self


class RateLimitPlan(_ScenarioModel):
    """Offer `multiple` times the load the endpoint's limits allow: above 1 to see them enforced, below to see none."""

    mode: Literal["above", "under"]
    multiple: float = Field(gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.mode == "above") != (self.multiple > 1):
            raise ValueError(f"mode {self.mode} needs a multiple {'above' if self.mode == 'above' else 'below'} 1")
        return self


class Scenario(_ScenarioModel):
    """One load scenario."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    users: int = Field(default=1, ge=1, description="Users (closed loop) or open-loop clients sharing the rate.")
    spawn_rate: float | None = Field(default=None, gt=0, description="Users started per second; default all at once.")
    duration: Duration = 60.0
    shape: Literal["users", "constant", "poisson", "steps"] = "users"
    rate: float | None = Field(default=None, gt=0, description="constant/poisson: requests per second in all.")
    steps: tuple[Step, ...] = ()
    step_duration: Duration = 30.0
    step_arrival: Literal["closed", "constant", "poisson"] = "closed"
    requests: tuple[RequestMixEntry, ...] = (RequestMixEntry(api="chat", stream=True),)
    prompt_tokens: LengthText = "64"
    output_tokens: LengthText = "64"
    prompt_file: Path | None = None
    honour_retry_after: bool = True
    rate_limit: RateLimitPlan | None = None
    warmup: Warmup = Field(default=0.0, description="Seconds at the start left out of every figure.")
    slo: str | None = Field(default=None, description="Objectives, as --slo takes them: ttft_p95=500ms,errors=1%")

    @model_validator(mode="after")
    def _shape_needs(self) -> Self:
        if self.shape in ("constant", "poisson") and self.rate is None and self.rate_limit is None:
            raise ValueError(f"shape {self.shape} needs a rate (or rate_limit, which derives one from the limits)")
        if self.shape == "steps":
            if not self.steps:
                raise ValueError("shape steps needs steps")
            by_rate = {step.rate is not None for step in self.steps}
            if len(by_rate) > 1:
                raise ValueError("steps are all users or all rates")
            if by_rate == {True} and self.step_arrival == "closed":
                raise ValueError("rate steps need step_arrival constant or poisson")
        elif self.steps:
            raise ValueError("steps are only for shape steps")
        if not self.requests:
            raise ValueError("requests must not be empty")
        if self.slo is not None:
            parse_objectives(self.slo)
        return self

    @property
    def mix(self) -> tuple[RequestKind, ...]:
        return tuple(entry.kind() for entry in self.requests)

    @property
    def total_duration(self) -> float:
        """How long the scenario runs: a sweep's steps, otherwise its duration."""
        return len(self.steps) * self.step_duration if self.shape == "steps" else self.duration


def _read(path: Path) -> Scenario:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ScenarioError(f"{path}: {error}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping")
    if raw.get("prompt_file"):
        # A dataset named in a scenario file is found next to it.
        raw["prompt_file"] = path.parent / str(raw["prompt_file"])
    try:
        return Scenario.model_validate(raw)
    except ValidationError as error:
        raise ScenarioError(f"{path}: {error}") from None


def builtin_scenarios() -> dict[str, Scenario]:
    """The scenarios shipped in perf/scenarios/, by name."""
    scenarios = {}
    for path in sorted(SCENARIO_DIR.glob("*.yaml")):
        scenario = _read(path)
        if scenario.name != path.stem:
            raise ScenarioError(f"{path}: name {scenario.name!r} differs from the file name")
        scenarios[scenario.name] = scenario
    return scenarios


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name, or a scenario file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return _read(path)
    scenarios = builtin_scenarios()
    try:
        return scenarios[str(name_or_path)]
    except KeyError:
        raise ScenarioError(
            f"unknown scenario {str(name_or_path)!r}; built-in: {', '.join(scenarios)} (or give a .yaml file)"
        ) from None
