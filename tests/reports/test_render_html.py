"""report.html: verdict first, every rule, evidence escaped, plots inline, and nothing fetched from anywhere."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from reports.model import Report
from reports.render_html import render_html
from tests.reports.conftest import ENVIRONMENT, PROFILE, Json, ReportFactory, make_passing, read_fixture, rule

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DATA_PNG = "data:image/png;base64,"


class _Page(HTMLParser):
    """Every start tag with its attributes, and the text outside tags."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def attributes(self, tag: str, name: str) -> list[str]:
        return [attrs[name] for found, attrs in self.tags if found == tag and name in attrs]


@pytest.fixture(scope="module")
def html() -> str:
    """The page for the three fixtures, with markup planted in a piece of evidence (rendered once: plots are slow)."""
    conformance = read_fixture("conformance.json")
    evidence = rule(conformance, "usage.total_is_sum")["evidence"][0]
    evidence["response_excerpt"] = '<script>alert("x")</script><img src="http://evil.example/x.png">'
    loads = [read_fixture("load_throughput.json"), read_fixture("load_rate_limit.json")]
    return render_html(Report.from_parts(conformance, loads, PROFILE, environment=ENVIRONMENT))


def test_verdict_comes_first(html: str) -> None:
    page = _Page(html)
    text = " ".join(" ".join(page.text).split())
    assert text.index("FAIL") < text.index("Conformance") < text.index("Load")
    assert 'class="verdict verdict-fail"' in html
    assert "Not certified for profile serverless-llama31" in text
    assert "<title>FAIL · llamacert report · http://127.0.0.1:8000</title>" in html


def test_every_rule_and_group_is_listed(html: str, report: Report) -> None:
    assert report.conformance is not None
    for entry in report.conformance.rules:
        assert f'id="rule-{entry.rule_id}"' in html
        assert entry.source in html.replace("&amp;", "&")
    for group in report.conformance.groups:
        assert f'id="group-{group.group}"' in html


def test_failure_evidence_is_shown_escaped(html: str) -> None:
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "tests/conformance/test_usage.py::test_chat_usage[short]" in html
    assert "Response · status 200" in html
    assert "&#34;completion_tokens&#34;: 8" in html  # complete JSON excerpts are indented


def test_the_page_needs_no_network_and_no_script(html: str) -> None:
    page = _Page(html)
    assert not [tag for tag, _ in page.tags if tag in {"script", "link", "iframe", "object", "embed", "base"}]
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not re.match(r"\s*(https?:)?//", value), f"<{tag} {name}={value!r}> points off the page"
            assert not name.startswith("on"), f"<{tag}> has an event handler"
    assert "url(" not in html and "@import" not in html
    # "http" appears only as text (the endpoint, evidence), never where a browser would fetch it.
    assert "http" not in " ".join(value for _, attrs in page.tags for value in attrs.values())


def test_plots_are_inline_pngs(html: str) -> None:
    sources = _Page(html).attributes("img", "src")
    # throughput: latency, tokens/s, requests/s; rate-limit: the same three (its latency panel is e2e only).
    assert len(sources) == 6
    for source in sources:
        assert source.startswith(DATA_PNG)
        assert base64.b64decode(source.removeprefix(DATA_PNG)).startswith(PNG_MAGIC)


def test_a_passing_run(build: ReportFactory, conformance: Json, rate_limit: Json) -> None:
    page = render_html(build(make_passing(conformance), loads=[rate_limit]))
    assert 'class="verdict verdict-pass"' in page
    assert "Certified for profile serverless-llama31" in page


def test_a_run_without_load(build: ReportFactory) -> None:
    page = render_html(build(loads=[]))
    assert "No load test ran." in page
    assert DATA_PNG not in page


def test_a_run_where_nothing_ran() -> None:
    page = render_html(Report.from_parts(None, [], PROFILE, environment=ENVIRONMENT))
    assert "INCOMPLETE" in page
    assert "The conformance suite did not run." in page
    assert "no endpoint was tested" in page


def test_evidence_beyond_the_first_ten_is_left_to_report_json(build: ReportFactory, conformance: Json) -> None:
    failing = rule(conformance, "usage.total_is_sum")
    failing["evidence"] = failing["evidence"] * 6
    page = render_html(build(conformance, loads=[]))
    assert page.count('class="evidence"') == 10
    assert "… and 2 more pieces of evidence in report.json." in page


def test_objectives_goodput_capacity_and_server_series_are_shown(build: ReportFactory, throughput: Json) -> None:
    throughput["objectives"] = [
        {"name": "ttft_p95", "threshold": 500.0, "measured": 812.0, "met": False,
         "text": "p95 TTFT at most 500 ms: measured 812.0 ms (MISSED)"},
    ]  # fmt: skip
    throughput["goodput"] = {"thresholds_ms": {"ttft": 500.0}, "good_requests": 90, "requests_per_s": 1.5,
                             "output_tokens_per_s": 96.0}  # fmt: skip
    throughput["server_metrics"] = {
        "url": "http://127.0.0.1:8000/metrics", "interval_s": 1.0, "scrapes": 3, "failed_scrapes": 0, "note": None,
        "series": [{"name": "running requests", "unit": "requests", "source": "llamacert_requests_running",
                    "t": [0.0, 1.0, 2.0], "values": [1.0, 3.0, 2.0]}],
    }  # fmt: skip
    step = {"achieved_rate": 2.0, "requests_per_s": 2.0, "goodput_requests_per_s": 2.0, "error_rate": 0.0,
            "ttft_p95_ms": 80.0, "itl_p95_ms": 9.0, "e2e_p95_ms": 300.0, "stopped_early": False}  # fmt: skip
    throughput["capacity"] = {
        "objectives": ["ttft_p95=500ms"], "max_error_rate": 0.01, "limit_rpm": None, "limit_tpm": None,
        "steps": [{**step, "offered_rate": 2.0, "held": True, "reasons": []},
                  {**step, "offered_rate": 4.0, "held": False, "reasons": ["p95 TTFT missed"]}],
        "capacity_rate": 2.0, "capacity_goodput": 2.0, "limiting": "ttft_p95", "resolution": 2.0,
    }  # fmt: skip
    report = build()
    page = render_html(report)
    assert "p95 TTFT at most 500 ms: measured 812.0 ms (MISSED)" in page
    assert "Goodput: <b>1.50 requests/s</b>" in page
    assert "<b>ttft_p95</b> failed first" in page
    assert "Client-side and server-side series over time" in page and "Latency and throughput against offered" in page
    # a missed objective fails the verdict, and says which
    assert any("missed objective ttft_p95" in reason for reason in report.verdict.reasons)


def _check(rule_id: str, outcome: str, passed: int = 0, failed: int = 0, **fields: Any) -> Json:
    return {"rule_id": rule_id, "title": f"the {rule_id} rule", "severity": "required", "outcome": outcome,
            "passed": passed, "failed": failed, "reason": None, "first_failure": None, **fields}  # fmt: skip


def test_checks_under_load_are_shown_and_a_broken_rule_fails_the_verdict(
    build: ReportFactory, conformance: Json, throughput: Json
) -> None:
    example = {
        "message": "total_tokens 52 != prompt_tokens 35 + completion_tokens 16",
        "request": 'POST /v1/chat/completions {"max_tokens": 16}',
        "response": "HTTP 200: data: {<usage>}",
    }
    throughput["checked_responses"] = 128
    throughput["checks"] = [
        _check("usage.total_is_sum", "failed", 106, 22, first_failure=example),
        _check("stream.done", "passed", 128),
        _check("relations.deterministic", "not run", reason="needs a probe"),
    ]
    report = build(make_passing(conformance))
    page = render_html(report)
    assert "Responses checked under load" in page and "128 sampled responses" in page
    assert "1 passed, 1 failed, 1 not run" in page
    # the first failing exchange, escaped
    assert "total_tokens 52 != prompt_tokens 35" in page and "data: {&lt;usage&gt;}" in page
    assert "<code>relations.deterministic</code> (needs a probe)" in page
    assert report.verdict.status == "FAIL"
    assert any(
        "22 of 128 sampled responses broke rule usage.total_is_sum under load" in reason
        for reason in report.verdict.reasons
    )


def test_an_advisory_rule_broken_under_load_does_not_fail_the_verdict(
    build: ReportFactory, conformance: Json, throughput: Json
) -> None:
    throughput["checks"] = [_check("errors.envelope", "failed", 3, 1, severity="advisory")]
    report = build(make_passing(conformance))
    assert report.verdict.status == "PASS"
    assert any(reason.startswith("advisory (does not decide)") for reason in report.verdict.reasons)


def test_a_multi_turn_workload_is_shown_turn_by_turn(build: ReportFactory, throughput: Json) -> None:
    stats = {"mean": 12.0, "p50": 11.0, "p90": 14.0, "p95": 15.0, "p99": 16.0, "max": 17.0}
    throughput["workload"] = {"kind": "multi-turn", "prompt_lengths": "approximate: words", "late_requests": None,
                              "description": "conversations of 2 turns"}  # fmt: skip
    throughput["turns"] = [
        {"turn": 1, "requests": 10, "prompt_tokens_mean": 70.0, "ttft_ms": stats, "e2e_ms": stats},
        {"turn": 2, "requests": 9, "prompt_tokens_mean": 180.0, "ttft_ms": None, "e2e_ms": None},
    ]
    page = render_html(build())
    assert "Workload <b>multi-turn</b>: conversations of 2 turns. Prompt lengths: approximate: words." in page
    assert '<tr><td>1</td><td class="num">10</td><td class="num">70</td><td class="num">11.0 ms</td>' in page
    # a turn without streamed answers has no TTFT
    assert '<tr><td>2</td><td class="num">9</td><td class="num">180</td><td class="num">\u2014</td>' in page
