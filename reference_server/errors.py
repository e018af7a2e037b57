"""Typed API errors: each carries its status, code and offending parameter, rendered as the one envelope (D14)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse

from spec.models import ErrorBody, ErrorResponse, InvalidParameter

__all__ = [
    "ApiError",
    "error_response",
    "from_validation_error",
]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
    500: "server_error",
    503: "server_error",
}


class ApiError(Exception):
    """An error answer: status, machine-readable code, message for a person, offending param."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}
        self.details = details

    def body(self) -> dict[str, Any]:
        envelope = ErrorResponse(
            error=ErrorBody(
                code=self.code,
                message=self.message,
                param=self.param,
                type=_TYPES.get(self.status),
                details=self.details,
            )
        )
        return envelope.model_dump(mode="json")


def error_response(error: ApiError, extra_headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers={**error.headers, **(extra_headers or {})})


_BRANCH_NAMES = {"str", "int", "float", "bool", "list", "dict", "none", "nullable"}


def _param_from_location(location: tuple[int | str, ...]) -> str | None:
    # ("messages", 0, "content") -> "messages[0].content"; union branch names (e.g. "str",
    # "list[...]", "function-after[...]") are pydantic's, not the client's, so they are dropped.
    parts: list[str] = []
    for item in location:
        if isinstance(item, int):
            if parts:
                parts[-1] += f"[{item}]"
            continue
        if "[" in item or item.startswith("constrained-") or item in _BRANCH_NAMES:
            continue
        parts.append(item)
    return ".".join(parts) or None


def from_validation_error(error: ValidationError) -> ApiError:
    """The first problem of a pydantic ValidationError as a 400 naming its parameter."""
    problems = error.errors(include_url=False)
    # a union reports one problem per branch; the branch of the value's own type (not a "*_type"
    # mismatch) says what is wrong with it, e.g. "at most 16 items" rather than "not a string"
    first = next((p for p in problems if not p["type"].endswith("_type")), problems[0])
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidParameter):
        return ApiError(400, "invalid_request", str(cause), param=cause.param)
    param = _param_from_location(tuple(first["loc"]))
    if first["type"] == "missing":
        message = f"'{param}' is required"
    else:
        shown = repr(first.get("input"))
        if len(shown) > 80:
            shown = shown[:77] + "..."
        message = f"invalid value for '{param}': {first['msg']} (got {shown})"
    return ApiError(400, "invalid_request", message, param=param)
