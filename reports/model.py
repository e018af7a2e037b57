"""The certification report: one versioned pydantic model built from conformance results and load summaries.

The renderers (`render_json`, `render_junit`, `render_html`) and `compare` read only this model.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import socket
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)

from spec.load_summary import (
    READABLE_LOAD_SUMMARY_VERSIONS,
    LatencySamples,
    LatencyStats,
    LoadSummary,
    RateLimitResult,
    TimelineBucket,
)
from spec.profiles import Profile, load_profiles

__all__ = [
    "INPUT_SCHEMA_VERSION",
    "REPORT_SCHEMA_VERSION",
    "ConformanceSection",
    "Environment",
    "Evidence",
    "EvidenceRequest",
    "GroupSummary",
    "LatencySamples",
    "LatencyStats",
    "LoadSection",
    "ModelInfo",
    "Outcome",
    "OutcomeCounts",
    "RateLimitResult",
    "Report",
    "ReportInputError",
    "RuleResult",
    "Severity",
    "Strictness",
    "TimelineBucket",
    "Verdict",
    "VerdictStatus",
    "judge",
]

REPORT_SCHEMA_VERSION: Final = 1
"""Version of report.json; bump it on any change that an older reader could misread."""
INPUT_SCHEMA_VERSION: Final = 1
"""Version of the conformance results file this module reads (load summaries: spec.load_summary)."""

Outcome = Literal["pass", "fail", "skip", "error", "not-run"]
"""What happened to a rule, from pytest's own reports: `error` its test crashed, `not-run` nothing exercised it."""
Severity = Literal["required", "advisory"]
VerdictStatus = Literal["PASS", "FAIL", "INCOMPLETE"]
Strictness = Literal["docs", "compat"]
"""The values of `spec.document.Strictness`, spelled out so reading a report needs no JSON Schema machinery."""


class ReportInputError(ValueError):
    """An input (conformance results, load summary, report.json) is unreadable or breaks its contract."""


def _as_utc(value: datetime) -> datetime:
    # Producers may write times without an offset; reading them as UTC keeps all times comparable.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Timestamp = Annotated[datetime, AfterValidator(_as_utc)]


class _ReportModel(BaseModel):
    """Base of every report model: unknown fields are an error, so a producer that drifts fails loudly.

    NaN and infinity are refused too: JSON has no spelling for them, so report.json could not be read back.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelInfo(_ReportModel):
    """The model the endpoint says it serves: its /info answer as far as it makes sense.

    The answer comes from the endpoint under test, so it is not trusted to follow the contract: other fields are
    dropped and a missing or non-string value reads as None. Whether /info conforms is a rule's business.
    """

    model_config = ConfigDict(protected_namespaces=(), extra="ignore")

    model_name: str | None = None
    model_type: str | None = None
    model_provider_name: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _text_or_none(cls, value: object) -> str | None:
        return value if isinstance(value, str) else None


class Environment(_ReportModel):
    """Where llamacert ran."""

    python_version: str
    platform: str
    llamacert_version: str
    hostname: str
    cpu_count: int | None

    @classmethod
    def capture(cls) -> Environment:
        """The environment of this process."""
        try:
            version = importlib.metadata.version("llamacert")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown (not installed)"
        return cls(
            python_version=platform.python_version(),
            platform=platform.platform(),
            llamacert_version=version,
            hostname=socket.gethostname(),
            cpu_count=os.cpu_count(),
        )


class EvidenceRequest(_ReportModel):
    """The request behind a piece of evidence."""

    method: str
    url: str
    body: JsonValue = None


class Evidence(_ReportModel):
    """One test case's exchange that shows why a rule failed."""

    test: str
    request: EvidenceRequest | None = Field(description="None when no request was recorded.")
    status: int | None
    response_excerpt: str
    message: str


class RuleResult(_ReportModel):
    """The outcome of one conformance rule over every test case that exercised it."""

    rule_id: str
    group: str
    title: str
    source: str = Field(description="The docs row the rule comes from.")
    severity: Severity = Field(default="required", description="advisory rules never decide a verdict.")
    conditional: bool = Field(
        default=False, description="It judges a behaviour not every endpoint shows (a 429): not seeing it is no gap."
    )
    outcome: Outcome
    message: str | None
    tests: int = Field(ge=0, description="How many test cases exercised the rule.")
    evidence: list[Evidence]


class OutcomeCounts(_ReportModel):
    """How many rules ended in each outcome."""

    passed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    skipped: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    not_run: int = Field(default=0, ge=0)

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped + self.errors + self.not_run

    @classmethod
    def of(cls, rules: Sequence[RuleResult]) -> OutcomeCounts:
        outcomes = [rule.outcome for rule in rules]
        return cls(
            passed=outcomes.count("pass"),
            failed=outcomes.count("fail"),
            skipped=outcomes.count("skip"),
            errors=outcomes.count("error"),
            not_run=outcomes.count("not-run"),
        )


class GroupSummary(_ReportModel):
    """The outcome counts of one rule group."""

    group: str
    counts: OutcomeCounts


def _check_version(data: object, expected: int, what: str) -> dict[str, Any]:
    """`data` without its schema_version, once that is the one this module reads."""
    if not isinstance(data, Mapping):
        raise ReportInputError(f"{what}: expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != expected:
        raise ReportInputError(f"{what}: schema_version is {version!r}; this llamacert reads version {expected}")
    return {key: value for key, value in data.items() if key != "schema_version"}


def _describe(error: ValidationError, limit: int = 5) -> str:
    """A validation error in one line: the first few `field.path: problem` pairs."""
    problems = [
        f"{'.'.join(str(part) for part in detail['loc']) or '(top level)'}: {detail['msg']}"
        for detail in error.errors()[:limit]
    ]
    if error.error_count() > limit:
        problems.append(f"and {error.error_count() - limit} more")
    return "; ".join(problems)


_DERIVED_CONFORMANCE_FIELDS = frozenset({"totals", "groups"})


class ConformanceSection(_ReportModel):
    """The conformance suite's results, with outcome counts overall and per rule group."""

    endpoint: str | None = Field(description="None when no test reached an endpoint.")
    strictness: Strictness
    profile: str | None = Field(description="None when the suite ran without a profile.")
    model: ModelInfo | None
    started_at: Timestamp
    finished_at: Timestamp
    duration_s: float = Field(ge=0)
    quick: bool = Field(default=False, description="The suite ran its fast subset only.")
    pytest_exit_status: int | None = Field(
        default=None, description="pytest's exit status (0 all passed, 1 tests failed, 2-5 interrupted or broken)."
    )
    not_offered: list[str] = Field(default_factory=list, description="Routes that answered 404: not offered (R5).")
    rules: list[RuleResult]

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        # report.json carries the counts for its readers; they are recomputed from the rules, never trusted.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if key not in _DERIVED_CONFORMANCE_FIELDS}
        return data

    @field_validator("model", mode="before")
    @classmethod
    def _model_object_or_none(cls, value: object) -> object:
        return value if isinstance(value, dict | ModelInfo) else None

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> ConformanceSection:
        duplicates = sorted(rule_id for rule_id, count in Counter(r.rule_id for r in self.rules).items() if count > 1)
        if duplicates:
            raise ValueError(f"rule ids appear more than once: {', '.join(duplicates)}")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def totals(self) -> OutcomeCounts:
        return OutcomeCounts.of(self.rules)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def groups(self) -> list[GroupSummary]:
        """Rule groups in the order their first rule appears."""
        groups = dict.fromkeys(rule.group for rule in self.rules)
        return [GroupSummary(group=group, counts=OutcomeCounts.of(self.rules_in(group))) for group in groups]

    def rules_in(self, group: str) -> list[RuleResult]:
        return [rule for rule in self.rules if rule.group == group]

    @classmethod
    def from_results(cls, data: Mapping[str, Any]) -> ConformanceSection:
        """The section for a conformance results file."""
        fields = _check_version(data, INPUT_SCHEMA_VERSION, "conformance results")
        try:
            return cls.model_validate(fields)
        except ValidationError as error:
            raise ReportInputError(f"conformance results: {_describe(error)}") from None


class LoadSection(LoadSummary):
    """One load scenario's summary: the producer's model itself (spec/load_summary.py), read from its file."""

    @property
    def finished_at(self) -> datetime:
        return self.started_at + timedelta(seconds=self.duration_s)

    @classmethod
    def from_summary(cls, data: Mapping[str, Any] | LoadSummary) -> LoadSection:
        """The section for a load summary (its parsed JSON, or the model perf built)."""
        if isinstance(data, LoadSummary):
            data = data.model_dump(mode="json")
        if not isinstance(data, Mapping):
            raise ReportInputError(f"load summary: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version not in READABLE_LOAD_SUMMARY_VERSIONS:
            readable = " or ".join(str(v) for v in READABLE_LOAD_SUMMARY_VERSIONS)
            raise ReportInputError(
                f"load summary: schema_version is {version!r}; this llamacert reads version {readable}"
            )
        try:
            return cls.model_validate(dict(data))
        except ValidationError as error:
            raise ReportInputError(f"load summary {data.get('scenario', '?')!r}: {_describe(error)}") from None


class Verdict(_ReportModel):
    """The overall verdict for one profile, with the reasons behind it."""

    profile: str
    status: VerdictStatus
    reasons: list[str]


PYTEST_EXIT_MEANINGS: Final = {
    2: "was interrupted",
    3: "hit an internal error",
    4: "was called wrongly (usage error)",
    5: "collected no tests",
}


def _required(rule: RuleResult, profile: Profile | None) -> bool:
    """A verdict for `profile` needs the rule's evidence (an unknown profile: every required-severity rule)."""
    if rule.severity != "required":
        return False
    if rule.conditional and rule.outcome in ("skip", "not-run"):
        return False
    return profile is None or profile.requires_rule(rule.rule_id)


def _judge_conformance(
    conformance: ConformanceSection, profile: Profile | None
) -> tuple[list[str], list[str], list[str]]:
    failures: list[str] = []
    gaps: list[str] = []
    notes: list[str] = []
    required = [rule for rule in conformance.rules if _required(rule, profile)]
    for rule in conformance.rules:
        detail = rule.message or rule.title
        if rule not in required:
            if rule.outcome == "fail":
                notes.append(f"advisory rule {rule.rule_id} failed: {detail} ({rule.source})")
            continue
        if rule.outcome == "fail":
            failures.append(f"rule {rule.rule_id} failed: {detail} ({rule.source})")
        elif rule.outcome == "error":
            gaps.append(f"rule {rule.rule_id} could not be checked (its test crashed): {detail}")
        elif rule.outcome == "skip":
            gaps.append(f"required rule {rule.rule_id} was skipped: {detail}")
        elif rule.outcome == "not-run":
            gaps.append(f"required rule {rule.rule_id} did not run: {detail}")
    status = conformance.pytest_exit_status
    if status in PYTEST_EXIT_MEANINGS:
        gaps.append(f"the conformance suite {PYTEST_EXIT_MEANINGS[status]} (pytest exit status {status})")
    elif status == 1 and not failures:
        gaps.append("pytest reported failed tests although no required rule failed: a test broke without a verdict")
    if not failures and not gaps:
        subset = " of the quick subset" if conformance.quick else ""
        passed = sum(rule.outcome == "pass" for rule in required)
        notes.insert(0, f"all {len(required)} required rules{subset} passed ({passed} with evidence)")
    return failures, gaps, notes


def judge(profile: str, conformance: ConformanceSection | None, loads: Sequence[LoadSection]) -> Verdict:
    """FAIL when a required rule, a rate-limit check, a load objective or a response checked under load failed;
    INCOMPLETE when a required rule errored, was skipped or did not run, or a part did not run; PASS only when
    every required rule passed with evidence.

    The profile (spec/profiles.yaml `requires`) names the required rules; advisory rules never decide.
    """
    failures: list[str] = []
    gaps: list[str] = []
    passes: list[str] = []
    known = load_profiles().get(profile)
    if conformance is None:
        gaps.append("the conformance suite did not run")
    elif not conformance.rules:
        gaps.append("the conformance suite checked no rules")
    else:
        rule_failures, rule_gaps, notes = _judge_conformance(conformance, known)
        failures += rule_failures
        gaps += rule_gaps
        passes += notes
    if not loads:
        gaps.append("no load test ran")
    for load in loads:
        if load.requests == 0:
            gaps.append(f"load scenario {load.scenario!r} sent no requests")
        for objective in load.missed_objectives:
            failures.append(f"load scenario {load.scenario!r} missed objective {objective.name}: {objective.text}")
        for finding in load.failed_checks:
            message = finding.first_failure.message if finding.first_failure is not None else finding.title
            broke = (
                f"load scenario {load.scenario!r}: {finding.failed} of {finding.passed + finding.failed} sampled "
                f"responses broke rule {finding.rule_id} under load: {message}"
            )
            # an advisory rule is reported beside the verdict and never decides, as in the conformance suite
            if finding.severity == "required":
                failures.append(broke)
            else:
                passes.append(f"advisory (does not decide): {broke}")
        if load.rate_limit is None:
            continue
        limit = load.rate_limit
        measured = (
            f"offered {limit.offered_rpm:,.1f} requests/min, accepted {limit.accepted_rpm:,.1f} requests/min "
            f"and {limit.accepted_tpm:,.0f} tokens/min"
        )
        source = f" ({limit.source})" if limit.source else ""
        if limit.verdict == "fail":
            because = "; ".join(limit.reasons) or measured
            failures.append(f"rule {limit.rule_id} failed under load in scenario {load.scenario!r}: {because}{source}")
        else:
            passes.append(f"rule {limit.rule_id} passed under load in scenario {load.scenario!r}: {measured}")
    if known is not None and known.has_rate_limits and not any(load.rate_limit for load in loads):
        rpm, tpm = known.requests_per_minute, known.tokens_per_minute
        limits = f"{f'{rpm:,}' if rpm else 'no'} requests/min, {f'{tpm:,}' if tpm else 'no'} tokens/min"
        gaps.append(f"profile {profile} sets rate limits ({limits}) but no load scenario checked them")
    if failures:
        return Verdict(profile=profile, status="FAIL", reasons=failures + gaps)
    if gaps:
        return Verdict(profile=profile, status="INCOMPLETE", reasons=gaps)
    return Verdict(profile=profile, status="PASS", reasons=passes)


def _same_endpoint(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class Report(_ReportModel):
    """A certification run: what was tested, where, the results, and the verdict per profile."""

    schema_version: Literal[1] = REPORT_SCHEMA_VERSION
    generated_at: Timestamp
    endpoint: str | None = Field(description="None only when no part ran.")
    profile: str = Field(description="The profile the run is judged against.")
    strictness: Strictness | None
    model: ModelInfo | None
    environment: Environment
    started_at: Timestamp | None
    finished_at: Timestamp | None
    conformance: ConformanceSection | None
    loads: list[LoadSection]
    verdicts: list[Verdict] = Field(min_length=1)

    @model_validator(mode="after")
    def _judged_against_profile(self) -> Report:
        if not any(verdict.profile == self.profile for verdict in self.verdicts):
            raise ValueError(f"no verdict for the report's profile {self.profile!r}")
        return self

    @property
    def verdict(self) -> Verdict:
        """The verdict for the report's own profile."""
        return next(verdict for verdict in self.verdicts if verdict.profile == self.profile)

    @classmethod
    def from_parts(
        cls,
        conformance: Mapping[str, Any] | None,
        loads: Sequence[Mapping[str, Any] | LoadSummary],
        profile: str,
        environment: Environment | None = None,
    ) -> Report:
        """The report for a conformance results file and load summaries (parsed JSON), judged against `profile`.

        Raises ReportInputError when an input breaks its contract or the parts describe different runs.
        """
        section = ConformanceSection.from_results(conformance) if conformance is not None else None
        load_sections = [LoadSection.from_summary(load) for load in loads]
        if section is not None and section.profile is not None and section.profile != profile:
            raise ReportInputError(f"the conformance suite ran for profile {section.profile!r}, not {profile!r}")
        parts: list[ConformanceSection | LoadSection] = [*([section] if section else []), *load_sections]
        endpoints = [part.endpoint for part in parts if part.endpoint is not None]
        if any(not _same_endpoint(endpoint, endpoints[0]) for endpoint in endpoints):
            raise ReportInputError(f"the parts tested different endpoints: {', '.join(sorted(set(endpoints)))}")
        return cls(
            generated_at=datetime.now(UTC),
            endpoint=endpoints[0] if endpoints else None,
            profile=profile,
            strictness=section.strictness if section else None,
            model=section.model if section else None,
            environment=environment or Environment.capture(),
            started_at=min((part.started_at for part in parts), default=None),
            finished_at=max((part.finished_at for part in parts), default=None),
            conformance=section,
            loads=load_sections,
            verdicts=[judge(profile, section, load_sections)],
        )

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "report") -> Report:
        """A report from report.json text; ReportInputError naming `source` when it is not one."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ReportInputError(f"{source}: not valid JSON ({error})") from None
        if isinstance(data, dict) and "verdicts" not in data:
            raise ReportInputError(f"{source}: not a llamacert report.json (it has no 'verdicts')")
        fields = _check_version(data, REPORT_SCHEMA_VERSION, source)
        try:
            return cls.model_validate({"schema_version": REPORT_SCHEMA_VERSION, **fields})
        except ValidationError as error:
            raise ReportInputError(f"{source}: {_describe(error)}") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        target = Path(path)
        target.write_text(self.to_json(), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Report:
        """A report from a report.json file; ReportInputError when it cannot be read or is not one."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ReportInputError(f"{path}: cannot read it ({error.strerror or error})") from None
        except UnicodeDecodeError:
            raise ReportInputError(f"{path}: not UTF-8 text") from None
        return cls.from_json(text, source=str(path))
