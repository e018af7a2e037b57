"""The spec document (`spec/openapi.yaml`) as data, and JSON Schema validators built from it.

The conformance suite validates responses against this document itself, never against the
server's pydantic models, so a bug in the models cannot hide itself.
"""

from __future__ import annotations

import copy
import functools
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = [
    "DOCUMENT_PATH",
    "DOCUMENT_URI",
    "Strictness",
    "load_document",
    "schema_validator",
]

DOCUMENT_PATH = Path(__file__).with_name("openapi.yaml")
DOCUMENT_URI = "urn:llamacert:openapi"


class Strictness(StrEnum):
    """How a server is judged where the documents are ambiguous (spec/DECISIONS.md)."""

    DOCS = "docs"
    COMPAT = "compat"


@functools.cache
def _load_cached() -> dict[str, Any]:
    with DOCUMENT_PATH.open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.safe_load(handle)
    return document


def load_document() -> dict[str, Any]:
    """A fresh copy of the spec document (callers may mutate it)."""
    return copy.deepcopy(_load_cached())


def _apply_compat_alternatives(node: Any) -> Any:
    """Under `compat`, a node with x-compat-alternatives becomes anyOf(itself, alternatives)."""
    if isinstance(node, list):
        return [_apply_compat_alternatives(item) for item in node]
    if not isinstance(node, dict):
        return node
    rewritten = {key: _apply_compat_alternatives(value) for key, value in node.items()}
    alternatives = rewritten.pop("x-compat-alternatives", None)
    if alternatives:
        return {"anyOf": [rewritten, *({"$ref": ref} for ref in alternatives)]}
    return rewritten


def _relax_for_compat(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document["components"]["schemas"]
    relaxed: dict[str, Any] = _apply_compat_alternatives(schemas)
    document["components"]["schemas"] = relaxed
    return document


@functools.cache
def schema_validator(name: str, strictness: Strictness = Strictness.DOCS) -> Draft202012Validator:
    """A JSON Schema 2020-12 validator for `components/schemas/<name>` under a strictness level."""
    document = load_document()
    if strictness is Strictness.COMPAT:
        document = _relax_for_compat(document)
    # OpenAPI 3.1 schemas are JSON Schema 2020-12; local refs resolve against the whole document.
    resource: Resource[Any] = DRAFT202012.create_resource(document)
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
    schema = {"$ref": f"{DOCUMENT_URI}#/components/schemas/{name}"}
    return Draft202012Validator(schema, registry=registry)
