"""Typed API errors: each carries its status, code and offending parameter, rendered as the one envelope (D14),
which on the Azure routes is also an Azure.Core error body with its `x-ms-error-code` header (D42)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse

from spec.models import ErrorBody, ErrorResponse, InvalidParameter

__all__ = [
    "ApiError",
    "azure_error_response",
    "error_response",
    "from_validation_error",
]

# Azure content safety's inner error code for a refused prompt (D42).
CONTENT_FILTER_INNER_CODE = "ResponsibleAIPolicyViolation"
# Azure reports these categories as detected or not, the others by severity.
_DETECTION_CATEGORIES = frozenset(
    {"jailbreak", "indirect_attack", "protected_material_text", "protected_material_code"}
)

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
        problems: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}
        self.details = details
        self.problems = problems or []
        """One (target, message) per offending member, where an error names several (Azure's details list)."""

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

    def azure_body(self) -> dict[str, Any]:
        """The same error as an Azure.Core ErrorResponse that keeps our members (D42)."""
        details = [
            ErrorBody(code=self.code, message=message, target=target).model_dump(mode="json", exclude_none=True)
            for target, message in self.problems
        ]
        innererror = None
        categories = (self.details or {}).get("categories")
        if self.code == "content_filter" and isinstance(categories, dict):
            innererror = {"code": CONTENT_FILTER_INNER_CODE, "content_filter_result": _filter_result(categories)}
        envelope = ErrorResponse(
            error=ErrorBody(
                code=self.code,
                message=self.message,
                param=self.param,
                type=_TYPES.get(self.status),
                details=details,
                target=self.param,
                innererror=innererror,
            )
        )
        return envelope.model_dump(mode="json")


def _filter_result(categories: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, finding in categories.items():
        filtered = bool(finding.get("filtered"))
        severity = finding.get("severity", "safe")
        if name in _DETECTION_CATEGORIES:
            result[name] = {"filtered": filtered, "detected": severity != "safe"}
        else:
            result[name] = {"filtered": filtered, "severity": severity}
    return result


def error_response(error: ApiError, extra_headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers={**error.headers, **(extra_headers or {})})


def azure_error_response(error: ApiError, extra_headers: dict[str, str] | None = None) -> JSONResponse:
    """The Azure routes' answer: the Azure.Core body and `x-ms-error-code` (D42)."""
    headers = {**error.headers, **(extra_headers or {}), "x-ms-error-code": error.code}
    return JSONResponse(error.azure_body(), status_code=error.status, headers=headers)


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
