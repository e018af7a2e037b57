"""The producers' real output reads into a report: conformance.plugin's rule ledger and perf.metrics.summarize.

These tests use the other packages' code on purpose: when a producer drifts from the contract, they fail here,
not at the end of a certification run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from conformance.exchange import Exchange, RecordedRequest
from conformance.plugin import RuleLedger
from conformance.rules import RuleOutcome
from perf.metrics import RateLimitExpectation, summarize
from perf.records import RequestRecord
from reports.model import Report
from reports.render_html import render_html
from reports.render_junit import render_junit
from tests.reports.conftest import ENVIRONMENT, PROFILE

ENDPOINT = "http://127.0.0.1:8000"
T0 = 1_763_650_000.0


def _conformance_results(model: Any) -> dict[str, Any]:
    """A results document as the plugin writes it (`Suite.write_results`), around a real ledger."""
    ledger = RuleLedger()
    rules = [entry["rule_id"] for entry in ledger.results()]
    ledger.record(RuleOutcome(rules[0], True, None, ()), "test_a[llama-chat]")
    exchange = Exchange(
        request=RecordedRequest("POST", "/v1/chat/completions", body={"messages": [], "max_tokens": 4}),
        status=200,
        headers={"content-type": "application/json"},
        body_text='{"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 9}}',
    )
    ledger.record(RuleOutcome(rules[1], False, "usage.total_tokens is 9, not 3 + 4", (exchange,)), "test_b[llama-chat]")
    ledger.record(RuleOutcome(rules[1], False, "connection refused", ()), "test_b[azure-chat]")
    started = datetime.fromtimestamp(T0, tz=UTC)
    document = {
        "schema_version": 1,
        "endpoint": ENDPOINT,
        "strictness": "docs",
        "profile": None,
        "model": model,
        "started_at": started.isoformat(),
        "finished_at": started.isoformat(),
        "duration_s": 0.0,
        "quick": True,
        "pytest_exit_status": 1,
        "rules": ledger.results(),
    }
    result: dict[str, Any] = json.loads(json.dumps(document))
    return result


def _records(statuses: list[int]) -> list[RequestRecord]:
    records = []
    for index, status in enumerate(statuses):
        sent = T0 + 60 + index * 0.1
        if status == 200:
            tokens = [sent + 0.1 + 0.02 * k for k in range(8)]
            records.append(
                RequestRecord(
                    route="/v1/chat/completions",
                    stream=True,
                    t_send=sent,
                    t_end=sent + 0.3,
                    status=200,
                    t_first_byte=sent + 0.05,
                    t_first_token=tokens[0],
                    token_event_times=tokens,
                    prompt_tokens=10,
                    completion_tokens=8,
                    finish_reason="length",
                )
            )
        else:
            records.append(
                RequestRecord(route="/v1/chat/completions", stream=True, t_send=sent, t_end=sent + 0.01, status=status)
            )
    return records


def _summary(statuses: list[int], scenario: str, limit_rpm: int | None = None) -> dict[str, Any]:
    expectation = None if limit_rpm is None else RateLimitExpectation(mode="above", limit_rpm=limit_rpm, limit_tpm=None)
    summary = summarize(_records(statuses), endpoint=ENDPOINT, scenario=scenario, users=4, rate_limit=expectation)
    # through JSON, as the report reads load-summary.json
    result: dict[str, Any] = json.loads(summary.model_dump_json())
    return result


def test_the_plugin_and_perf_output_make_a_report() -> None:
    model = {"model_name": "SmolLM2", "model_type": "chat-completion", "model_provider_name": "HF", "extra": 1}
    report = Report.from_parts(
        _conformance_results(model),
        [_summary([200] * 40, "throughput"), _summary([200, 429] * 20, "rate-limit", limit_rpm=60)],
        PROFILE,
        environment=ENVIRONMENT,
    )
    assert report.endpoint == ENDPOINT
    assert report.model is not None and report.model.model_name == "SmolLM2"
    assert report.conformance is not None and report.conformance.quick
    assert report.conformance.totals.failed == 1 and report.conformance.totals.passed == 1
    assert report.verdict.status == "FAIL"
    assert Report.from_json(report.to_json()) == report
    assert "not recorded" in render_junit(report)
    assert "quick subset" in render_html(report)


def test_what_the_endpoint_says_about_its_model_is_not_trusted() -> None:
    for model, name in [("not an object", None), ({"model_name": 7}, None), ({"model_name": "m"}, "m")]:
        report = Report.from_parts(_conformance_results(model), [], PROFILE, environment=ENVIRONMENT)
        assert (report.model.model_name if report.model else None) == name


def test_a_run_where_nothing_succeeded_has_no_latencies() -> None:
    report = Report.from_parts(None, [_summary([429] * 10, "all-rejected")], PROFILE, environment=ENVIRONMENT)
    [load] = report.loads
    assert load.ok == 0 and load.e2e_ms is None and load.ttft_ms is None
    assert "INCOMPLETE" in render_html(report)
