"""schemathesis generates request bodies from the spec; the suite's client sends them and the rules judge them.

Valid cases must be served (and their responses meet every exchange rule); invalid ones get a 4xx.
The document is loaded from spec/openapi.yaml at import time. Streams are left to test_streaming.py,
so `stream` is forced off in valid cases.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis

from conformance.plugin import Api, Suite, Verifier, active_suite
from spec.document import load_document, schema_validator

OPERATIONS = {
    "createCompletion": ("llama", False),
    "createCompletionAzure": ("azure", False),
    "createChatCompletion": ("llama", True),
    "createChatCompletionAzure": ("azure", True),
}


def _document_without_streams() -> dict[str, Any]:
    """The document's generation routes, streams left out; extensions (/tokenize, D58) are demanded of no endpoint."""
    document = load_document()
    document["paths"] = {
        path: operations
        for path, operations in document["paths"].items()
        if not any(operation.get("x-extension") for operation in operations.values())
    }
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


SAFE_INTEGER = 2**53 - 1
"""RFC 8259 section 6 lets a parser limit the range of numbers; beyond a double's exact integers is left free (R8)."""


def _within_interoperable_range(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _within_interoperable_range(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_within_interoperable_range(item) for item in node]
    if isinstance(node, int) and not isinstance(node, bool) and abs(node) > SAFE_INTEGER:
        return SAFE_INTEGER if node > 0 else -SAFE_INTEGER
    return node


def _is_count(value: Any) -> bool:
    """A non-negative integer in JSON Schema's sense (19.0 included)."""
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return integral and not isinstance(value, bool) and value >= 0


def _servable(body: dict[str, Any]) -> None:
    """Replace valid values this deployment refuses (D44, D45 cross-field rules) by valid values it serves.

    Only valid values are changed, and only into valid values, so an invalid case stays invalid.
    """
    if _is_count(body.get("max_completion_tokens")) and _is_count(body.get("max_tokens")):
        # when given it is the limit (D45); the checks read max_tokens
        body["max_completion_tokens"] = max(1, int(body["max_tokens"]))
    if _is_count(body.get("top_logprobs")) and body.get("logprobs") is not True:
        del body["top_logprobs"]
    # the rules judge the documented logprobs object: the OpenAI chat form (D45) is tested in tests/
    if body.get("logprobs") is True:
        body["logprobs"] = min(int(body.pop("top_logprobs", None) or 0), 20)
    elif body.get("logprobs") is False:
        del body["logprobs"]
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
def map_body(context: Any, body: Any) -> Any:
    """Keep valid cases cheap, and valid under the rules JSON Schema cannot express (D2, D3, R8)."""
    if not isinstance(body, dict):
        return body
    body = _within_interoperable_range(body)
    body["max_tokens"] = min(int(body.get("max_tokens", 4)), 4)
    body["stream"] = False
    n = min(int(body.get("n") or 1), 2)
    body["n"] = n
    if body.get("best_of") is not None:
        body["best_of"] = min(max(int(body["best_of"]), n), 3)
    if body.get("use_beam_search"):
        body["temperature"] = 0
        body["best_of"] = max(2, n)
    # the rules judge one prompt per request (the OpenAI list form is tested in tests/reference_server)
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


def _cheapen_negative(body: Any) -> Any:
    """Lower the cost of a negative case without repairing what makes it invalid."""
    if not isinstance(body, dict):
        return body
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens >= 1:
        return {**body, "max_tokens": min(max_tokens, 4)}
    return body


def _fenced_off(body: Any) -> bool:
    """R2: a value only D16 (n, best_of <= 16, logprobs <= 20) or D23 (non-empty prompt) makes invalid."""
    if not isinstance(body, dict):
        return False
    bounds = {"n": 16, "best_of": 16, "logprobs": 20}
    for name, bound in bounds.items():
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > bound:
            return True
    return body.get("prompt") == ""


def _api(case: Any, suite: Suite) -> Api:
    family, chat = OPERATIONS[case.operation.definition.raw["operationId"]]
    apis = {(api.family, api.chat): api for api in suite.apis()}
    if (family, chat) not in apis:
        pytest.skip(f"{case.operation.label} is not under test (--routes / --model-kind)")
    return apis[(family, chat)]


def _verifier(case: Any, suite: Suite, probe: str) -> Verifier:
    # one verifier per generated case: hypothesis reuses function-scoped fixtures across cases
    return Verifier(suite, f"{probe}::{case.operation.label}::{suite.next_case()}")


@positive.parametrize()  # type: ignore[untyped-decorator]
@pytest.mark.rules("positive.schema_cases")
def test_valid_requests_from_the_spec(case: Any, suite: Suite) -> None:
    api = _api(case, suite)
    verify = _verifier(case, suite, "generated_valid")
    verify.post(
        api.path,
        case.body,
        probe="generated_valid",
        valid=True,
        demands=["positive.schema_cases"],  # a refusal is this rule's finding, not every feature's in the case
        note="generated from the spec",
    )
    verify.finish()


@negative.parametrize()  # type: ignore[untyped-decorator]
@pytest.mark.rules("errors.negative_cases")
def test_invalid_requests_from_the_spec(case: Any, suite: Suite) -> None:
    api = _api(case, suite)
    if _fenced_off(case.body):
        return  # R2: never sent as "invalid"
    request_schema = schema_validator("ChatCompletionRequest" if api.chat else "CompletionRequest")
    if isinstance(case.body, dict | list | str | int | float) and request_schema.is_valid(case.body):
        return  # invalid only in what this suite does not send (a header, the media type)
    verify = _verifier(case, suite, "generated_invalid")
    cheaper = _cheapen_negative(case.body)
    body = case.body if request_schema.is_valid(cheaper) else cheaper  # never cheapened into a valid request
    if isinstance(body, bytes) or not isinstance(body, dict | list | str | int | float | bool | None):
        # a body that is not JSON at all, or none (schemathesis's NotSet)
        raw = body if isinstance(body, bytes) else b""
        verify.post(api.path, None, raw_body=raw, probe="generated_invalid", invalid=True, note="schema-invalid")
    else:
        verify.post(api.path, body, probe="generated_invalid", invalid=True, note="schema-invalid")
    verify.finish()
