"""Rule sources as pointers: a JSON pointer into spec/openapi.yaml (its `x-source`) or a DECISIONS.md id.

A rule never copies the docs row it enforces; it names where the spec keeps it, and the text is read
from there, so a change to the spec changes every rule that points at it.
"""

from __future__ import annotations

import functools
import re

from spec.document import DOCUMENT_PATH, load_document

__all__ = ["DECISIONS_PATH", "UnknownSource", "decision_titles", "resolve_source"]

DECISIONS_PATH = DOCUMENT_PATH.with_name("DECISIONS.md")
_DECISION = re.compile(r"^## (D\d+) — (.+)$", re.MULTILINE)
_RELAXATION = re.compile(r"^- (R\d+) — (.+)$", re.MULTILINE)


class UnknownSource(ValueError):
    """A rule points at a node of the spec, or a decision, that does not exist."""


@functools.cache
def decision_titles() -> dict[str, str]:
    """Decision id (D1...) -> its heading, and relaxation id (R1...) -> its line, from spec/DECISIONS.md."""
    text = DECISIONS_PATH.read_text(encoding="utf-8")
    return dict(_DECISION.findall(text)) | dict(_RELAXATION.findall(text))


def _openapi_text(pointer: str) -> str:
    node: object = load_document()
    for raw in pointer.removeprefix("#/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise UnknownSource(f"spec/openapi.yaml has no node {pointer}")
    if not isinstance(node, dict):
        raise UnknownSource(f"spec/openapi.yaml {pointer} is not an object")
    text = node.get("x-source") or node.get("description")
    if not isinstance(text, str):
        raise UnknownSource(f"spec/openapi.yaml {pointer} has neither x-source nor description")
    resolution = node.get("x-resolution")
    return f"{text} ({resolution})" if isinstance(resolution, str) else text


@functools.cache
def resolve_source(pointer: str) -> str:
    """The text a source pointer names: `#/components/...` (openapi.yaml) `D14` or `R1` (DECISIONS.md)."""
    if pointer.startswith("#/"):
        return f"openapi {pointer.removeprefix('#/components/')}: {_openapi_text(pointer)}"
    titles = decision_titles()
    if pointer in titles:
        return f"{pointer}: {titles[pointer]}"
    raise UnknownSource(f"{pointer!r} is neither a JSON pointer into spec/openapi.yaml nor a DECISIONS.md id")
