"""Command-line flags generated from a pydantic settings model: one flag per field, its description as help.

The settings model is the one place a server option is declared; `llamacert serve` never re-declares it.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

__all__ = ["add_settings_flags", "key_value_argument", "settings_from_flags"]


def key_value_argument(text: str) -> tuple[str, Any]:
    """KEY=VALUE, the value read as JSON when it is JSON (numbers, booleans, lists), else as a string."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _help(info: FieldInfo) -> str:
    text = info.description or ""
    if info.default is not None and not info.is_required() and info.default_factory is None:
        default = info.default.get_secret_value() if isinstance(info.default, SecretStr) else info.default
        if default not in ("", False):
            text += f" (default: {default})"
    return text.replace("%", "%%")


def add_settings_flags(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    *,
    aliases: Mapping[str, Sequence[str]] = {},
    choices: Mapping[str, Sequence[str]] = {},
    key_value_flags: Mapping[str, str] = {},
) -> None:
    """One flag per field of `model`: `--field-name`, typed, with the field's description as help.

    `aliases` adds short spellings (`requests_per_minute`: `--rpm`); `choices` restricts a string field to
    values known elsewhere (profile names); a dict field named in `key_value_flags` becomes that repeatable
    `KEY=VALUE` flag. Flags left out keep the model's default, or the LLAMACERT_* environment variable.
    """
    for name, info in model.model_fields.items():
        annotation = _without_none(info.annotation)
        flags = [f"--{name.replace('_', '-')}", *aliases.get(name, ())]
        help_text = _help(info)
        if name in key_value_flags:
            parser.add_argument(
                key_value_flags[name],
                dest=name,
                type=key_value_argument,
                action="append",
                metavar="KEY=VALUE",
                help=f"{help_text} (repeatable)",
            )
        elif annotation is bool:
            parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(annotation) is typing.Literal:
            parser.add_argument(
                *flags, dest=name, choices=[str(value) for value in typing.get_args(annotation)], help=help_text
            )
        elif annotation in (int, float, str, Path):
            parser.add_argument(*flags, dest=name, type=annotation, choices=choices.get(name), help=help_text)
        elif annotation is SecretStr:
            parser.add_argument(*flags, dest=name, metavar=name.upper(), help=help_text)
        else:
            raise TypeError(f"{model.__name__}.{name}: no flag for a field of type {info.annotation!r}")


def settings_from_flags(model: type[BaseModel], namespace: argparse.Namespace) -> dict[str, Any]:
    """The fields the user gave on the command line (the rest come from the environment or defaults)."""
    given: dict[str, Any] = {}
    for name in model.model_fields:
        value = getattr(namespace, name, None)
        if value is None:
            continue
        given[name] = dict(value) if isinstance(value, list) and value and isinstance(value[0], tuple) else value
    return given
