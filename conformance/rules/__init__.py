"""The conformance rules, one module per group, in one registry; `judge` runs them over recorded exchanges.

from conformance.rules import JudgeContext, judge
outcomes = judge(exchanges, JudgeContext(strictness, profile))
"""

from conformance.rules import (  # noqa: F401  (importing a group module registers its rules)
    azure,
    discovery,
    envelope,
    errors,
    finish_reason,
    generated,
    logprobs,
    profile,
    relations,
    sampling,
    stop,
    stream,
    usage,
)
from conformance.rules.registry import (
    RULES,
    CheckFailure,
    JudgeContext,
    NotApplicable,
    Rule,
    RuleOutcome,
    Severity,
    exchange_rule,
    judge,
    probe_rule,
)

__all__ = [
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
