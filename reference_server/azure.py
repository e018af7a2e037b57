"""The Azure AI Model Inference face of the reference server: `api-version`, the `extra-parameters`
header and the client request id, on the Azure routes only (spec/DECISIONS.md D40-D42).

The Llama routes (`/v1/*`) never pass through here; their contract is the seed tables' (D15).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference_server.errors import ApiError, azure_error_response, error_response
from spec.models import (
    AZURE_API_VERSIONS,
    AZURE_VERSIONED_ROUTES,
    EXTRA_PARAMETERS_VALUES,
    azure_extra_members,
)

__all__ = [
    "ClientRequestIdMiddleware",
    "admit_members",
    "check_api_version",
    "error_response_for",
    "is_azure_route",
]

CLIENT_REQUEST_ID = "x-ms-client-request-id"


def is_azure_route(path: str) -> bool:
    """Whether a path is one of the Azure AI Model Inference routes (errors there are Azure.Core bodies)."""
    return path.rstrip("/") in AZURE_VERSIONED_ROUTES


def error_response_for(path: str, error: ApiError, extra_headers: dict[str, str] | None = None) -> JSONResponse:
    """The answer `error` gets on `path`: our envelope on the Llama routes, its Azure.Core form on the Azure
    routes (D42). The error handlers and the fault barrier both answer through it, so no error escapes the form."""
    render = azure_error_response if is_azure_route(path) else error_response
    return render(error, extra_headers)


def check_api_version(request: Request) -> None:
    """An absent api-version is the newest; one the REST spec does not list is a 400 (D41)."""
    version = request.query_params.get("api-version")
    if version is None or version in AZURE_API_VERSIONS:
        return
    supported = ", ".join(AZURE_API_VERSIONS)
    raise ApiError(
        400,
        "UnsupportedApiVersion",
        f"the api-version '{version}' is not supported; supported versions are {supported}",
        param="api-version",
    )


def admit_members(request: Request, body: dict[str, Any], kind: str) -> dict[str, Any]:
    """The body as the `extra-parameters` header says to serve it (D40).

    `error` (also when the header is absent) refuses members the Azure API does not define,
    naming each; `drop` removes them; `pass-through` keeps them for the model.
    """
    mode = request.headers.get("extra-parameters", "error")
    if mode not in EXTRA_PARAMETERS_VALUES:
        raise ApiError(
            400,
            "invalid_extra_parameters",
            f"the extra-parameters header must be one of {', '.join(EXTRA_PARAMETERS_VALUES)} (got '{mode}')",
            param="extra-parameters",
        )
    extras = azure_extra_members(body, kind)
    if not extras or mode == "pass-through":
        return body
    if mode == "drop":
        return {name: value for name, value in body.items() if name not in extras}
    listed = ", ".join(repr(name) for name in extras)
    raise ApiError(
        400,
        "extra_parameters_not_allowed",
        f"extra parameters [{listed}] are not allowed when extra-parameters is absent or 'error'; "
        "send the header 'extra-parameters: pass-through' to pass them to the model, or 'drop' to ignore them",
        param=extras[0],
        problems=[(name, f"'{name}' is not a parameter of the Azure AI Model Inference API") for name in extras],
    )


class ClientRequestIdMiddleware:
    """Echo the client's `x-ms-client-request-id` on the response, as Azure services do (D42)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = next(
            (value.decode("latin-1") for key, value in scope["headers"] if key == CLIENT_REQUEST_ID.encode()), None
        )
        if request_id is None:
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[CLIENT_REQUEST_ID] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)
