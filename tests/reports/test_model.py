"""The Report model: built from contract-shaped inputs, judged into a verdict, and read back from report.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reports.model import Environment, OutcomeCounts, Report, ReportInputError
from tests.reports.conftest import ENVIRONMENT, PROFILE, Json, ReportFactory, make_passing, rule


def test_report_carries_the_parts(report: Report) -> None:
    assert report.schema_version == 1
    assert report.endpoint == "http://127.0.0.1:8000"
    assert report.profile == PROFILE
    assert report.strictness == "docs"
    assert report.model is not None and report.model.model_name == "Meta-Llama-3.1-8B-Instruct"
    assert report.environment == ENVIRONMENT
    assert report.started_at == datetime(2025, 11, 20, 14, 2, 11, 512000, tzinfo=UTC)
    assert report.finished_at == datetime(2025, 11, 20, 14, 5, 10, tzinfo=UTC)  # rate-limit start + 60 s
    assert [load.scenario for load in report.loads] == ["throughput", "rate-limit"]


def test_rules_are_counted_overall_and_per_group(report: Report) -> None:
    assert report.conformance is not None
    assert report.conformance.totals == OutcomeCounts(passed=10, failed=1, skipped=2, errors=0)
    groups = {group.group: group.counts for group in report.conformance.groups}
    assert list(groups) == ["schema", "usage", "streaming", "params", "finish_reason", "info"]
    assert groups["usage"] == OutcomeCounts(passed=1, failed=1)
    assert groups["streaming"] == OutcomeCounts(passed=2, skipped=1)
    assert [r.rule_id for r in report.conformance.rules_in("usage")] == [
        "usage.total_is_sum",
        "usage.completion_within_max_tokens",
    ]


def test_a_failing_rule_fails_the_verdict_and_names_its_source(report: Report) -> None:
    assert report.verdict.status == "FAIL"
    assert report.verdict.profile == PROFILE
    [reason] = report.verdict.reasons
    assert reason.startswith("rule usage.total_is_sum failed: usage.total_tokens (25) != prompt_tokens (12)")
    assert "usage table · total_tokens" in reason


def test_a_failed_rate_limit_check_fails_the_verdict(build: ReportFactory, conformance: Json, rate_limit: Json) -> None:
    rate_limit["rate_limit"].update(verdict="fail", reasons=["accepted 1,480 requests/min, limit 1,000"])
    report = build(make_passing(conformance))
    assert report.verdict.status == "FAIL"
    assert report.verdict.reasons == [
        "rule rate_limit.enforced failed under load in scenario 'rate-limit': accepted 1,480 requests/min, limit 1,000"
    ]


def test_every_required_rule_passing_and_rate_limit_passing_is_a_pass(build: ReportFactory, conformance: Json) -> None:
    report = build(make_passing(conformance))
    assert report.verdict.status == "PASS"
    # the skipped advisory rule and the conditional rule that saw nothing are not required
    assert report.verdict.reasons[0] == "all 11 required rules passed (11 with evidence)"
    assert report.verdict.reasons[1].startswith("rule rate_limit.enforced passed under load in scenario 'rate-limit': ")
    assert "accepted" in report.verdict.reasons[1] and "tokens/min" in report.verdict.reasons[1]


def test_missing_conformance_is_incomplete(build: ReportFactory) -> None:
    report = build(None)
    assert report.verdict.status == "INCOMPLETE"
    assert report.verdict.reasons == ["the conformance suite did not run"]
    assert report.conformance is None and report.strictness is None and report.model is None


def test_missing_load_is_incomplete_and_names_the_unchecked_rate_limit(build: ReportFactory, conformance: Json) -> None:
    report = build(make_passing(conformance), loads=[])
    assert report.verdict.status == "INCOMPLETE"
    assert report.verdict.reasons == [
        "no load test ran",
        "profile serverless-llama31 sets rate limits (1,000 requests/min, 400,000 tokens/min) "
        "but no load scenario checked them",
    ]


def test_a_rate_limited_profile_without_a_rate_limit_check_is_incomplete(
    build: ReportFactory, conformance: Json, throughput: Json
) -> None:
    report = build(make_passing(conformance), loads=[throughput])
    assert report.verdict.status == "INCOMPLETE"
    assert "no load scenario checked them" in report.verdict.reasons[0]


def test_a_profile_without_rate_limits_needs_no_rate_limit_check(
    build: ReportFactory, conformance: Json, throughput: Json
) -> None:
    make_passing(conformance)["profile"] = "managed-compute"
    report = build(conformance, loads=[throughput], profile="managed-compute")
    assert report.verdict.status == "PASS"


def test_an_erroring_rule_is_incomplete_not_pass(build: ReportFactory, conformance: Json) -> None:
    rule(make_passing(conformance), "info.model_fields").update(outcome="error", message="ConnectError: refused")
    report = build(conformance)
    assert report.verdict.status == "INCOMPLETE"
    assert report.verdict.reasons == [
        "rule info.model_fields could not be checked (its test crashed): ConnectError: refused"
    ]


@pytest.mark.parametrize("outcome", ["skip", "not-run"])
def test_a_required_rule_skipped_or_not_run_is_incomplete_never_pass(
    build: ReportFactory, conformance: Json, outcome: str
) -> None:
    rule(make_passing(conformance), "streaming.content_type").update(outcome=outcome, message="deselected")
    report = build(conformance)
    assert report.verdict.status == "INCOMPLETE"
    assert report.verdict.reasons[0].startswith("required rule streaming.content_type ")
    assert report.verdict.reasons[0].endswith(": deselected")


def test_an_advisory_rule_failing_is_reported_but_does_not_fail(build: ReportFactory, conformance: Json) -> None:
    rule(make_passing(conformance), "params.best_of_at_least_n").update(
        outcome="fail", message="best_of 1 < n 2 served"
    )
    report = build(conformance)
    assert report.verdict.status == "PASS"
    assert any(reason.startswith("advisory rule params.best_of_at_least_n failed") for reason in report.verdict.reasons)


def test_a_conditional_rule_that_failed_still_fails(build: ReportFactory, conformance: Json) -> None:
    rule(make_passing(conformance), "streaming.usage_in_final_chunk").update(outcome="fail", message="usage first")
    assert build(conformance).verdict.status == "FAIL"


@pytest.mark.parametrize(("status", "meaning"), [(2, "was interrupted"), (5, "collected no tests")])
def test_a_suite_that_did_not_complete_is_incomplete(
    build: ReportFactory, conformance: Json, status: int, meaning: str
) -> None:
    make_passing(conformance)["pytest_exit_status"] = status
    report = build(conformance)
    assert report.verdict.status == "INCOMPLETE"
    assert report.verdict.reasons == [f"the conformance suite {meaning} (pytest exit status {status})"]


def test_failed_tests_without_a_failed_rule_are_incomplete(build: ReportFactory, conformance: Json) -> None:
    make_passing(conformance)["pytest_exit_status"] = 1
    report = build(conformance)
    assert report.verdict.status == "INCOMPLETE"
    assert report.verdict.reasons[0].startswith("pytest reported failed tests although no required rule failed")


def test_failures_outrank_gaps_and_both_are_listed(build: ReportFactory) -> None:
    report = build(loads=[])
    assert report.verdict.status == "FAIL"
    assert report.verdict.reasons[0].startswith("rule usage.total_is_sum failed")
    assert "no load test ran" in report.verdict.reasons


def test_a_load_that_sent_nothing_is_incomplete(build: ReportFactory, conformance: Json, rate_limit: Json) -> None:
    rate_limit.update(requests=0, ok=0, rejected_429=0)
    report = build(make_passing(conformance))
    assert report.verdict.status == "INCOMPLETE"
    assert "load scenario 'rate-limit' sent no requests" in report.verdict.reasons


def test_nothing_ran_still_makes_a_report() -> None:
    report = Report.from_parts(None, [], PROFILE, environment=ENVIRONMENT)
    assert report.endpoint is None and report.started_at is None and report.finished_at is None
    assert report.verdict.status == "INCOMPLETE"


def test_times_without_offset_are_read_as_utc(build: ReportFactory, conformance: Json) -> None:
    conformance["started_at"] = "2025-11-20T14:02:11"
    report = build(conformance)
    assert report.conformance is not None
    assert report.conformance.started_at == datetime(2025, 11, 20, 14, 2, 11, tzinfo=UTC)


def test_a_trailing_slash_is_the_same_endpoint(build: ReportFactory, throughput: Json) -> None:
    throughput["endpoint"] = "http://127.0.0.1:8000/"
    assert build().endpoint == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c, t: c.update(schema_version=2), "conformance results: schema_version is 2; this llamacert reads"),
        (lambda c, t: c["rules"][0].update(outcome="passed"), "conformance results: rules.0.outcome: Input should be"),
        (lambda c, t: c.update(verdict="ok"), "conformance results: verdict: Extra inputs are not permitted"),
        (lambda c, t: c.update(strictness="lenient"), "conformance results: strictness: Input should be 'docs' or"),
        (lambda c, t: c["rules"].append(dict(c["rules"][0])), "rule ids appear more than once: schema.chat_response"),
        (lambda c, t: t.pop("users"), "load summary 'throughput': users: Field required"),
        (lambda c, t: t.update(schema_version=None), "load summary: schema_version is None"),
        (lambda c, t: t.update(endpoint="http://10.0.0.9:8000"), "the parts tested different endpoints"),
        (lambda c, t: c.update(profile="serverless-llama3"), "ran for profile 'serverless-llama3', not"),
    ],
    ids=[
        "schema-version",
        "outcome",
        "unknown-field",
        "strictness",
        "duplicate-rule",
        "missing-field",
        "load-version",
        "endpoints",
        "profile",
    ],
)
def test_inputs_that_break_the_contract_are_named(
    build: ReportFactory, conformance: Json, throughput: Json, edit: Callable[[Json, Json], object], expected: str
) -> None:
    edit(conformance, throughput)
    with pytest.raises(ReportInputError) as raised:
        build(conformance)
    assert expected in str(raised.value)


def test_json_round_trip(report: Report, tmp_path: Path) -> None:
    path = report.save(tmp_path / "report.json")
    assert Report.load(path) == report
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema_version"] == 1
    assert data["conformance"]["totals"] == {"passed": 10, "failed": 1, "skipped": 2, "errors": 0, "not_run": 0}
    assert data["conformance"]["groups"][1] == {
        "group": "usage",
        "counts": {"passed": 1, "failed": 1, "skipped": 0, "errors": 0, "not_run": 0},
    }
    assert data["verdicts"][0]["status"] == "FAIL"


def test_counts_in_report_json_are_recomputed_not_trusted(report: Report) -> None:
    data = json.loads(report.to_json())
    data["conformance"]["totals"]["passed"] = 99
    assert Report.from_json(json.dumps(data)).conformance == report.conformance


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read it (No such file or directory)"),
        ("{not json", "not valid JSON"),
        ('{"schema_version": 1, "rules": []}', "not a llamacert report.json (it has no 'verdicts')"),
        ('{"schema_version": 2, "verdicts": []}', "schema_version is 2; this llamacert reads version 1"),
        ('{"schema_version": 1, "verdicts": []}', "report.json: generated_at: Field required"),
        ("[1, 2]", "expected a JSON object, got list"),
    ],
    ids=["missing", "not-json", "conformance-file", "newer-version", "invalid", "not-object"],
)
def test_unreadable_report_json_is_a_clear_error(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ReportInputError) as raised:
        Report.load(path)
    assert str(raised.value).startswith(str(path))
    assert expected in str(raised.value)


def test_environment_capture_describes_this_process() -> None:
    environment = Environment.capture()
    assert environment.python_version.startswith("3.")
    assert environment.hostname
    assert environment.cpu_count is None or environment.cpu_count >= 1


def test_nan_is_refused_because_report_json_could_not_carry_it(build: ReportFactory, throughput: Json) -> None:
    throughput["ttft_ms"]["mean"] = float("nan")
    with pytest.raises(ReportInputError, match=r"load summary 'throughput': ttft_ms\.mean: Input should be a finite"):
        build()
