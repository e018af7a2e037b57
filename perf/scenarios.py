"""Load scenarios: a small YAML format (perf/scenarios/*.yaml holds the built-in ones) and its parser.

A scenario says how many users, for how long, in what shape (fixed users, open-loop constant or Poisson
arrivals, stepped sweep), sending what (request mix, prompt and output lengths), and, for rate-limit
scenarios, how far above or below the endpoint's limits to offer load. A scenario may also send shared-prefix
prompts, multi-turn conversations, or replay a Mooncake-style trace (perf/trace.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from perf.objectives import parse_objectives
from perf.trace import MOONCAKE_BLOCK_TOKENS
from perf.workload import Api, LengthRange, RequestKind, RouteFamily

__all__ = [
    "SCENARIO_DIR",
    "CapacityPlan",
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


class CapacityPlan(_ScenarioModel):
    """A capacity search (perf/capacity.py): open-loop rates probed by bracketing and bisection."""

    start_rate: float = Field(default=1.0, gt=0, description="Requests/s of the first probe.")
    min_rate: float = Field(default=0.05, gt=0, description="Bracketing down stops below this rate.")
    max_rate: float = Field(default=10_000.0, gt=0, description="Never offer more (the published limits cap it too).")
    growth: float = Field(default=2.0, gt=1, description="Bracketing multiplies or divides the rate by this.")
    resolution: float = Field(default=0.1, gt=0, lt=1, description="Stop when the bracket is this narrow (share).")
    max_steps: int = Field(default=10, ge=1, le=30, description="Probes at most.")
    step_duration: Duration = 20.0
    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="Unless --slo gives errors=...")
    early_stop: bool = Field(default=True, description="End a probe once over-saturation is evident.")
    users_per_rate: float = Field(default=2.0, gt=0, description="Open-loop users per request/s offered.")
    max_users: int = Field(default=512, ge=1)


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
    capacity: CapacityPlan | None = Field(default=None, description="Search for the highest rate that holds.")
    prefix_tokens: int = Field(default=0, ge=0, description="Shared-prefix prompts: prefix length (0: none).")
    prefix_share: float = Field(default=1.0, gt=0, le=1, description="Fraction of requests with a shared prefix.")
    prefix_count: int = Field(default=1, ge=1, description="Distinct shared prefixes.")
    turns: int = Field(default=1, ge=1, description="Multi-turn chat: turns per conversation.")
    think_time: float = Field(default=0.0, ge=0, description="Multi-turn chat: seconds between turns.")
    trace: Path | None = Field(default=None, description="Replay this Mooncake-style JSONL trace.")
    trace_time_scale: float = Field(default=1.0, gt=0, description="Multiply the trace's gaps by this.")
    trace_block_tokens: int = Field(default=MOONCAKE_BLOCK_TOKENS, ge=1, description="Tokens per hash_ids block.")

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
        if self.trace is not None and self.shape != "users":
            raise ValueError("a trace brings its own arrival times: use shape users (users send its requests)")
        if self.capacity is not None and self.shape not in ("constant", "poisson"):
            raise ValueError("a capacity search probes open-loop rates: shape constant or poisson")
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
    for name in ("prompt_file", "trace"):
        if raw.get(name):
            # A dataset or trace named in a scenario file is found next to it.
            raw[name] = path.parent / str(raw[name])
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
