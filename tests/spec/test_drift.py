"""Drift: the pydantic wire models and spec/openapi.yaml describe the same schemas.

Both sides are reduced to a canonical form (per property: the set of alternatives, each with its
type or referenced component, bounds, enum/const and item schema; plus the default) and compared.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from spec import models
from spec.document import load_document

REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "CompletionRequest": models.CompletionRequest,
    "ChatCompletionRequest": models.ChatCompletionRequest,
    "ChatMessage": models.ChatMessage,
    "TextContentPart": models.TextContentPart,
    "ImageUrlContentPart": models.ImageUrlContentPart,
    "ImageUrl": models.ImageUrl,
    "StreamOptions": models.StreamOptions,
    "ResponseFormat": models.ResponseFormat,
    "TokenizeRequest": models.TokenizeRequest,
}
RESPONSE_MODELS: dict[str, type[BaseModel]] = {
    "Usage": models.Usage,
    "Logprobs": models.Logprobs,
    "CompletionChoice": models.CompletionChoice,
    "CompletionResponse": models.CompletionResponse,
    "CompletionChunkChoice": models.CompletionChunkChoice,
    "CompletionChunk": models.CompletionChunk,
    "AssistantMessage": models.AssistantMessage,
    "ChatDelta": models.ChatDelta,
    "ChatChoice": models.ChatChoice,
    "ChatCompletionResponse": models.ChatCompletionResponse,
    "ChatChunkChoice": models.ChatChunkChoice,
    "ChatCompletionChunk": models.ChatCompletionChunk,
    "ModelInfo": models.ModelInfo,
    "ErrorResponse": models.ErrorResponse,
    "ErrorBody": models.ErrorBody,
    "OpenAIChatLogprobs": models.OpenAIChatLogprobs,
    "OpenAIChatTokenLogprob": models.OpenAIChatTokenLogprob,
    "OpenAITopLogprob": models.OpenAITopLogprob,
    "ModelList": models.ModelList,
    "ModelListEntry": models.ModelListEntry,
    "TokenizeResponse": models.TokenizeResponse,
}
# Optional in the spec, `None` in the model, and left out of the JSON by the model's serializer.
OMITTED_WHEN_NONE = {("ChatDelta", "role"), ("ErrorBody", "target"), ("ErrorBody", "innererror")}
KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "minItems", "maxItems")
NOT_GIVEN = object()


class Canonicalizer:
    """Reduces one side's JSON schemas to comparable, hashable-free canonical data."""

    def __init__(self, definitions: dict[str, Any], ref_prefix: str) -> None:
        self.definitions = definitions
        self.ref_prefix = ref_prefix

    def _is_object_component(self, name: str) -> bool:
        schema = self.definitions[name]
        kinds = schema.get("type")
        return kinds == "object" or (isinstance(kinds, list) and "object" in kinds) or "properties" in schema

    def alternatives(self, schema: dict[str, Any]) -> list[Any]:
        if "$ref" in schema:
            name = schema["$ref"].removeprefix(self.ref_prefix)
            if not self._is_object_component(name):
                return self.alternatives(self.definitions[name])
            component = self.definitions[name]
            found: list[Any] = [{"ref": name}]
            if isinstance(component.get("type"), list) and "null" in component["type"]:
                found.append({"type": "null"})
            return found
        for union in ("anyOf", "oneOf"):
            if union in schema:
                return [alt for member in schema[union] for alt in self.alternatives(member)]
        kinds = schema.get("type")
        if isinstance(kinds, list):
            return [alt for kind in kinds for alt in self.alternatives({**schema, "type": kind})]
        canonical: dict[str, Any] = {"type": kinds}
        for keyword in KEYWORDS:
            if keyword in schema and kinds != "null":
                canonical[keyword] = schema[keyword]
        if "const" in schema:
            canonical["enum"] = [schema["const"]]
        elif "enum" in schema and kinds != "null":
            canonical["enum"] = sorted(value for value in schema["enum"] if value is not None)
        if kinds == "array":
            canonical["items"] = self.canonical(schema.get("items", {}))
        if kinds == "object" and isinstance(schema.get("additionalProperties"), dict):
            canonical["values"] = self.canonical(schema["additionalProperties"])
        return [canonical]

    def canonical(self, schema: dict[str, Any]) -> list[str]:
        # numbers: pydantic writes 0 where YAML may hold 0.0; JSON dumps sort out key order.
        return sorted({json.dumps(alt, sort_keys=True) for alt in self.alternatives(schema)})


def _spec_side() -> Canonicalizer:
    return Canonicalizer(load_document()["components"]["schemas"], "#/components/schemas/")


def _model_side(model: type[BaseModel], mode: str) -> tuple[dict[str, Any], Canonicalizer]:
    schema = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
    definitions = {**schema.get("$defs", {}), model.__name__: schema}
    return schema, Canonicalizer(definitions, "#/$defs/")


def _compare(name: str, model: type[BaseModel], mode: str) -> list[str]:
    spec_side = _spec_side()
    spec_schema = spec_side.definitions[name]
    model_schema, model_side = _model_side(model, mode)
    problems: list[str] = []
    spec_props, model_props = spec_schema.get("properties", {}), model_schema.get("properties", {})
    if set(spec_props) != set(model_props):
        problems.append(
            f"{name}: fields differ: spec-only {set(spec_props) - set(model_props)}, "
            f"model-only {set(model_props) - set(spec_props)}"
        )
    spec_required, model_required = set(spec_schema.get("required", [])), set(model_schema.get("required", []))
    if mode == "validation" and spec_required != model_required:
        problems.append(f"{name}: required differs: spec {sorted(spec_required)}, model {sorted(model_required)}")
    for field in sorted(set(spec_props) & set(model_props)):
        spec_prop, model_prop = spec_props[field], model_props[field]
        always_emitted = field in model_required or model_prop.get("default") is not None
        if mode == "serialization" and field in spec_required and not always_emitted:
            problems.append(f"{name}.{field}: required by the spec but may be absent from the model's output")
        spec_alts = spec_side.canonical(spec_prop)
        model_alts = model_side.canonical(model_prop)
        if (name, field) in OMITTED_WHEN_NONE:
            model_alts = [alt for alt in model_alts if alt != '{"type": "null"}']
        if spec_alts != model_alts:
            problems.append(f"{name}.{field}: types differ:\n  spec  {spec_alts}\n  model {model_alts}")
        if mode == "validation":
            spec_default = spec_side.definitions.get(
                spec_prop.get("$ref", "").removeprefix("#/components/schemas/"), spec_prop
            ).get("default", spec_prop.get("default", NOT_GIVEN))
            model_default = model_prop.get("default", NOT_GIVEN)
            if field in spec_required:
                continue
            if spec_default != model_default:
                problems.append(f"{name}.{field}: default differs: spec {spec_default!r}, model {model_default!r}")
    return problems


@pytest.mark.parametrize("name", sorted(REQUEST_MODELS))
def test_request_model_matches_the_document(name: str) -> None:
    assert _compare(name, REQUEST_MODELS[name], "validation") == []


@pytest.mark.parametrize("name", sorted(RESPONSE_MODELS))
def test_response_model_matches_the_document(name: str) -> None:
    assert _compare(name, RESPONSE_MODELS[name], "serialization") == []


def test_every_object_schema_of_the_document_has_a_model() -> None:
    schemas = load_document()["components"]["schemas"]
    compat_only = {name for name, schema in schemas.items() if schema.get("x-strictness") == "compat"}
    objects = {name for name, schema in schemas.items() if "properties" in schema} - compat_only
    covered = set(REQUEST_MODELS) | set(RESPONSE_MODELS)
    assert objects - covered == set()


def test_the_drift_test_detects_a_drifted_model() -> None:
    class DriftedUsage(BaseModel):
        prompt_tokens: int
        completion_tokens: str
        total_tokens: int

    assert _compare("Usage", DriftedUsage, "serialization") != []


def test_chat_delta_omits_an_absent_role() -> None:
    assert models.ChatDelta(content="x").model_dump() == {"content": "x"}
    assert models.ChatDelta(role="assistant", content="").model_dump() == {"role": "assistant", "content": ""}


def test_azure_known_members_match_the_document() -> None:
    schemas = load_document()["components"]["schemas"]
    for kind, name in (("chat", "ChatCompletionRequest"), ("completion", "CompletionRequest")):
        documented = set(schemas[name]["x-azure-known-members"])
        assert documented == models.AZURE_KNOWN_MEMBERS[kind]
        assert documented <= set(schemas[name]["properties"]), "every known member is a property of the request"


def test_azure_parameters_match_the_document() -> None:
    parameters = load_document()["components"]["parameters"]
    assert set(parameters["ApiVersion"]["schema"]["enum"]) == set(models.AZURE_API_VERSIONS)
    assert tuple(parameters["ExtraParameters"]["schema"]["enum"]) == models.EXTRA_PARAMETERS_VALUES


def test_every_documented_model_type_spelling_names_an_api() -> None:
    enum = load_document()["components"]["schemas"]["ModelInfo"]["properties"]["model_type"]["enum"]
    assert {spelling: models.model_type_api(spelling) for spelling in enum} == {
        "chat-completion": "chat",
        "chat-completions": "chat",
        "chat_completion": "chat",
        "chat": "chat",
        "text-generation": "completion",
        "text_generation": "completion",
    }
    assert models.model_type_api("embeddings") is None and models.model_type_api(None) is None
