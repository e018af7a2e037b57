"""The spec document: a valid OpenAPI 3.1 document, traced to the docs, every disagreement resolved."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from spec.document import DOCUMENT_PATH, Strictness, load_document, schema_validator

DECISIONS = (Path(__file__).parents[2] / "spec" / "DECISIONS.md").read_text(encoding="utf-8")
ROUTES = [
    "/v1/completions",
    "/v1/chat/completions",
    "/completions",
    "/chat/completions",
    "/info",
    "/v1/models",
    "/tokenize",
]


def _schema_nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property schema of components/schemas, with its path."""
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            yield f"{path}.{name}", prop
        for key, value in node.items():
            yield from _schema_nodes(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _schema_nodes(item, f"{path}[{index}]")


def _resolutions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        value = node.get("x-resolution")
        if value is not None:
            yield from (value if isinstance(value, list) else [value])
        for item in node.values():
            yield from _resolutions(item)
    elif isinstance(node, list):
        for item in node:
            yield from _resolutions(item)


def test_document_is_valid_openapi_31() -> None:
    document = load_document()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_all_routes_present_with_both_security_schemes() -> None:
    document = load_document()
    assert sorted(document["paths"]) == sorted(ROUTES)
    assert document["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}]
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["apiKeyHeader"] == {**schemes["apiKeyHeader"], "in": "header", "name": "api-key"}


def test_error_envelope_for_every_documented_status() -> None:
    responses = load_document()["paths"]["/v1/completions"]["post"]["responses"]
    for status in ["400", "401", "413", "422", "429", "500", "503"]:
        assert status in responses, status
    components = load_document()["components"]["responses"]
    for response in components.values():
        assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert components["TooManyRequests"]["headers"]["Retry-After"]["required"] is True


def test_every_schema_and_field_names_its_docs_source() -> None:
    schemas = load_document()["components"]["schemas"]
    for name, schema in schemas.items():
        assert schema.get("x-source"), f"components/schemas/{name} has no x-source"
    # compat-only alternatives (OpenAI shapes) are not from the docs: their top-level x-source says so.
    from_docs = {name: schema for name, schema in schemas.items() if schema.get("x-strictness") != "compat"}
    missing = [path for path, prop in _schema_nodes(from_docs) if "x-source" not in prop and "$ref" not in prop]
    assert missing == [], f"fields without x-source: {missing}"


def test_every_resolution_is_documented_and_the_ten_disagreements_are_resolved() -> None:
    used = set(_resolutions(load_document()))
    documented = set(re.findall(r"^## (D\d+) ", DECISIONS, flags=re.MULTILINE))
    assert used <= documented, f"x-resolution without a section in DECISIONS.md: {used - documented}"
    assert {f"D{i}" for i in range(1, 11)} <= documented
    for section in re.split(r"^## ", DECISIONS, flags=re.MULTILINE)[1:]:
        assert "- Docs:" in section and "- Chosen:" in section, section.splitlines()[0]


@pytest.mark.parametrize(
    ("field", "default"),
    [
        ("stream", False),
        ("max_tokens", 16),
        ("top_p", 1),
        ("temperature", 1),
        ("n", 1),
        ("best_of", None),
        ("logprobs", None),
        ("presence_penalty", None),
        ("ignore_eos", False),
        ("use_beam_search", False),
        ("stop_token_ids", None),
        ("skip_special_tokens", None),
    ],
)
def test_documented_defaults(field: str, default: object) -> None:
    for schema_name in ("CompletionRequest", "ChatCompletionRequest"):
        prop = load_document()["components"]["schemas"][schema_name]["properties"][field]
        assert prop["default"] == default, (schema_name, field)


def test_documented_ranges() -> None:
    props = load_document()["components"]["schemas"]["CompletionRequest"]["properties"]
    assert (props["temperature"]["minimum"], props["temperature"]["maximum"]) == (0, 2)
    assert (props["presence_penalty"]["minimum"], props["presence_penalty"]["maximum"]) == (-2, 2)


def test_finish_reason_enum() -> None:
    schema = load_document()["components"]["schemas"]["FinishReason"]
    assert schema["enum"] == ["stop", "length", "content_filter", "content_filter_error", None]


def test_done_sentinel_is_modelled() -> None:
    validator = schema_validator("CompletionStreamEvent")
    assert validator.is_valid("[DONE]")
    assert not validator.is_valid("[done]")


def test_vision_content_is_marked() -> None:
    schemas = load_document()["components"]["schemas"]
    assert schemas["ContentPart"]["x-llama-vision"] is True
    validator = schema_validator("ChatMessage")
    parts = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    assert validator.is_valid({"role": "user", "content": parts})
    assert not validator.is_valid({"role": "user"})
    assert not validator.is_valid({"role": "function", "content": "x"})
    assert not validator.is_valid({"role": "assistant", "content": None})
    assert validator.is_valid({"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]})


def test_compat_accepts_openai_logprobs_only_under_compat() -> None:
    openai_form = {"text_offset": [5], "token_logprobs": [-0.1], "tokens": ["a"], "top_logprobs": [{"a": -0.1}]}
    assert not schema_validator("Logprobs", Strictness.DOCS).is_valid(openai_form)
    assert schema_validator("Logprobs", Strictness.COMPAT).is_valid(openai_form)


def test_document_file_is_the_one_shipped() -> None:
    assert DOCUMENT_PATH.name == "openapi.yaml"
    assert DOCUMENT_PATH.parent.name == "spec"


def test_route_table_is_read_from_the_document() -> None:
    from spec.routes import GENERATION_ROUTES, generation_route, info_path

    assert {(r.api, r.family): r.path for r in GENERATION_ROUTES} == {
        ("completion", "llama"): "/v1/completions",
        ("chat", "llama"): "/v1/chat/completions",
        ("completion", "azure"): "/completions",
        ("chat", "azure"): "/chat/completions",
    }
    assert generation_route("chat", "azure").operation_id == "createChatCompletionAzure"
    assert info_path() == "/info"
