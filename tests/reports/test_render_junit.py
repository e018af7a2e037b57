"""junit.xml: well-formed, one suite per rule group, failures carrying the evidence, counts that add up."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from reports.model import Report
from reports.render_junit import render_junit
from tests.reports.conftest import Json, ReportFactory, rule


def _parse(report: Report) -> ET.Element:
    text = render_junit(report)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(text.encode("utf-8"))


def _counts(element: ET.Element) -> dict[str, str]:
    return {key: element.attrib[key] for key in ("tests", "failures", "errors", "skipped")}


def test_one_suite_per_group_then_rate_limit_and_verdict(report: Report) -> None:
    root = _parse(report)
    assert root.tag == "testsuites"
    names = [suite.attrib["name"] for suite in root.iter("testsuite")]
    assert names == [
        "conformance.schema",
        "conformance.usage",
        "conformance.streaming",
        "conformance.params",
        "conformance.finish_reason",
        "conformance.info",
        "load.rate_limit",
        "verdict",
    ]
    # 13 rules + 1 rate-limit check + 1 verdict; the failures are the failing rule and the FAIL verdict.
    assert _counts(root) == {"tests": "15", "failures": "2", "errors": "0", "skipped": "2"}
    usage = root.find("testsuite[@name='conformance.usage']")
    assert usage is not None
    assert _counts(usage) == {"tests": "2", "failures": "1", "errors": "0", "skipped": "0"}
    properties = {p.attrib["name"]: p.attrib["value"] for p in usage.iter("property")}
    assert properties["endpoint"] == "http://127.0.0.1:8000"
    assert properties["profile"] == "serverless-llama31"


def test_failing_rule_carries_message_source_and_evidence(report: Report) -> None:
    failure = _parse(report).find(".//testcase[@name='usage.total_is_sum']/failure")
    assert failure is not None
    assert failure.attrib["message"].startswith("usage.total_tokens (25) != prompt_tokens (12)")
    text = failure.text or ""
    assert "source: usage table · total_tokens" in text
    assert "evidence 1: tests/conformance/test_usage.py::test_chat_usage[short]" in text
    assert "request: POST http://127.0.0.1:8000/v1/completions" in text
    assert '"text":" Paris, and <b>Lyon</b> & Marseille"' in text  # escaped in the file, intact once parsed


def test_skipped_and_passing_rules(report: Report) -> None:
    root = _parse(report)
    skipped = root.find(".//testcase[@name='streaming.usage_in_final_chunk']/skipped")
    assert skipped is not None and skipped.attrib["message"] == "skip: the endpoint does not support stream_options"
    passing = root.find(".//testcase[@name='info.model_fields']")
    assert passing is not None and len(passing) == 0
    assert passing.attrib["classname"] == "conformance.info"


def test_characters_xml_cannot_carry_are_spelled_out(build: ReportFactory, conformance: Json) -> None:
    evidence = rule(conformance, "usage.total_is_sum")["evidence"][0]
    evidence["response_excerpt"] = "data: {\x00\x1b[31m}\ufffe"
    failure = _parse(build(conformance)).find(".//testcase[@name='usage.total_is_sum']/failure")
    assert failure is not None
    assert "data: {\\x00\\x1b[31m}\\xfffe" in (failure.text or "")


def test_an_incomplete_run_is_an_error_testcase(build: ReportFactory) -> None:
    root = _parse(build(None, loads=[]))
    assert [suite.attrib["name"] for suite in root.iter("testsuite")] == ["verdict"]
    error = root.find(".//testcase[@name='serverless-llama31']/error")
    assert error is not None
    assert error.attrib["message"] == "INCOMPLETE for serverless-llama31"
    assert "the conformance suite did not run" in (error.text or "")
    assert _counts(root) == {"tests": "1", "failures": "0", "errors": "1", "skipped": "0"}


def test_a_failed_rate_limit_check_is_a_failure(build: ReportFactory, rate_limit: Json) -> None:
    rate_limit["rate_limit"].update(verdict="fail", reasons=["accepted 1,480 requests/min, limit 1,000"])
    case = "testsuite[@name='load.rate_limit']/testcase[@name='rate_limit.enforced[rate-limit]']"
    failure = _parse(build()).find(f"{case}/failure")
    assert failure is not None
    assert failure.attrib["message"] == "accepted 1,480 requests/min, limit 1,000"


def test_evidence_beyond_the_first_ten_is_left_to_report_json(build: ReportFactory, conformance: Json) -> None:
    failing = rule(conformance, "usage.total_is_sum")
    failing["evidence"] = failing["evidence"] * 6
    failure = _parse(build(conformance)).find(".//testcase[@name='usage.total_is_sum']/failure")
    assert failure is not None
    text = failure.text or ""
    assert "evidence 10:" in text and "evidence 11:" not in text
    assert text.endswith("... and 2 more pieces of evidence in report.json")


def test_suite_timestamps_are_utc_without_offset(report: Report) -> None:
    root = _parse(report)
    stamps = {suite.attrib["name"]: suite.attrib["timestamp"] for suite in root.iter("testsuite")}
    assert stamps["conformance.usage"] == "2025-11-20T14:02:11"
    assert stamps["load.rate_limit"] == "2025-11-20T14:04:10"
