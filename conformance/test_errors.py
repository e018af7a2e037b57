"""Errors a client can cause: each gets the right 4xx and the error envelope, never a 5xx."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.exchange import EndpointClient
from conformance.plugin import Api, Suite, Verifier
from spec.document import Strictness


def _invalid_statuses(suite: Suite) -> set[int]:
    # D14: invalid parameters are 400; compat also accepts FastAPI-style 422
    return {400} if suite.strictness is Strictness.DOCS else {400, 422}


def test_missing_and_wrong_key(api: Api, client: EndpointClient, suite: Suite, verify: Verifier) -> None:
    if not client.api_key:
        pytest.skip("no key configured: the endpoint is tested as an open endpoint")
    missing = verify.checks(client.post(api.path, api.body(max_tokens=1), with_auth=False), api)
    verify.status("errors.auth", missing, {401}, "no key")
    wrong = verify.checks(
        client.post(
            api.path,
            api.body(max_tokens=1),
            with_auth=False,
            headers={"Authorization": "Bearer not-the-key-" + "x" * 16},
        ),
        api,
    )
    verify.status("errors.auth", wrong, {401}, "a wrong key")
    verify.assert_ok()


def test_unknown_route(client: EndpointClient, verify: Verifier) -> None:
    exchange = verify.checks(client.post("/v1/no-such-route", {"prompt": "x"}), None)
    verify.status("errors.unknown_route", exchange, {404}, "an unknown route")
    verify.assert_ok()


def test_docs_example_with_trailing_comma_is_malformed_json(api: Api, client: EndpointClient, verify: Verifier) -> None:
    raw = (
        b'{\n    "prompt": "What\'s the distance to the moon?",\n    "temperature": 0.8,\n    "max_tokens": 4,\n}'
        if not api.chat
        else b'{"messages": [{"role": "user", "content": "I love programming."}], "max_tokens": 4,}'
    )
    exchange = verify.checks(client.post(api.path, None, raw_body=raw), api)
    verify.status("errors.malformed_json", exchange, {400}, "the docs' example body with its trailing comma (D9)")
    verify.assert_ok()


INVALID: list[tuple[str, dict[str, Any]]] = [
    ("temperature above 2", {"temperature": 2.5}),
    ("negative temperature", {"temperature": -0.1}),
    ("max_tokens as a string", {"max_tokens": "ten"}),
    ("max_tokens zero", {"max_tokens": 0}),
    ("n zero", {"n": 0}),
    ("presence_penalty above 2", {"presence_penalty": 2.5}),
    ("top_p above 1", {"top_p": 1.5}),
    ("stream as a string", {"stream": "yes"}),
    ("stop as a number", {"stop": 42}),
    ("logprobs negative", {"logprobs": -1}),
]


@pytest.mark.parametrize(("what", "params"), INVALID, ids=[what for what, _ in INVALID])
def test_invalid_parameter(
    api: Api, client: EndpointClient, suite: Suite, verify: Verifier, what: str, params: dict[str, Any]
) -> None:
    if suite.quick and what not in {"temperature above 2", "max_tokens as a string"}:
        pytest.skip("--quick")
    exchange = verify.checks(client.post(api.path, api.body(**{"max_tokens": 2, **params})), api)
    verify.status("errors.invalid_parameter", exchange, _invalid_statuses(suite), what)
    verify.assert_ok()


def test_missing_prompt_or_messages_and_bad_role(
    api: Api, client: EndpointClient, suite: Suite, verify: Verifier
) -> None:
    missing = verify.checks(client.post(api.path, {"max_tokens": 2}), api)
    verify.status("errors.invalid_parameter", missing, _invalid_statuses(suite), "no prompt/messages")
    if api.chat:
        robot = verify.checks(client.post(api.path, {"messages": [{"role": "robot", "content": "hi"}]}), api)
        verify.status("errors.invalid_parameter", robot, _invalid_statuses(suite), "an unknown role")
        no_content = verify.checks(client.post(api.path, {"messages": [{"role": "user"}]}), api)
        verify.status("errors.invalid_parameter", no_content, _invalid_statuses(suite), "a message without content")
    verify.assert_ok()


def test_context_overflow(api: Api, client: EndpointClient, verify: Verifier) -> None:
    exchange = verify.checks(client.post(api.path, api.body(max_tokens=10_000_000)), api)
    verify.status("errors.context_overflow", exchange, {400}, "max_tokens far beyond any context length (D22)")
    verify.assert_ok()


def test_not_json_object(api: Api, client: EndpointClient, suite: Suite, verify: Verifier) -> None:
    exchange = verify.checks(client.post(api.path, ["not", "an", "object"]), api)
    verify.status("errors.invalid_parameter", exchange, _invalid_statuses(suite), "a JSON array body")
    verify.assert_ok()
