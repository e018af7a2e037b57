"""The route table, read from spec/openapi.yaml: which path serves which API in which route family.

The server mounts these paths, the suite and the load generator address them; none writes them down again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from spec.document import load_document

__all__ = [
    "GENERATION_ROUTES",
    "Api",
    "GenerationRoute",
    "RouteFamily",
    "generation_route",
    "info_path",
    "tokenize_path",
]

Api = Literal["completion", "chat"]
RouteFamily = Literal["llama", "azure"]

# The request body names the API; the Llama API lives under /v1, Azure AI Model Inference at the root.
_API_OF_REQUEST_BODY: dict[str, Api] = {
    "#/components/requestBodies/CompletionRequestBody": "completion",
    "#/components/requestBodies/ChatCompletionRequestBody": "chat",
}
_LLAMA_PREFIX = "/v1/"


@dataclass(frozen=True)
class GenerationRoute:
    """One POST route that generates text."""

    path: str
    api: Api
    family: RouteFamily
    operation_id: str


@functools.cache
def _generation_routes() -> tuple[GenerationRoute, ...]:
    routes = []
    for path, operations in load_document()["paths"].items():
        operation = operations.get("post")
        if not isinstance(operation, dict) or operation["requestBody"]["$ref"] not in _API_OF_REQUEST_BODY:
            continue  # an extension that does not generate (POST /tokenize)
        api = _API_OF_REQUEST_BODY[operation["requestBody"]["$ref"]]
        family: RouteFamily = "llama" if path.startswith(_LLAMA_PREFIX) else "azure"
        routes.append(GenerationRoute(path, api, family, operation["operationId"]))
    return tuple(routes)


GENERATION_ROUTES: tuple[GenerationRoute, ...] = _generation_routes()


def generation_route(api: Api, family: RouteFamily) -> GenerationRoute:
    """The route serving `api` in `family`."""
    for route in GENERATION_ROUTES:
        if (route.api, route.family) == (api, family):
            return route
    raise LookupError(f"spec/openapi.yaml has no {api} route in the {family} family")


def _path_of(method: str, operation_id: str) -> str:
    """The one path whose `method` operation has `operation_id`."""
    paths: list[str] = [
        path
        for path, operations in load_document()["paths"].items()
        if isinstance(operations.get(method), dict) and operations[method]["operationId"] == operation_id
    ]
    (path,) = paths
    return path


@functools.cache
def info_path() -> str:
    """The model-information route (GET)."""
    return _path_of("get", "getModelInfo")


@functools.cache
def tokenize_path() -> str:
    """The tokenize route (POST, an extension: D58)."""
    return _path_of("post", "tokenize")
