"""junit.xml: the report for CI, one testsuite per rule group and one testcase per rule.

Rate-limit checks under load get a `load.rate_limit` suite, one testcase per scenario named by the rule it judges
(`rate_limit.enforced[scenario]`), and the verdict its own testcase, so a CI job that reads only
junit.xml still turns red on a FAIL or an INCOMPLETE run.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from reports.model import EvidenceRequest, LoadSection, RateLimitResult, Report, RuleResult, Verdict

__all__ = ["render_junit"]

# XML 1.0 cannot carry these characters at all, not even escaped; endpoints may well send them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_BODY_LIMIT = 4000
# A rule can collect evidence from every test case; the first few explain it, report.json keeps them all.
_EVIDENCE_LIMIT = 10


def _xml_safe(text: str) -> str:
    return _NOT_XML.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def _request_lines(request: EvidenceRequest | None) -> list[str]:
    if request is None:
        return ["  request: not recorded"]
    lines = [f"  request: {request.method} {request.url}"]
    if request.body is not None:
        body = json.dumps(request.body, ensure_ascii=False, indent=2)
        if len(body) > _BODY_LIMIT:
            body = f"{body[:_BODY_LIMIT]}... ({len(body) - _BODY_LIMIT} more characters)"
        lines += [f"    {line}" for line in body.splitlines()]
    return lines


def _failure_text(rule: RuleResult) -> str:
    lines = [rule.title, f"source: {rule.source}", f"test cases: {rule.tests}"]
    if rule.message:
        lines.append(f"message: {rule.message}")
    for number, evidence in enumerate(rule.evidence[:_EVIDENCE_LIMIT], start=1):
        lines += [
            "",
            f"evidence {number}: {evidence.test}",
            f"  {evidence.message}",
            *_request_lines(evidence.request),
            f"  response status: {evidence.status if evidence.status is not None else 'none (no response)'}",
            f"  response excerpt: {evidence.response_excerpt}",
        ]
    if len(rule.evidence) > _EVIDENCE_LIMIT:
        lines += ["", f"... and {len(rule.evidence) - _EVIDENCE_LIMIT} more pieces of evidence in report.json"]
    return _xml_safe("\n".join(lines))


def _element(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {key: _xml_safe(value) for key, value in attributes.items()})
    if text is not None:
        element.text = _xml_safe(text)
    return element


def _suite(root: ET.Element, report: Report, name: str, started_at: datetime | None) -> ET.Element:
    suite = _element(root, "testsuite", name=name)
    properties = _element(suite, "properties")
    context = {
        "endpoint": report.endpoint or "",
        "profile": report.profile,
        "strictness": report.strictness or "",
        "model": (report.model.model_name if report.model else None) or "",
        "quick": str(bool(report.conformance and report.conformance.quick)).lower(),
        "llamacert_version": report.environment.llamacert_version,
    }
    for key, value in context.items():
        _element(properties, "property", name=key, value=value)
    if started_at is not None:
        # The JUnit schema's timestamp has no offset; UTC it is.
        suite.set("timestamp", started_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    suite.set("hostname", _xml_safe(report.environment.hostname))
    return suite


def _rule_case(suite: ET.Element, rule: RuleResult) -> None:
    case = _element(suite, "testcase", classname=f"conformance.{rule.group}", name=rule.rule_id, time="0")
    summary = rule.message or rule.title
    if rule.outcome == "fail":
        _element(case, "failure", _failure_text(rule), message=summary, type="RuleFailure")
    elif rule.outcome == "error":
        _element(case, "error", _failure_text(rule), message=summary, type="RuleError")
    elif rule.outcome in ("skip", "not-run"):
        _element(case, "skipped", message=f"{rule.outcome}: {rule.message or rule.outcome}")


def _rate_limit_case(suite: ET.Element, load: LoadSection, limit: RateLimitResult) -> None:
    name = f"{limit.rule_id}[{load.scenario}]"
    case = _element(suite, "testcase", classname="load.rate_limit", name=name, time=f"{load.duration_s:.3f}")
    details = (
        (f"source: {limit.source}\n" if limit.source else "")
        + f"limit: {limit.limit_rpm} requests/min, {limit.limit_tpm} tokens/min\n"
        f"offered {limit.offered_rpm:.1f} requests/min; accepted {limit.accepted_rpm:.1f} requests/min, "
        f"{limit.accepted_tpm:.0f} tokens/min\n" + "\n".join(limit.reasons)
    )
    if limit.verdict == "fail":
        _element(case, "failure", details, message="; ".join(limit.reasons) or "failed", type="RateLimitFailure")
    else:
        _element(case, "system-out", details)


def _verdict_case(suite: ET.Element, verdict: Verdict) -> None:
    case = _element(suite, "testcase", classname="verdict", name=verdict.profile, time="0")
    reasons = "\n".join(verdict.reasons)
    if verdict.status == "FAIL":
        _element(case, "failure", reasons, message=f"FAIL for {verdict.profile}", type="VerdictFail")
    elif verdict.status == "INCOMPLETE":
        _element(case, "error", reasons, message=f"INCOMPLETE for {verdict.profile}", type="VerdictIncomplete")
    else:
        _element(case, "system-out", reasons)


def _count(suite: ET.Element, time_s: float) -> dict[str, int]:
    cases = suite.findall("testcase")
    counts = {
        "tests": len(cases),
        "failures": sum(case.find("failure") is not None for case in cases),
        "errors": sum(case.find("error") is not None for case in cases),
        "skipped": sum(case.find("skipped") is not None for case in cases),
    }
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{time_s:.3f}")
    return counts


def render_junit(report: Report) -> str:
    """The report as JUnit XML text."""
    root = ET.Element("testsuites", name="llamacert")
    suites: list[tuple[ET.Element, float]] = []
    conformance = report.conformance
    if conformance is not None:
        for group in conformance.groups:
            suite = _suite(root, report, f"conformance.{group.group}", conformance.started_at)
            for rule in conformance.rules_in(group.group):
                _rule_case(suite, rule)
            # Rules have no duration of their own; the suite's wall time goes on the first group.
            suites.append((suite, conformance.duration_s if not suites else 0.0))
    rate_limited = [(load, load.rate_limit) for load in report.loads if load.rate_limit is not None]
    if rate_limited:
        suite = _suite(root, report, "load.rate_limit", rate_limited[0][0].started_at)
        for load, limit in rate_limited:
            _rate_limit_case(suite, load, limit)
        suites.append((suite, sum(load.duration_s for load, _ in rate_limited)))
    suite = _suite(root, report, "verdict", report.started_at)
    for verdict in report.verdicts:
        _verdict_case(suite, verdict)
    suites.append((suite, 0.0))
    totals = [_count(suite, time_s) for suite, time_s in suites]
    root.set("time", f"{sum(time_s for _, time_s in suites):.3f}")
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(counts[key] for counts in totals)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
