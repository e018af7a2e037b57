"""The pytest plugin behind `pytest conformance --endpoint URL`: options, fixtures, rule results.

Options also come from environment variables (LLAMACERT_ENDPOINT, LLAMACERT_API_KEY, ...). With no
endpoint, the embedded reference server (llama.cpp + SmolLM2) is started for the session.
Every check outcome is recorded per rule; `--results-json` writes them for the reports.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conformance.checks import RULES, CheckContext, run_checks
from conformance.exchange import EndpointClient, Exchange
from launch import ReferenceServer
from spec.document import Strictness
from spec.models import AZURE_API_VERSIONS

__all__ = [
    "Api",
    "RuleLedger",
    "Suite",
    "Verifier",
    "active_suite",
    "pytest_addoption",
    "pytest_configure",
    "pytest_generate_tests",
    "pytest_sessionfinish",
]

ROUTE_PREFIXES = {"llama": "/v1", "azure": ""}
PROMPT = "The capital of France is"
CHAT_MESSAGES = [{"role": "user", "content": "Name three colours."}]


def _option(config: pytest.Config, name: str, env: str, default: str | None = None) -> str | None:
    value = config.getoption(name)
    if value is None:
        return os.environ.get(env, default)
    return str(value)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llamacert", "llamacert conformance")
    group.addoption("--endpoint", help="base URL of the endpoint (env LLAMACERT_ENDPOINT); none: embedded server")
    group.addoption("--api-key", help="the endpoint's key (env LLAMACERT_API_KEY)")
    group.addoption("--auth-header", choices=["bearer", "api-key"], help="how to send the key (default bearer)")
    group.addoption("--routes", choices=["llama", "azure", "both"], help="route families to test (default both)")
    group.addoption(
        "--model-kind",
        choices=["chat", "completion", "both", "auto"],
        help="which API to test (default auto: from /info; both when /info is unavailable)",
    )
    group.addoption("--strictness", choices=["docs", "compat"], help="judge by the docs as written or compat")
    group.addoption(
        "--api-version",
        help=f"api-version sent on the Azure routes (default {AZURE_API_VERSIONS[0]}, the SDK's; 'none' sends none)",
    )
    group.addoption("--profile", help="deployment profile (spec/profiles.yaml) for rate-limit / safety rules")
    group.addoption("--quick", action="store_true", default=None, help="a fast subset (about a minute)")
    group.addoption("--results-json", help="write per-rule results (pass/fail/skip with evidence) to this file")
    group.addoption(
        "--server-arg",
        action="append",
        default=[],
        help="extra `llamacert serve` flag for the embedded server (repeatable)",
    )


@dataclass(frozen=True)
class Api:
    """One API under test: chat or completions on one route family."""

    family: str
    chat: bool

    @property
    def path(self) -> str:
        return f"{ROUTE_PREFIXES[self.family]}/{'chat/completions' if self.chat else 'completions'}"

    def body(self, prompt: str | None = None, **params: Any) -> dict[str, Any]:
        if self.chat:
            messages = CHAT_MESSAGES if prompt is None else [{"role": "user", "content": prompt}]
            return {"messages": messages, **params}
        return {"prompt": PROMPT if prompt is None else prompt, **params}

    def __str__(self) -> str:
        return f"{self.family}-{'chat' if self.chat else 'completions'}"


@dataclass
class RuleRecord:
    passed: int = 0
    failed: int = 0
    evidence: list[dict[str, Any]] = field(default_factory=list)


class RuleLedger:
    """Outcomes per rule over the session."""

    def __init__(self) -> None:
        self.records: dict[str, RuleRecord] = {}
        self.errors: dict[str, str] = {}

    def record(self, rule_id: str, test: str, exchange: Exchange | None, message: str | None) -> None:
        entry = self.records.setdefault(rule_id, RuleRecord())
        if message is None:
            entry.passed += 1
            return
        entry.failed += 1
        if len(entry.evidence) < 5:
            entry.evidence.append(
                {
                    "test": test,
                    "request": exchange.describe_request() if exchange else None,
                    "status": exchange.status if exchange else None,
                    "response_excerpt": exchange.excerpt() if exchange else "",
                    "message": message,
                }
            )

    def results(self) -> list[dict[str, Any]]:
        out = []
        for rule_id, rule in sorted(RULES.items()):
            entry = self.records.get(rule_id)
            outcome = "skip" if entry is None else "fail" if entry.failed else "pass"
            first = entry.evidence[0]["message"] if entry and entry.evidence else None
            out.append(
                {
                    "rule_id": rule_id,
                    "group": rule.group,
                    "title": rule.title,
                    "source": rule.source,
                    "outcome": outcome,
                    "message": first,
                    "tests": (entry.passed + entry.failed) if entry else 0,
                    "evidence": entry.evidence if entry else [],
                }
            )
        return out


class Verifier:
    """Runs the checks of one test and records every outcome under its rule."""

    def __init__(self, suite: Suite, test: str) -> None:
        self.suite = suite
        self.test = test
        self.failures: list[str] = []
        self.asserted = False

    def context(self, api: Api | None) -> CheckContext:
        return CheckContext(self.suite.strictness, chat=bool(api and api.chat))

    def checks(self, exchange: Exchange, api: Api | None) -> Exchange:
        """All single-exchange checks; failures are collected and raised at the end of the test."""
        for rule, message in run_checks(exchange, self.context(api)):
            self.suite.ledger.record(rule.rule_id, self.test, exchange, message)
            if message is not None:
                self.failures.append(
                    f"[{rule.rule_id}] {message}\n    ({rule.title}; docs: {rule.source})"
                    f"\n    request: {json.dumps(exchange.describe_request())[:300]}"
                )
        return exchange

    def rule(self, rule_id: str, ok: bool, message: str, exchange: Exchange | None = None) -> None:
        """Record a rule checked by the test itself (relations between exchanges, expected statuses)."""
        rule = RULES[rule_id]
        self.suite.ledger.record(rule_id, self.test, exchange, None if ok else message)
        if not ok:
            request = json.dumps(exchange.describe_request())[:300] if exchange else "-"
            self.failures.append(
                f"[{rule_id}] {message}\n    ({rule.title}; docs: {rule.source})"
                f"\n    request: {request}\n    response: {exchange.excerpt(300) if exchange else '-'}"
            )

    def status(self, rule_id: str, exchange: Exchange, expected: set[int], what: str) -> None:
        ok = exchange.status in expected
        self.rule(rule_id, ok, f"{what}: expected status {sorted(expected)}, got {exchange.status}", exchange)

    def assert_ok(self) -> None:
        self.asserted = True
        if self.failures:
            raise AssertionError("\n".join(self.failures))


class Suite:
    """Session-wide settings and state of a conformance run."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.endpoint = _option(config, "endpoint", "LLAMACERT_ENDPOINT")
        self.api_key = _option(config, "api_key", "LLAMACERT_API_KEY")
        self.auth_header = _option(config, "auth_header", "LLAMACERT_AUTH_HEADER", "bearer") or "bearer"
        self.routes = _option(config, "routes", "LLAMACERT_ROUTES", "both") or "both"
        api_version = _option(config, "api_version", "LLAMACERT_API_VERSION", AZURE_API_VERSIONS[0])
        self.api_version = None if api_version in (None, "", "none") else api_version
        self.model_kind = _option(config, "model_kind", "LLAMACERT_MODEL_KIND", "auto") or "auto"
        self.strictness = Strictness(_option(config, "strictness", "LLAMACERT_STRICTNESS", "docs") or "docs")
        self.profile = _option(config, "profile", "LLAMACERT_PROFILE")
        quick = config.getoption("quick")
        self.quick = bool(quick) or os.environ.get("LLAMACERT_QUICK", "") in {"1", "true", "yes"}
        self.results_json = _option(config, "results_json", "LLAMACERT_RESULTS_JSON")
        self.ledger = RuleLedger()
        self.started_at = dt.datetime.now(dt.UTC)
        self.server: ReferenceServer | None = None
        self.model_info: dict[str, Any] | None = None
        self._client: EndpointClient | None = None

    def client(self) -> EndpointClient:
        if self._client is None:
            if not self.endpoint:
                self.server = ReferenceServer(list(self.config.getoption("server_arg") or []), self.profile)
                self.server.wait_ready()
                self.endpoint, self.api_key = self.server.url, self.server.api_key
            assert self.endpoint is not None
            self._client = EndpointClient(
                self.endpoint, self.api_key, auth=self.auth_header, api_version=self.api_version
            )
            info = self._client.get("/info")
            if info.status == 200 and isinstance(info.json, dict):
                self.model_info = info.json
        return self._client

    def apis(self) -> list[Api]:
        families = ["llama", "azure"] if self.routes == "both" else [self.routes]
        if self.quick:
            families = families[:1]
        kind = self.model_kind
        if kind == "auto":
            kind = "both"
            model_type = (self.model_info or {}).get("model_type")
            if model_type == "text-generation":
                kind = "completion"
        chats = {"chat": [True], "completion": [False], "both": [False, True]}[kind]
        return [Api(family, chat) for family in families for chat in chats]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self.server is not None:
            self.server.stop()

    def write_results(self) -> None:
        if not self.results_json:
            return
        finished = dt.datetime.now(dt.UTC)
        document = {
            "schema_version": 1,
            "endpoint": self.endpoint,
            "strictness": self.strictness.value,
            "profile": self.profile,
            "model": self.model_info,
            "started_at": self.started_at.isoformat(),
            "finished_at": finished.isoformat(),
            "duration_s": (finished - self.started_at).total_seconds(),
            "quick": self.quick,
            "rules": self.ledger.results(),
        }
        path = Path(self.results_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2), encoding="utf-8")


SUITE_KEY = pytest.StashKey[Suite]()
_ACTIVE: list[Suite] = []


def active_suite() -> Suite:
    """The running session's suite, for modules that size their test generation at import time."""
    return _ACTIVE[-1]


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SUITE_KEY] = Suite(config)
    _ACTIVE.append(config.stash[SUITE_KEY])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "api" in metafunc.fixturenames:
        suite = metafunc.config.stash[SUITE_KEY]
        # /info decides the model kind; the client (and the embedded server) start here, once.
        suite.client()
        apis = suite.apis()
        metafunc.parametrize("api", apis, ids=[str(api) for api in apis])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    suite = session.config.stash.get(SUITE_KEY, None)
    if suite is not None:
        suite.write_results()
        suite.close()


@pytest.fixture(scope="session")
def suite(request: pytest.FixtureRequest) -> Suite:
    return request.config.stash[SUITE_KEY]


@pytest.fixture(scope="session")
def client(suite: Suite) -> EndpointClient:
    return suite.client()


@pytest.fixture
def verify(suite: Suite, request: pytest.FixtureRequest) -> Iterator[Verifier]:
    verifier = Verifier(suite, request.node.nodeid)
    yield verifier
    if not verifier.asserted:  # a test that forgot assert_ok() still fails on what its checks found
        verifier.assert_ok()
