"""Reading a request body at the edge: bounded in time, size and nesting before any object is built.

Everything a client can put in a body is refused here with a 4xx that names the limit or the field:
a body too large (413) or too slow (408), another media type, bytes that are not UTF-8, nesting
deeper than the limit, duplicate keys, NaN/Infinity (also as an overflowing number like 1e999),
integers of more than 100 digits and text holding lone surrogates (which no encoder can write out). The
pydantic models then see only plain, finite, encodable JSON values (spec/DECISIONS.md D55). Any
integer the schema allows is served (a seed of any size is reduced by the backends), so integers are
bounded here only in digits, wherever they are.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect, Request

from reference_server.errors import ApiError

__all__ = [
    "BodyLimits",
    "parse_json_object",
    "read_json_object",
    "refuse_costly_stops",
]

MAX_INTEGER_DIGITS = 100

# A JSON string (escapes included) or one bracket: brackets inside strings are not nesting.
_STRUCTURE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_JSON_MEDIA = re.compile(r"^application/(?:[\w.+-]+\+)?json$")


@dataclass(frozen=True)
class BodyLimits:
    """What a request body may be (ServerSettings: max_body_bytes, max_json_depth, body_timeout_s)."""

    max_bytes: int
    max_depth: int
    read_timeout_s: float


class _OutOfRange:
    """A number JSON can write but the API cannot hold; reported with its field after parsing."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason


def _parse_int(text: str) -> int | _OutOfRange:
    # decided on the digits, before int() builds a huge number (Python refuses >4,300 digits anyway);
    # below the bound an integer is kept whole: only the fields the server uses must fit in 64 bits
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        return _OutOfRange(text, f"integers may have at most {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _parse_float(text: str) -> float | _OutOfRange:
    value = float(text)
    if not math.isfinite(value):
        return _OutOfRange(text, "numbers must be finite (this one overflows a 64-bit float)")
    return value


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {key!r} appears more than once in one object")
            seen.add(key)
    return result


def _nesting_depth_exceeds(body: bytes, limit: int) -> bool:
    depth = 0
    for match in _STRUCTURE.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def _field(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]" if path else f"[{key}]"
    return f"{path}.{key}" if path else key


def _check_values(value: Any, path: str) -> None:
    """Refuse, naming the field, what parsing left for later: out-of-range numbers, lone surrogates."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            code_point = ord(value[exc.start])
            raise ApiError(
                400,
                "invalid_text",
                f"'{path or 'body'}' holds a lone surrogate (\\u{code_point:04x}) at character {exc.start}: "
                "text must be valid Unicode (a surrogate only as half of an escaped pair)",
                param=path or None,
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_values(key, path)
            _check_values(item, _field(path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_values(item, _field(path, index))
    elif isinstance(value, _OutOfRange):
        shown = value.text if len(value.text) <= 40 else f"{value.text[:20]}... ({len(value.text)} characters)"
        raise ApiError(
            400, "invalid_request", f"invalid value for '{path}': {shown}: {value.reason}", param=path or None
        )


def _check_media_type(content_type: str | None) -> None:
    if content_type is None:
        return  # no declared type: the body is read as JSON, as curl-less clients send it
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not _JSON_MEDIA.match(media_type):
        raise ApiError(
            400,
            "unsupported_media_type",
            f"the request body is declared as {media_type or 'an empty type'!r}; "
            "send it as JSON with Content-Type: application/json",
        )


def parse_json_object(body: bytes, max_depth: int) -> dict[str, Any]:
    """The JSON object in `body`, or an ApiError (400) naming what is wrong and the limit broken."""
    if not body:
        raise ApiError(400, "invalid_request", "the request body is empty; send a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "invalid_json", f"the request body is not UTF-8 (byte {exc.start} is {body[exc.start]:#04x})"
        ) from None
    if _nesting_depth_exceeds(body, max_depth):
        raise ApiError(
            400,
            "invalid_json",
            f"the request body nests arrays and objects deeper than the limit of {max_depth} levels",
        )
    try:
        data = json.loads(
            text.removeprefix("\ufeff"),
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_refuse_constant,
            object_pairs_hook=_object_without_duplicates,
        )
    except ValueError as exc:  # json.JSONDecodeError is one
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "the request body must be a JSON object")
    _check_values(data, "")
    return data


async def read_json_object(request: Request, limits: BodyLimits) -> dict[str, Any]:
    """Read and parse a request body within the size limit and the read deadline."""
    _check_media_type(request.headers.get("content-type"))
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise ApiError(
            413, "payload_too_large", f"the request body is {declared} bytes; the limit is {limits.max_bytes} bytes"
        )
    body = bytearray()
    try:
        async with asyncio.timeout(limits.read_timeout_s):
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > limits.max_bytes:
                    raise ApiError(
                        413, "payload_too_large", f"the request body exceeds the limit of {limits.max_bytes} bytes"
                    )
    except TimeoutError:
        # the rest of the body may still be on its way: the connection cannot carry another request
        raise ApiError(
            408,
            "request_timeout",
            f"the request body did not arrive within {limits.read_timeout_s:g} s (received {len(body)} bytes)",
            headers={"Connection": "close"},
        ) from None
    except ClientDisconnect:
        raise ApiError(400, "invalid_request", "the client went away before sending the whole body") from None
    return parse_json_object(bytes(body), limits.max_depth)


def refuse_costly_stops(stop_sequences: list[str], max_chars: int) -> None:
    """Every token is matched against every stop string: their length is a cost the server bounds (D55)."""
    for index, stop in enumerate(stop_sequences):
        if len(stop) > max_chars:
            raise ApiError(
                400,
                "invalid_request",
                f"stop string {index} has {len(stop)} characters; this server accepts at most {max_chars}",
                param="stop",
            )
