"""The pytest plugin behind `pytest conformance --endpoint URL`: options, fixtures, and rule outcomes from what ran.

Options also come from environment variables (LLAMACERT_ENDPOINT, LLAMACERT_API_KEY, ...). With no
endpoint, the embedded reference server (llama.cpp + SmolLM2) is started for the session.
Test modules only send requests (through `Verifier`, which labels each with its probe and role) and
hand the exchanges to `conformance.rules.judge`. Each test declares the rules it exercises
(`@pytest.mark.rules(...)`), so a rule whose test crashed is `error`, one whose test was skipped is
`skip`, and one no collected test exercised is `not-run`: nothing passes without evidence.
`--results-json` writes the outcomes for the reports; `--exchanges` saves every exchange as JSONL.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from conformance.exchange import EndpointClient, Exchange, ProbeLabel, save_exchanges
from conformance.rules import RULES, JudgeContext, RuleOutcome, judge
from launch import ReferenceServer
from spec.document import Strictness
from spec.models import AZURE_API_VERSIONS, model_type_api
from spec.profiles import get_profile
from spec.routes import RouteFamily, generation_route

__all__ = [
    "DEFAULT_HARMFUL_PROMPTS",
    "AdvisoryFinding",
    "Api",
    "InProcessEndpoint",
    "RuleLedger",
    "RuleViolations",
    "Suite",
    "Verifier",
    "active_suite",
    "pytest_addoption",
    "pytest_collection_finish",
    "pytest_configure",
    "pytest_generate_tests",
    "pytest_runtest_makereport",
    "pytest_sessionfinish",
]

PROMPT = "The capital of France is"
CHAT_MESSAGES = [{"role": "user", "content": "Name three colours."}]
DEFAULT_HARMFUL_PROMPTS = Path(__file__).with_name("data") / "harmful_prompts.txt"
RESULTS_SCHEMA_VERSION = 1


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
        help="which API to test (default auto: the routes that answer, narrowed by /info; R5)",
    )
    group.addoption("--strictness", choices=["docs", "compat"], help="judge by the docs as written or compat")
    group.addoption(
        "--api-version",
        help=f"api-version sent on the Azure routes (default {AZURE_API_VERSIONS[0]}, the SDK's; 'none' sends none)",
    )
    group.addoption("--profile", help="deployment profile (spec/profiles.yaml): which rules a verdict requires")
    group.addoption("--quick", action="store_true", default=None, help="a fast subset (about a minute)")
    group.addoption("--results-json", help="write per-rule outcomes (pass/fail/skip/error/not-run) to this file")
    group.addoption("--exchanges", help="save every exchange as JSONL to this file (re-judge: llamacert check)")
    group.addoption(
        "--harmful-prompts",
        help="file of harmful prompts, one per line, for the content-safety rule "
        f"(default conformance/data/{DEFAULT_HARMFUL_PROMPTS.name})",
    )
    group.addoption(
        "--server-arg",
        action="append",
        default=[],
        help="extra `llamacert serve` flag for the embedded server (repeatable)",
    )


def _route_family(name: str) -> RouteFamily:
    if name == "llama":
        return "llama"
    if name == "azure":
        return "azure"
    raise pytest.UsageError(f"--routes must be llama, azure or both, not {name!r}")


@dataclass(frozen=True)
class Api:
    """One API under test: chat or completions on one route family."""

    family: str
    chat: bool

    @property
    def path(self) -> str:
        return generation_route("chat" if self.chat else "completion", _route_family(self.family)).path

    def body(self, prompt: str | None = None, **params: Any) -> dict[str, Any]:
        if self.chat:
            messages = CHAT_MESSAGES if prompt is None else [{"role": "user", "content": prompt}]
            return {"messages": messages, **params}
        return {"prompt": PROMPT if prompt is None else prompt, **params}

    def __str__(self) -> str:
        return f"{self.family}-{'chat' if self.chat else 'completions'}"


@dataclass(frozen=True)
class InProcessEndpoint:
    """An endpoint reached through an httpx transport instead of the network (pass it in `pytest.main(plugins=)`)."""

    url: str
    api_key: str | None
    transport: httpx.BaseTransport


class RuleViolations(AssertionError):
    """A test's exchanges broke required-severity rules (their outcomes are already recorded)."""


class AdvisoryFinding(UserWarning):
    """A test's exchanges broke an advisory rule: shown in pytest's summary, recorded, not a failure."""


@dataclass
class RuleRecord:
    passed: int = 0
    failed: int = 0
    evidence: list[dict[str, Any]] = field(default_factory=list)
    declared_by: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class TestStatus:
    status: str  # ran | skipped | error
    message: str | None = None


class RuleLedger:
    """Outcomes per rule over the session, and what pytest says happened to each test that declared it."""

    def __init__(self) -> None:
        self.records: dict[str, RuleRecord] = {rule_id: RuleRecord() for rule_id in RULES}
        self.tests: dict[str, TestStatus] = {}

    def declare(self, test: str, patterns: tuple[str, ...]) -> None:
        """`test` was collected to exercise the rules matching `patterns`."""
        for rule_id, record in self.records.items():
            if any(fnmatch.fnmatchcase(rule_id, pattern) for pattern in patterns):
                record.declared_by.add(test)

    def test_ended(self, test: str, status: str, message: str | None = None) -> None:
        if status == "ran" and test in self.tests:
            return  # setup passed before; keep a later skip or error
        self.tests[test] = TestStatus(status, message)

    def record(self, outcome: RuleOutcome, test: str) -> None:
        entry = self.records.setdefault(outcome.rule_id, RuleRecord())
        if outcome.passed:
            entry.passed += 1
            return
        entry.failed += 1
        if len(entry.evidence) < 5:
            exchange = outcome.exchanges[-1] if outcome.exchanges else None
            entry.evidence.append(
                {
                    "test": test,
                    "request": exchange.describe_request() if exchange else None,
                    "status": exchange.status if exchange else None,
                    "response_excerpt": exchange.excerpt() if exchange else "",
                    "message": outcome.message or "",
                }
            )

    def _outcome(self, entry: RuleRecord) -> tuple[str, str | None]:
        if entry.failed:
            return "fail", entry.evidence[0]["message"] if entry.evidence else None
        statuses = {test: self.tests.get(test) for test in sorted(entry.declared_by)}
        errors = [f"{test}: {s.message}" for test, s in statuses.items() if s is not None and s.status == "error"]
        if errors:
            return "error", f"{len(errors)} of its tests crashed; first: {errors[0][:400]}"
        if entry.passed:
            return "pass", None
        skips = [f"{test}: {s.message}" for test, s in statuses.items() if s is not None and s.status == "skipped"]
        if skips:
            return "skip", skips[0][:400]
        if any(s is not None for s in statuses.values()):
            return "not-run", "its tests ran, but no exchange exercised it"
        return "not-run", "no collected test exercises it"

    def results(self) -> list[dict[str, Any]]:
        out = []
        for rule_id, rule in sorted(RULES.items()):
            entry = self.records[rule_id]
            outcome, message = self._outcome(entry)
            out.append(
                {
                    "rule_id": rule_id,
                    "group": rule.group,
                    "title": rule.title,
                    "source": rule.source,
                    "severity": rule.severity,
                    "conditional": rule.conditional,
                    "outcome": outcome,
                    "message": message,
                    "tests": entry.passed + entry.failed,
                    "evidence": entry.evidence,
                }
            )
        return out


class Verifier:
    """Sends one test's requests, each labelled with its probe and role, and judges them at the end."""

    def __init__(self, suite: Suite, test: str) -> None:
        self.suite = suite
        self.test = test
        self.exchanges: list[Exchange] = []
        self.finished = False

    def context(self) -> JudgeContext:
        return self.suite.context()

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        probe: str,
        role: str = "request",
        run: int | str = 0,
        valid: bool = False,
        invalid: bool = False,
        demands: Sequence[str] = (),
        note: str = "",
        expect: dict[str, Any] | None = None,
        **client_options: Any,
    ) -> Exchange:
        """Send one labelled request: `valid` / `invalid` by the spec (or neither: no claim), the features
        whose rules a refusal fails (`demands`; default every feature it uses)."""
        label = ProbeLabel(probe, f"{self.test}#{run}", role, note, valid, dict(expect or {}), list(demands), invalid)
        exchange = self.suite.client().request(method, path, body, label=label, **client_options)
        self.exchanges.append(exchange)
        self.suite.exchanges.append(exchange)
        return exchange

    def post(self, path: str, body: Any, **options: Any) -> Exchange:
        return self.send("POST", path, body, **options)

    def get(self, path: str, **options: Any) -> Exchange:
        return self.send("GET", path, **options)

    def finish(self) -> None:
        """Judge the test's exchanges; the failures (with their rule, source and evidence) fail the test."""
        self.finished = True
        failures = []
        for outcome in judge(self.exchanges, self.context()):
            self.suite.ledger.record(outcome, self.test)
            if not outcome.passed:
                rule = RULES[outcome.rule_id]
                exchange = outcome.exchanges[-1] if outcome.exchanges else None
                request = json.dumps(exchange.describe_request())[:300] if exchange else "-"
                text = f"[{rule.rule_id}] {outcome.message}\n    ({rule.title}; docs: {rule.source})"
                text += f"\n    request: {request}"
                if rule.severity == "advisory":
                    warnings.warn(AdvisoryFinding(text), stacklevel=2)  # reported, never a failed test
                else:
                    failures.append(text)
        if failures:
            raise RuleViolations("\n".join(failures))


def _harmful_prompts(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise pytest.UsageError(f"--harmful-prompts {path}: {error.strerror or error}") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise pytest.UsageError(f"--harmful-prompts {path}: no prompts in it")
    return prompts


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
        self.exchanges_path = _option(config, "exchanges", "LLAMACERT_EXCHANGES")
        harmful = _option(config, "harmful_prompts", "LLAMACERT_HARMFUL_PROMPTS")
        self.harmful_prompts_path = Path(harmful) if harmful else DEFAULT_HARMFUL_PROMPTS
        self.ledger = RuleLedger()
        self.exchanges: list[Exchange] = []
        self.started_at = dt.datetime.now(dt.UTC)
        self.server: ReferenceServer | None = None
        self.model_info: dict[str, Any] | None = None
        self.not_offered: list[str] = []
        self.exit_status: int | None = None
        self._apis: list[Api] | None = None
        self._cases = 0
        self._client: EndpointClient | None = None
        self._in_process = next(
            (plugin for plugin in config.pluginmanager.get_plugins() if isinstance(plugin, InProcessEndpoint)), None
        )

    def context(self) -> JudgeContext:
        return JudgeContext(self.strictness, get_profile(self.profile) if self.profile else None)

    def next_case(self) -> int:
        """A session-wide number for generated cases, which share one test id."""
        self._cases += 1
        return self._cases

    def harmful_prompts(self) -> list[str]:
        return _harmful_prompts(self.harmful_prompts_path)

    def client(self) -> EndpointClient:
        if self._client is None:
            transport = None
            if self._in_process is not None:
                self.endpoint, self.api_key = self._in_process.url, self._in_process.api_key
                transport = self._in_process.transport
            elif not self.endpoint:
                self.server = ReferenceServer(list(self.config.getoption("server_arg") or []), self.profile)
                self.server.wait_ready()
                self.endpoint, self.api_key = self.server.url, self.server.api_key
            assert self.endpoint is not None
            self._client = EndpointClient(
                self.endpoint,
                self.api_key,
                auth=self.auth_header,
                transport=transport,
                busy_retries=3,
                api_version=self.api_version,
            )
            info = self._client.get("/info")
            if info.status == 200 and isinstance(info.json, dict):
                self.model_info = info.json
        return self._client

    def apis(self) -> list[Api]:
        """The APIs under test: as chosen, or under `auto` the ones the endpoint offers (a 404 is "not offered", R5)."""
        if self._apis is not None:
            return self._apis
        # --quick sends fewer cases, never fewer routes: a profile that requires the Azure rules would
        # otherwise read INCOMPLETE on every honest endpoint (the Azure family was once left out)
        families = ["llama", "azure"] if self.routes == "both" else [self.routes]
        kind = self.model_kind
        if kind == "auto":
            # any of Azure's spellings (D43): text_generation is a base model as text-generation is
            base_model = model_type_api((self.model_info or {}).get("model_type")) == "completion"
            kind = "completion" if base_model else "both"
        chats = {"chat": [True], "completion": [False], "both": [False, True]}[kind]
        apis = [Api(family, chat) for family in families for chat in chats]
        if self.model_kind == "auto":
            client = self.client()
            offered = [api for api in apis if client.post(api.path, api.body(max_tokens=1)).status != 404]
            self.not_offered = [api.path for api in apis if api not in offered]
            apis = offered or apis  # nothing offered at all: test them all, and let every rule say so
        self._apis = apis
        return apis

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self.server is not None:
            self.server.stop()

    def write_results(self) -> None:
        if self.exchanges_path:
            save_exchanges(Path(self.exchanges_path), self.exchanges)
        if not self.results_json:
            return
        finished = dt.datetime.now(dt.UTC)
        document = {
            "schema_version": RESULTS_SCHEMA_VERSION,
            "endpoint": self.endpoint,
            "strictness": self.strictness.value,
            "profile": self.profile,
            "model": self.model_info,
            "started_at": self.started_at.isoformat(),
            "finished_at": finished.isoformat(),
            "duration_s": (finished - self.started_at).total_seconds(),
            "quick": self.quick,
            "pytest_exit_status": self.exit_status,
            "not_offered": self.not_offered,
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
    config.addinivalue_line("markers", "rules(*patterns): the conformance rules (ids or globs) a test exercises")
    config.stash[SUITE_KEY] = Suite(config)
    _ACTIVE.append(config.stash[SUITE_KEY])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "api" in metafunc.fixturenames:
        suite = metafunc.config.stash[SUITE_KEY]
        # the routes offered decide the APIs; the client (and the embedded server) start here, once
        apis = suite.apis()
        metafunc.parametrize("api", apis, ids=[str(api) for api in apis])


def pytest_collection_finish(session: pytest.Session) -> None:
    suite = session.config.stash.get(SUITE_KEY, None)
    if suite is None:
        return
    for item in session.items:
        for marker in item.iter_markers("rules"):
            suite.ledger.declare(item.nodeid, tuple(str(pattern) for pattern in marker.args))


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """What pytest says happened to a test decides whether its rules ran, were skipped or errored."""
    suite = item.config.stash.get(SUITE_KEY, None)
    if suite is None or (call.when == "teardown" and call.excinfo is None):
        return
    excinfo = call.excinfo
    if excinfo is None:
        suite.ledger.test_ended(item.nodeid, "ran")
    elif excinfo.errisinstance(pytest.skip.Exception):
        suite.ledger.test_ended(item.nodeid, "skipped", str(excinfo.value))
    elif excinfo.errisinstance(RuleViolations):
        suite.ledger.test_ended(item.nodeid, "ran")
    else:
        suite.ledger.test_ended(item.nodeid, "error", f"{call.when}: {excinfo.exconly()[:600]}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    suite = session.config.stash.get(SUITE_KEY, None)
    if suite is not None:
        suite.exit_status = int(exitstatus)
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
    if not verifier.finished:  # a test that forgot finish() still fails on what its rules found
        verifier.finish()
