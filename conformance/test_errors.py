"""Errors a client can cause: each request is sent with the answer its probe expects; the rules judge it."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.plugin import Api, Suite, Verifier

ERROR_RULES = ("errors.envelope", "errors.no_server_error")


@pytest.mark.rules("errors.auth", *ERROR_RULES)
def test_missing_and_wrong_key(api: Api, suite: Suite, verify: Verifier) -> None:
    if not suite.client().api_key:
        pytest.skip("no key configured: the endpoint is tested as an open endpoint")
    verify.post(api.path, api.body(max_tokens=1), probe="auth", role="no_key", with_auth=False)
    wrong = {"Authorization": "Bearer not-the-key-" + "x" * 16}
    verify.post(api.path, api.body(max_tokens=1), probe="auth", role="a_wrong_key", with_auth=False, headers=wrong)
    verify.finish()


@pytest.mark.rules("errors.unknown_route", *ERROR_RULES)
def test_unknown_route(verify: Verifier) -> None:
    verify.post("/v1/no-such-route", {"prompt": "x"}, probe="unknown_route")
    verify.finish()


@pytest.mark.rules("errors.malformed_json", *ERROR_RULES)
def test_docs_example_with_trailing_comma_is_malformed_json(api: Api, verify: Verifier) -> None:
    raw = (
        b'{\n    "prompt": "What\'s the distance to the moon?",\n    "temperature": 0.8,\n    "max_tokens": 4,\n}'
        if not api.chat
        else b'{"messages": [{"role": "user", "content": "I love programming."}], "max_tokens": 4,}'
    )
    verify.post(api.path, None, raw_body=raw, probe="malformed_json", invalid=True)
    verify.finish()


# (what, the parameters that make it invalid, the parameter the error must name)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("temperature above 2", {"temperature": 2.5}, "temperature"),
    ("negative temperature", {"temperature": -0.1}, "temperature"),
    ("max_tokens as a string", {"max_tokens": "ten"}, "max_tokens"),
    ("max_tokens zero", {"max_tokens": 0}, "max_tokens"),
    ("n zero", {"n": 0}, "n"),
    ("presence_penalty above 2", {"presence_penalty": 2.5}, "presence_penalty"),
    ("top_p above 1", {"top_p": 1.5}, "top_p"),
    ("stream as a string", {"stream": "yes"}, "stream"),
    ("stop as a number", {"stop": 42}, "stop"),
    ("logprobs negative", {"logprobs": -1}, "logprobs"),
]
QUICK_INVALID = {"temperature above 2", "max_tokens as a string"}


@pytest.mark.rules("errors.invalid_parameter", *ERROR_RULES)
@pytest.mark.parametrize(("what", "params", "param"), INVALID, ids=[what for what, _, _ in INVALID])
def test_invalid_parameter(
    api: Api, suite: Suite, verify: Verifier, what: str, params: dict[str, Any], param: str
) -> None:
    if suite.quick and what not in QUICK_INVALID:
        pytest.skip("--quick")
    body = api.body(**{"max_tokens": 2, **params})
    verify.post(api.path, body, probe="invalid_parameter", invalid=True, note=what, expect={"param": param})
    verify.finish()


@pytest.mark.rules("errors.invalid_parameter", *ERROR_RULES)
def test_missing_prompt_or_messages_and_bad_role(api: Api, verify: Verifier) -> None:
    field = "messages" if api.chat else "prompt"
    verify.post(
        api.path,
        {"max_tokens": 2},
        probe="invalid_parameter",
        run="missing",
        note=f"no {field}",
        expect={"param": field},
    )
    if api.chat:
        bad: list[tuple[str, dict[str, Any]]] = [
            ("an unknown role", {"role": "robot", "content": "hi"}),
            ("a message without content", {"role": "user"}),
        ]
        for what, message in bad:
            verify.post(api.path, {"messages": [message]}, probe="invalid_parameter", run=what, invalid=True, note=what)
    verify.finish()


@pytest.mark.rules("errors.context_overflow", *ERROR_RULES)
def test_context_overflow(api: Api, verify: Verifier) -> None:
    verify.post(api.path, api.body(max_tokens=10_000_000), probe="context_overflow", invalid=True)
    verify.finish()


@pytest.mark.rules("errors.invalid_parameter", *ERROR_RULES)
def test_not_json_object(api: Api, verify: Verifier) -> None:
    verify.post(api.path, ["not", "an", "object"], probe="invalid_parameter", invalid=True, note="a JSON array body")
    verify.finish()
