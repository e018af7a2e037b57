"""Fixtures for the reports tests: contract-shaped inputs (tests/reports/fixtures/) and reports built from them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reports.model import Environment, Report

FIXTURES = Path(__file__).with_name("fixtures")
PROFILE = "serverless-llama31"
ENVIRONMENT = Environment(
    python_version="3.11.9",
    platform="Linux-6.1.0-x86_64-with-glibc2.36",
    llamacert_version="0.1.0",
    hostname="ci-runner-7",
    cpu_count=2,
)

Json = dict[str, Any]
ReportFactory = Callable[..., Report]


def read_fixture(name: str) -> Json:
    data: Json = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


@pytest.fixture
def conformance() -> Json:
    """Conformance results: 13 rules in 6 groups, usage.total_is_sum failing with two pieces of evidence."""
    return read_fixture("conformance.json")


@pytest.fixture
def throughput() -> Json:
    """A streaming throughput load summary, no rate-limit check."""
    return read_fixture("load_throughput.json")


@pytest.fixture
def rate_limit() -> Json:
    """A non-streaming load summary whose rate-limit check passed."""
    return read_fixture("load_rate_limit.json")


def rule(conformance: Json, rule_id: str) -> Json:
    """The rule entry `rule_id` of conformance results, to edit in place."""
    entry: Json = next(entry for entry in conformance["rules"] if entry["rule_id"] == rule_id)
    return entry


def make_passing(conformance: Json) -> Json:
    failing = rule(conformance, "usage.total_is_sum")
    failing.update(outcome="pass", message=None, evidence=[])
    conformance["pytest_exit_status"] = 0
    return conformance


@pytest.fixture
def build(conformance: Json, throughput: Json, rate_limit: Json) -> ReportFactory:
    """Build a report; by default from all three fixtures (edit them first, or pass other parts)."""

    def build_report(
        conformance_results: Json | None = conformance,
        loads: list[Json] | None = None,
        profile: str = PROFILE,
    ) -> Report:
        parts = [throughput, rate_limit] if loads is None else loads
        return Report.from_parts(conformance_results, parts, profile, environment=ENVIRONMENT)

    return build_report


@pytest.fixture
def report(build: ReportFactory) -> Report:
    """The report of all three fixtures: FAIL, one rule failing, the rate-limit check passing."""
    return build()
