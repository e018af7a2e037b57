"""The rule registry: every rule cites a source that exists, profiles name real rules, judge runs over exchanges."""

from __future__ import annotations

import fnmatch
import json

import pytest

from conformance.exchange import Exchange, ProbeLabel, RecordedRequest
from conformance.rules import RULES, JudgeContext, judge
from conformance.rules.sources import UnknownSource, resolve_source
from spec.document import Strictness
from spec.profiles import get_profile, load_profiles


def _completion(total_tokens: int, label: ProbeLabel | None = None) -> Exchange:
    body = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1_800_000_000,
        "model": "m",
        "choices": [{"index": 0, "text": " Paris", "finish_reason": "length", "logprobs": None}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": total_tokens},
    }
    return Exchange(
        request=RecordedRequest("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1}),
        status=200,
        headers={"content-type": "application/json"},
        body_text=json.dumps(body),
        label=label,
    )


def test_every_rule_resolves_its_sources_and_says_how_much_it_matters() -> None:
    assert len(RULES) >= 50
    for rule in RULES.values():
        assert rule.sources and rule.source, rule.rule_id
        assert rule.severity in {"required", "advisory"}
        assert (rule.exchange_check is None) != (rule.probe_check is None), rule.rule_id
        assert rule.strictness <= set(Strictness)


def test_a_pointer_to_nothing_is_refused() -> None:
    with pytest.raises(UnknownSource):
        resolve_source("#/components/schemas/NoSuchSchema")
    with pytest.raises(UnknownSource):
        resolve_source("D999")


def test_every_profile_pattern_names_a_rule_and_content_safety_is_not_required_on_managed_compute() -> None:
    for profile in load_profiles().values():
        for pattern in profile.requires:
            assert any(fnmatch.fnmatchcase(rule_id, pattern) for rule_id in RULES), (profile.name, pattern)
    managed = JudgeContext(Strictness.DOCS, get_profile("managed-compute"))
    serverless = JudgeContext(Strictness.DOCS, get_profile("serverless-llama31"))
    assert not RULES["content_safety.prompt"].required(managed)
    assert RULES["content_safety.prompt"].required(serverless)
    assert not RULES["errors.envelope"].required(serverless)  # advisory (R1)


def test_judge_runs_exchange_rules_on_any_exchange_and_probe_rules_on_their_probe() -> None:
    context = JudgeContext()
    outcomes = {o.rule_id: o for o in judge([_completion(total_tokens=7)], context)}
    assert not outcomes["usage.total_is_sum"].passed
    assert "total_tokens 7 != prompt_tokens 5 + completion_tokens 1" in str(outcomes["usage.total_is_sum"].message)
    assert outcomes["envelope.object"].passed
    assert "relations.unique_ids" not in outcomes  # no probe label: no relation judged

    pair = [
        _completion(6, ProbeLabel("greedy_pair", "t#0", "long", valid=True)),
        _completion(6, ProbeLabel("greedy_pair", "t#0", "short", valid=True)),
    ]
    unique = [o for o in judge(pair, context) if o.rule_id == "relations.unique_ids"]
    assert [o.passed for o in unique] == [False]  # both responses carry id cmpl-1


def test_a_refused_valid_request_fails_the_feature_rules() -> None:
    refused = Exchange(
        request=RecordedRequest("POST", "/v1/completions", {"prompt": "x", "stream": True}),
        status=400,
        headers={"content-type": "application/json"},
        body_text='{"error": {"code": "unsupported", "message": "no streaming", "param": "stream"}}',
        label=ProbeLabel("stream", "t#0", "request", valid=True),
    )
    outcomes = {o.rule_id: o for o in judge([refused], JudgeContext())}
    assert not outcomes["stream.done"].passed
    assert "a valid request using stream" in str(outcomes["stream.done"].message)
    # the same refusal to a request the suite did not call valid is not the stream rules' business
    refused.label = ProbeLabel("stream", "t#0", "request", valid=False)
    assert "stream.done" not in {o.rule_id for o in judge([refused], JudgeContext())}


def test_a_refusal_fails_the_rules_of_the_features_the_request_demands() -> None:
    refused = Exchange(
        request=RecordedRequest("POST", "/v1/completions", {"prompt": "x", "stream": True, "logprobs": 2}),
        status=500,
        headers={"content-type": "application/json"},
        body_text='{"error": {"message": "logprobs must be a boolean"}}',
        label=ProbeLabel("stream", "t#0", "request", valid=True, demands=["logprobs"]),
    )
    failed = {o.rule_id for o in judge([refused], JudgeContext()) if not o.passed}
    assert "logprobs.lengths" in failed
    assert "stream.done" not in failed  # plain streams are proven elsewhere


def test_an_answer_to_an_invalid_request_meets_only_the_error_rules() -> None:
    accepted = _completion(6, ProbeLabel("invalid_parameter", "t#0", "request", invalid=True))
    accepted.request.body = {"prompt": "x", "n": 0}
    judged = {o.rule_id for o in judge([accepted], JudgeContext())}
    assert "envelope.choices" not in judged and "usage.within_max_tokens" not in judged
    assert "errors.no_server_error" in judged
