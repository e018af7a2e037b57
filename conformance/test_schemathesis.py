"""schemathesis from the spec: valid requests get 2xx and spec-valid responses; invalid ones get 4xx.

The document is loaded from spec/openapi.yaml at import time; the endpoint and key arrive when each
case is sent. Streams are out of scope here (schemathesis reads whole bodies): the SSE rules are
checked by test_streaming.py, so `stream` is forced off and the event-stream media type removed.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from schemathesis.errors import FailureGroup

from conformance.checks import run_checks
from conformance.exchange import Exchange, RecordedRequest
from conformance.plugin import Suite, Verifier, active_suite
from spec.document import load_document
from spec.models import AZURE_PASS_THROUGH

OPERATIONS = {
    "createCompletion": ("llama", False),
    "createCompletionAzure": ("azure", False),
    "createChatCompletion": ("llama", True),
    "createChatCompletionAzure": ("azure", True),
}


def _document_without_streams() -> dict[str, Any]:
    document = load_document()
    for operations in document["paths"].values():
        for operation in operations.values():
            ok = operation.get("responses", {}).get("200", {})
            ok.get("content", {}).pop("text/event-stream", None)
    return document


def _schema(mode: str, quick: bool) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "seed": 20261122,
            "output": {"sanitization": {"sensitive-markers": ["authorization", "api-key", "secret", "password"]}},
            "generation": {
                "mode": mode,
                "max-examples": 3 if quick else 8,
                "database": "none",
                "no-shrink": True,
                "unique-inputs": True,
                "with-security-parameters": False,
            },
            "phases": {
                "examples": {"enabled": False},
                "coverage": {"enabled": mode == "negative" and not quick, "unexpected-methods": []},
                "stateful": {"enabled": False},
            },
            "checks": {
                "enabled": False,
                "not_a_server_error": {"enabled": True},
                "status_code_conformance": {"enabled": True},
                "content_type_conformance": {"enabled": True},
                "response_schema_conformance": {"enabled": True},
                "positive_data_acceptance": {"enabled": True, "expected-statuses": ["2xx"]},
                "negative_data_rejection": {"enabled": True, "expected-statuses": ["4xx"]},
            },
        }
    )
    return schemathesis.openapi.from_dict(_document_without_streams(), config=config).include(method="POST")


def _quick() -> bool:
    try:
        return active_suite().quick
    except IndexError:  # imported outside a conformance session (e.g. by a linter)
        return False


positive = _schema("positive", _quick())
negative = _schema("negative", _quick())


@positive.hook  # type: ignore[untyped-decorator]
def map_body(context: Any, body: Any) -> Any:
    """Keep valid cases cheap, and valid under the rules JSON Schema cannot express (D2, D3)."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    body["max_tokens"] = min(int(body.get("max_tokens", 4)), 4)
    body["stream"] = False
    n = min(int(body.get("n") or 1), 2)
    body["n"] = n
    if body.get("best_of") is not None:
        body["best_of"] = min(max(int(body["best_of"]), n), 3)
    if body.get("use_beam_search"):
        body["temperature"] = 0
        body["best_of"] = max(2, n)
    # the checks judge one prompt per request (the OpenAI list form is tested in tests/reference_server)
    if isinstance(body.get("prompt"), list):
        body["prompt"] = body["prompt"][0]
    _servable(body)
    for message in body.get("messages") or []:
        # image parts are for Llama 3.2 Vision models only: a text model rightly refuses them
        if isinstance(message.get("content"), list):
            message["content"] = [
                part if part.get("type") == "text" else {"type": "text", "text": "an image"}
                for part in message["content"]
            ]
    return body


def _is_count(value: Any) -> bool:
    """A non-negative integer in JSON Schema's sense (19.0 included)."""
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return integral and not isinstance(value, bool) and value >= 0


def _servable(body: dict[str, Any]) -> None:
    """Replace valid values this deployment refuses (D30, D31 cross-field rules) by valid values it serves.

    Only valid values are changed, and only into valid values, so an invalid case stays invalid.
    """
    if _is_count(body.get("max_completion_tokens")) and _is_count(body.get("max_tokens")):
        # when given it is the limit (D31); the checks read max_tokens
        body["max_completion_tokens"] = max(1, int(body["max_tokens"]))
    if _is_count(body.get("top_logprobs")) and body.get("logprobs") is not True:
        del body["top_logprobs"]
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        body["response_format"] = {"type": "text"}
    tool_choice = body.get("tool_choice")
    calls_tools = tool_choice in ("required", "auto") or isinstance(tool_choice, dict)
    if calls_tools or (tool_choice is None and isinstance(body.get("tools"), list) and body["tools"]):
        body["tool_choice"] = "none"
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        if message.get("role") == "tool":
            message["role"] = "user"
        if isinstance(message.get("tool_calls"), list) and message["tool_calls"]:
            del message["tool_calls"]
            if message.get("content") is None:
                message["content"] = "hello"


@positive.hook  # type: ignore[untyped-decorator]
def map_headers(context: Any, headers: Any) -> Any:
    """Valid cases may carry any member (additionalProperties): on the Azure routes that needs pass-through (D26)."""
    return {**(headers or {}), **AZURE_PASS_THROUGH}


def _cheapen_negative(case: Any) -> None:
    """Lower the cost of a negative case without repairing what makes it invalid."""
    body = case.body
    if not isinstance(body, dict):
        return
    new = dict(body)
    max_tokens = new.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens >= 1:
        new["max_tokens"] = min(max_tokens, 4)
    _servable(new)
    n = new.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n >= 1:
        new["n"] = min(n, 2)
    if new != body:
        case.body = new


def _exchange(case: Any, response: Any, path: str) -> Exchange:
    body = case.body if isinstance(case.body, dict | list | str | int | float) else None
    headers = {k.lower(): (v[0] if isinstance(v, list) else v) for k, v in response.headers.items()}
    return Exchange(RecordedRequest("POST", path, body), response.status_code, headers, response.text)


def _run(case: Any, suite: Suite, rule_id: str) -> None:
    # one verifier per generated case: hypothesis reuses function-scoped fixtures across cases
    verify = Verifier(suite, f"{rule_id}::{case.operation.label}")
    family, chat = OPERATIONS[case.operation.definition.raw["operationId"]]
    apis = {(api.family, api.chat): api for api in suite.apis()}
    if (family, chat) not in apis:
        pytest.skip(f"{case.operation.label} is not under test (--routes / --model-kind)")
    client = suite.client()
    headers = client.auth_headers()
    response = case.call(base_url=suite.endpoint, headers=headers, timeout=120)
    exchange = _exchange(case, response, case.operation.path)
    try:
        case.validate_response(response, headers=headers)
    except FailureGroup as group:
        message = "; ".join(f"{f.title}: {f.message}" for f in group.exceptions)[:800]
        verify.rule(rule_id, False, message, exchange)
    else:
        verify.rule(rule_id, True, "", exchange)
    if rule_id == "positive.schema_cases":
        verify.checks(exchange, apis[(family, chat)])
    else:
        for rule, failure in run_checks(exchange, verify.context(apis[(family, chat)])):
            if rule.group == "errors":
                verify.suite.ledger.record(rule.rule_id, verify.test, exchange, failure)
                if failure:
                    verify.failures.append(f"[{rule.rule_id}] {failure}")
    verify.assert_ok()


@positive.parametrize()  # type: ignore[untyped-decorator]
def test_valid_requests_from_the_spec(case: Any, suite: Suite) -> None:
    _run(case, suite, "positive.schema_cases")


@negative.parametrize()  # type: ignore[untyped-decorator]
def test_invalid_requests_from_the_spec(case: Any, suite: Suite) -> None:
    _cheapen_negative(case)
    _run(case, suite, "errors.negative_cases")
