"""The `llamacert` command: serve, conform, check, load, certify, compare, spec, export-hf."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llamacert.settings_flags import add_settings_flags, settings_from_flags

__all__ = ["main"]


def _serve(args: argparse.Namespace, rest: list[str]) -> int:
    from pydantic import ValidationError

    from reference_server.server import serve
    from reference_server.settings import ServerSettings

    try:
        settings = ServerSettings(**settings_from_flags(ServerSettings, args))
        serve(settings)
    except ValidationError as exc:
        print(f"llamacert serve: invalid settings: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"llamacert serve: {exc}", file=sys.stderr)
        return 2
    return 0


def _conform(args: argparse.Namespace, rest: list[str]) -> int:
    import pytest

    conformance_dir = Path(__file__).resolve().parent.parent / "conformance"
    return int(pytest.main([str(conformance_dir), "-p", "no:cacheprovider", *rest]))


def _check(args: argparse.Namespace, rest: list[str]) -> int:
    from llamacert.check import check_main

    return check_main(rest)


def _load(args: argparse.Namespace, rest: list[str]) -> int:
    from perf.cli import main as load_main

    return load_main(rest)


def _compare(args: argparse.Namespace, rest: list[str]) -> int:
    from reports.cli import compare_main

    return compare_main(rest)


def _certify(args: argparse.Namespace, rest: list[str]) -> int:
    from llamacert.certify import certify_main

    return certify_main(rest)


def _export_hf(args: argparse.Namespace, rest: list[str]) -> int:
    from reference_server.backends.embedded import embedded_model_path
    from reference_server.backends.hf_export import cached_export, export_gguf

    try:
        directory = export_gguf(args.gguf or embedded_model_path(), args.out) if args.out else cached_export(args.gguf)
    except (FileNotFoundError, ImportError) as exc:
        print(f"llamacert export-hf: {exc}", file=sys.stderr)
        return 2
    print(directory)
    return 0


def _spec(args: argparse.Namespace, rest: list[str]) -> int:
    from spec.summary import print_summary

    return print_summary()


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace, list[str]], int]]]:
    from reference_server.settings import ServerSettings
    from spec.profiles import load_profiles

    parser = argparse.ArgumentParser(prog="llamacert", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the Llama API (embedded SmolLM2 on llama.cpp by default)")
    add_settings_flags(
        serve,
        ServerSettings,
        aliases={"requests_per_minute": ["--rpm"], "tokens_per_minute": ["--tpm"]},
        choices={"profile": sorted(load_profiles())},
        key_value_flags={"vllm_engine_args": "--engine-arg"},
    )
    passthrough = {
        "conform": "run the conformance suite (pytest options and --endpoint/--api-key/... pass through; "
        "exit status is pytest's)",
        "check": "re-judge saved exchanges offline (FILE: a report directory's exchanges.jsonl)",
        "load": "run a Locust load test (see `llamacert load --help`)",
        "certify": "certify an endpoint: conformance + load test -> report; exit 0 PASS, 1 FAIL, 2 INCOMPLETE, "
        "3 could not run (see `llamacert certify --help`)",
        "compare": "compare two certification reports (OLD.json NEW.json)",
    }
    for name, help_text in passthrough.items():
        commands.add_parser(name, help=help_text, add_help=False)
    commands.add_parser("spec", help="validate spec/openapi.yaml and summarise its decisions")
    export = commands.add_parser(
        "export-hf", help="make (once, cached) the Hugging Face directory of a GGUF for the vllm backend; prints it"
    )
    export.add_argument("--gguf", type=Path, help="GGUF file (default: the embedded SmolLM2)")
    export.add_argument("--out", type=Path, help="directory to write (default: the cache)")
    handlers: dict[str, Callable[[argparse.Namespace, list[str]], int]] = {
        "serve": _serve,
        "conform": _conform,
        "check": _check,
        "load": _load,
        "certify": _certify,
        "compare": _compare,
        "spec": _spec,
        "export-hf": _export_hf,
    }
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser, handlers = _parser()
    passthrough = {"conform", "check", "load", "certify", "compare"}
    if arguments and arguments[0] in passthrough:
        namespace: Any = argparse.Namespace(command=arguments[0])
        return handlers[arguments[0]](namespace, arguments[1:])
    args = parser.parse_args(arguments)
    return handlers[args.command](args, [])


if __name__ == "__main__":
    raise SystemExit(main())
