"""The one registry of conformance rules, and `judge`, which runs them over recorded exchanges.

A rule is a plain function over exchanges that raises `CheckFailure` with the evidence-worthy
message, or `NotApplicable` when the exchanges do not exercise it. An exchange rule sees every
exchange on its own; a probe rule sees the exchanges of one run of its probe, by role (a greedy
request and the same request with a stop sequence, a request without a key, ...). No I/O inside a
rule: the same functions judge a live run, a load test's responses, and saved exchanges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from conformance.exchange import Exchange
from conformance.rules.sources import resolve_source
from spec.document import Strictness
from spec.profiles import Profile, load_profiles

__all__ = [
    "BOTH_LEVELS",
    "RULES",
    "CheckFailure",
    "JudgeContext",
    "NotApplicable",
    "Rule",
    "RuleOutcome",
    "Severity",
    "exchange_rule",
    "judge",
    "probe_rule",
]

Severity = Literal["required", "advisory"]
BOTH_LEVELS = frozenset(Strictness)


class CheckFailure(AssertionError):
    """The exchanges break the rule."""


class NotApplicable(Exception):
    """The exchanges do not exercise the rule."""


@dataclass(frozen=True)
class JudgeContext:
    """How exchanges are judged: the strictness level and the deployment profile (None: no profile)."""

    strictness: Strictness = Strictness.DOCS
    profile: Profile | None = None


ExchangeCheck = Callable[[Exchange, JudgeContext], None]
ProbeCheck = Callable[[Mapping[str, Exchange], JudgeContext], None]
CheckT = TypeVar("CheckT", ExchangeCheck, ProbeCheck)


@dataclass(frozen=True)
class Rule:
    """One conformance rule: what it checks, how much it matters, where the spec says so.

    `sources` are pointers (`#/components/schemas/Usage/...` into spec/openapi.yaml, or a DECISIONS.md
    id), resolved to text by `source`. `conditional` rules judge a behaviour the suite cannot provoke on
    every endpoint (a 429's headers): not seeing it is not a gap in the evidence.
    """

    rule_id: str
    title: str
    sources: tuple[str, ...]
    severity: Severity = "required"
    strictness: frozenset[Strictness] = BOTH_LEVELS
    probe: str | None = None
    conditional: bool = False
    any_request: bool = False
    """An exchange rule that also judges answers to requests the suite sent as invalid (error rules)."""
    exchange_check: ExchangeCheck | None = field(default=None, repr=False, compare=False)
    probe_check: ProbeCheck | None = field(default=None, repr=False, compare=False)

    @property
    def group(self) -> str:
        return self.rule_id.split(".", maxsplit=1)[0]

    @property
    def source(self) -> str:
        return "; ".join(resolve_source(pointer) for pointer in self.sources)

    @property
    def profiles(self) -> tuple[str, ...]:
        """The profiles of spec/profiles.yaml that require this rule (by their `requires` patterns)."""
        return tuple(name for name, profile in load_profiles().items() if profile.requires_rule(self.rule_id))

    def applies(self, context: JudgeContext) -> bool:
        """The rule judges exchanges under this context's strictness and profile."""
        if context.strictness not in self.strictness:
            return False
        return context.profile is None or context.profile.requires_rule(self.rule_id)

    def required(self, context: JudgeContext) -> bool:
        """A verdict for the context's profile needs this rule's evidence."""
        return self.severity == "required" and self.applies(context) and context.profile is not None


RULES: dict[str, Rule] = {}


def _register(rule: Rule) -> None:
    if rule.rule_id in RULES:
        raise ValueError(f"rule {rule.rule_id} is registered twice")
    rule.source  # noqa: B018  (resolves every pointer now: a rule citing nothing fails at import)
    RULES[rule.rule_id] = rule


def _registering(attach: Callable[[CheckT], Rule]) -> Callable[[CheckT], CheckT]:
    """A decorator that registers the rule `attach` makes of the decorated check, and returns the check."""

    def register(function: CheckT) -> CheckT:
        _register(attach(function))
        return function

    return register


def exchange_rule(
    rule_id: str,
    title: str,
    sources: Sequence[str],
    *,
    severity: Severity = "required",
    strictness: Iterable[Strictness] = BOTH_LEVELS,
    conditional: bool = False,
    any_request: bool = False,
) -> Callable[[ExchangeCheck], ExchangeCheck]:
    """Register a rule that judges each exchange on its own."""
    rule = Rule(rule_id, title, tuple(sources), severity, frozenset(strictness), None, conditional, any_request)
    return _registering(lambda check: replace(rule, exchange_check=check))


def probe_rule(
    rule_id: str,
    title: str,
    sources: Sequence[str],
    *,
    probe: str,
    severity: Severity = "required",
    strictness: Iterable[Strictness] = BOTH_LEVELS,
    conditional: bool = False,
) -> Callable[[ProbeCheck], ProbeCheck]:
    """Register a rule that judges the exchanges of one run of `probe`, by their roles."""
    rule = Rule(rule_id, title, tuple(sources), severity, frozenset(strictness), probe, conditional=conditional)
    return _registering(lambda check: replace(rule, probe_check=check))


@dataclass(frozen=True)
class RuleOutcome:
    """One judgement of one rule: passed or not, why, and the exchanges it looked at."""

    rule_id: str
    passed: bool
    message: str | None
    exchanges: tuple[Exchange, ...]


def _probe_runs(exchanges: Sequence[Exchange]) -> dict[tuple[str, str], dict[str, Exchange]]:
    runs: dict[tuple[str, str], dict[str, Exchange]] = {}
    for exchange in exchanges:
        if exchange.label is not None:
            runs.setdefault((exchange.label.probe, exchange.label.instance), {})[exchange.label.role] = exchange
    return runs


def _judge_one(
    outcomes: list[RuleOutcome],
    rule: Rule,
    evidence: tuple[Exchange, ...],
    check: Callable[[Any, JudgeContext], None],
    subject: Exchange | Mapping[str, Exchange],
    context: JudgeContext,
) -> None:
    try:
        check(subject, context)
    except NotApplicable:
        return
    except CheckFailure as failure:
        outcomes.append(RuleOutcome(rule.rule_id, False, str(failure), evidence))
    else:
        outcomes.append(RuleOutcome(rule.rule_id, True, None, evidence))


def judge(
    exchanges: Sequence[Exchange], context: JudgeContext, rules: Iterable[Rule] | None = None
) -> list[RuleOutcome]:
    """Every applicable rule over the exchanges: exchange rules once per exchange, probe rules once per probe run.

    Exchanges without a probe label (a load test's responses) meet the exchange rules only; the busy answers
    (429, 503) a request met before its retry meet them too.
    """
    chosen = [rule for rule in (RULES.values() if rules is None else rules) if rule.applies(context)]
    outcomes: list[RuleOutcome] = []
    answers = [answer for exchange in exchanges for answer in (*exchange.busy_answers, exchange)]
    for answer in answers:
        invalid = answer.label is not None and answer.label.invalid
        for rule in chosen:
            if rule.exchange_check is not None and (rule.any_request or not invalid):
                _judge_one(outcomes, rule, (answer,), rule.exchange_check, answer, context)
    for (probe, _), parts in _probe_runs(exchanges).items():
        for rule in chosen:
            if rule.probe == probe and rule.probe_check is not None:
                _judge_one(outcomes, rule, tuple(parts.values()), rule.probe_check, parts, context)
    return outcomes
