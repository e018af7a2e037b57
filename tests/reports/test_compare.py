"""compare: newly failing and passing rules, metrics that moved, the regression decision, and the CLI's exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports.cli import compare_main
from reports.compare import Comparison, compare_reports, format_comparison
from reports.model import Report
from tests.reports.conftest import Json, ReportFactory, make_passing, rule


def _metric(comparison: Comparison, scenario: str, metric: str) -> tuple[str, float | None]:
    change = next(c for c in comparison.metrics if c.scenario == scenario and c.metric == metric)
    return change.status, change.change_pct


def test_a_report_against_itself_is_no_regression(report: Report) -> None:
    comparison = compare_reports(report, report)
    assert not comparison.is_regression
    assert comparison.newly_failing == comparison.newly_passing == []
    assert len(comparison.metrics) == 16  # the eight gate metrics of spec.load_regression in each of two scenarios
    assert {change.status for change in comparison.metrics} == {"unchanged", "n/a"}  # rate-limit has no TTFT
    assert _metric(comparison, "rate-limit", "median TTFT (ms)") == ("n/a", None)


def test_a_newly_failing_rule_is_a_regression(build: ReportFactory, conformance: Json) -> None:
    old = build()
    rule(conformance, "params.temperature_range").update(outcome="fail", message="temperature 3 was accepted")
    comparison = compare_reports(old, build(conformance))
    assert [change.rule_id for change in comparison.newly_failing] == ["params.temperature_range"]
    assert comparison.regressions == ["rule params.temperature_range newly fails (was pass)"]


def test_a_newly_passing_rule_is_an_improvement(build: ReportFactory, conformance: Json) -> None:
    old = build()
    comparison = compare_reports(old, build(make_passing(conformance)))
    assert [(c.rule_id, c.old, c.new) for c in comparison.newly_passing] == [("usage.total_is_sum", "fail", "pass")]
    assert (comparison.old_verdict, comparison.new_verdict) == ("FAIL", "PASS")
    assert not comparison.is_regression


def test_a_new_rule_that_fails_is_newly_failing(build: ReportFactory, conformance: Json) -> None:
    old = build()
    conformance["rules"].append({**rule(conformance, "usage.total_is_sum"), "rule_id": "usage.new_rule"})
    [change] = compare_reports(old, build(conformance)).newly_failing
    assert (change.rule_id, change.old, change.new) == ("usage.new_rule", None, "fail")


def test_latency_worse_beyond_the_tolerance_is_a_regression(build: ReportFactory, throughput: Json) -> None:
    old = build()
    throughput["ttft_ms"]["p50"] *= 1.20
    throughput["e2e_ms"]["p95"] *= 1.05
    comparison = compare_reports(old, build())
    status, change = _metric(comparison, "throughput", "median TTFT (ms)")
    assert status == "regressed" and change == pytest.approx(20.0)
    assert _metric(comparison, "throughput", "p95 end-to-end latency (ms)")[0] == "unchanged"
    assert comparison.regressions == [
        "throughput: median TTFT (ms) moved +20.0% (175 -> 211), beyond the allowed 17.55 "
        "(the 10% tolerance or the run-to-run spread, whichever is larger)"
    ]
    assert not compare_reports(old, build(), tolerance_pct=25).is_regression


def test_throughput_is_better_higher(build: ReportFactory, throughput: Json) -> None:
    old = build()
    throughput["output_tokens_per_s"] *= 0.85
    throughput["requests_per_s"] *= 1.30
    comparison = compare_reports(old, build())
    assert _metric(comparison, "throughput", "output tokens/s")[0] == "regressed"
    assert _metric(comparison, "throughput", "requests/s")[0] == "improved"


def test_errors_appearing_from_none_is_a_regression(build: ReportFactory, rate_limit: Json) -> None:
    old = build()
    rate_limit["errors"] = 4
    assert _metric(compare_reports(old, build()), "rate-limit", "error rate (%)") == ("regressed", None)


def test_a_move_within_the_measured_spread_is_no_regression(build: ReportFactory, throughput: Json) -> None:
    """Repeated runs: a 20 % worse median TTFT is noise when the runs themselves ranged wider than that."""
    p50 = throughput["ttft_ms"]["p50"]
    throughput["runs"] = {
        "runs": 3,
        "metrics": {
            "ttft_p50_ms": {"median": p50, "low": p50 * 0.7, "high": p50 * 1.3, "values": [p50 * 0.7, p50, p50 * 1.3]}
        },
    }
    old = build()
    throughput["runs"]["metrics"]["ttft_p50_ms"]["median"] = p50 * 1.2
    assert _metric(compare_reports(old, build()), "throughput", "median TTFT (ms)")[0] == "unchanged"
    throughput["runs"]["metrics"]["ttft_p50_ms"]["median"] = p50 * 1.7
    assert _metric(compare_reports(old, build()), "throughput", "median TTFT (ms)")[0] == "regressed"


def test_scenarios_and_rules_missing_on_one_side_are_noted(build: ReportFactory, throughput: Json) -> None:
    comparison = compare_reports(build(), build(None, loads=[throughput]))
    assert comparison.notes == [
        "rules not compared: the new report has no conformance results",
        "load scenario 'rate-limit' is only in the old report",
    ]
    assert not comparison.is_regression


def test_plain_text_table(build: ReportFactory, conformance: Json, throughput: Json) -> None:
    old = build()
    rule(conformance, "info.model_fields")["outcome"] = "error"
    throughput["ttft_ms"]["p50"] *= 2
    text = format_comparison(compare_reports(old, build(conformance)), "a.json", "b.json")
    assert text.startswith("old: a.json\nnew: b.json\nverdict: FAIL -> FAIL\n")
    assert "Newly failing rules (1)\n  rule               outcome        title\n" in text
    assert "  info.model_fields  pass -> error  /info returns model_name" in text
    assert "Newly passing rules (0)\n  none\n" in text
    header = next(line for line in text.splitlines() if "scenario" in line and "metric" in line)
    assert header.split() == ["scenario", "metric", "direction", "old", "new", "change", "allowed", "status"]
    assert "REGRESSED" in text
    assert text.endswith(
        "REGRESSION (2):\n"
        "  - rule info.model_fields newly errors (was pass)\n"
        "  - throughput: median TTFT (ms) moved +100.0% (175 -> 351), beyond the allowed 17.55 "
        "(the 10% tolerance or the run-to-run spread, whichever is larger)\n"
    )
    assert text.isascii()


@pytest.fixture
def report_files(build: ReportFactory, conformance: Json, tmp_path: Path) -> tuple[Path, Path]:
    old = build().save(tmp_path / "old.json")
    rule(conformance, "params.temperature_range")["outcome"] = "fail"
    return old, build(conformance).save(tmp_path / "new.json")


def test_cli_exit_codes(report_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = report_files
    assert compare_main([str(old), str(old)]) == 0
    assert capsys.readouterr().out.endswith("no regression\n")
    assert compare_main([str(old), str(new)]) == 1
    assert "REGRESSION (1):" in capsys.readouterr().out
    assert compare_main([str(new), str(old)]) == 0
    assert compare_main([str(old), str(new), "--tolerance", "25%"]) == 1  # a failing rule ignores the tolerance


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["{old}", "{missing}"], "missing.json: cannot read it (No such file or directory)"),
        (["{old}", "{garbage}"], "garbage.json: not valid JSON"),
        (["{old}"], "the following arguments are required: NEW.json"),
        (["{old}", "{old}", "--tolerance", "ten"], "tolerance 'ten': expected a percentage such as 10%"),
        (["{old}", "{old}", "--tolerance=-5%"], "expected a percentage between 0% and 1000%"),
        (["{old}", "{old}", "--tolerance", "0.1"], "tolerance '0.1' is ambiguous: write 0.1% or 10%"),
    ],
    ids=["missing", "garbage", "one-file", "tolerance-word", "tolerance-negative", "tolerance-ambiguous"],
)
def test_cli_unreadable_input_exits_2_without_traceback(
    report_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    old = report_files[0]
    garbage = old.with_name("garbage.json")
    garbage.write_text("<html>", encoding="utf-8")
    paths = {"old": old, "missing": old.with_name("missing.json"), "garbage": garbage}
    assert compare_main([arg.format(**paths) for arg in argv]) == 2
    captured = capsys.readouterr()
    assert expected in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_cli_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert compare_main(["--help"]) == 0
    assert "--tolerance PCT" in capsys.readouterr().out
