"""The `llamacert` command: serve, conform, load, certify, compare, spec, export-hf."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _serve(args: argparse.Namespace, rest: list[str]) -> int:
    from pydantic import ValidationError

    from reference_server.backends.llamacpp import ModelNotFound
    from reference_server.server import serve
    from reference_server.settings import ServerSettings

    fields = {
        name: value for name, value in vars(args).items() if name in ServerSettings.model_fields and value is not None
    }
    if args.engine_args:
        fields["vllm_engine_args"] = dict(args.engine_args)
    try:
        settings = ServerSettings(**fields)
        serve(settings)
    except ValidationError as exc:
        print(f"llamacert serve: invalid settings: {exc}", file=sys.stderr)
        return 2
    except (ModelNotFound, FileNotFoundError, ValueError) as exc:
        print(f"llamacert serve: {exc}", file=sys.stderr)
        return 2
    return 0


def _conform(args: argparse.Namespace, rest: list[str]) -> int:
    import pytest

    conformance_dir = Path(__file__).resolve().parent.parent / "conformance"
    return int(pytest.main([str(conformance_dir), "-p", "no:cacheprovider", *rest]))


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
    from reference_server.backends.hf_export import cached_export, export_gguf
    from reference_server.backends.llamacpp import embedded_model_path

    try:
        directory = export_gguf(args.gguf or embedded_model_path(), args.out) if args.out else cached_export(args.gguf)
    except (FileNotFoundError, ImportError) as exc:
        print(f"llamacert export-hf: {exc}", file=sys.stderr)
        return 2
    print(directory)
    return 0


def _engine_argument(text: str) -> tuple[str, Any]:
    """KEY=VALUE, the value read as JSON when it is JSON (numbers, booleans, lists), else as a string."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def _spec(args: argparse.Namespace, rest: list[str]) -> int:
    from spec.summary import print_summary

    return print_summary()


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace, list[str]], int]]]:
    parser = argparse.ArgumentParser(prog="llamacert", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the Llama API (embedded SmolLM2 on llama.cpp by default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--backend", choices=["llamacpp", "vllm", "simulated"])
    serve.add_argument("--model", type=Path, help="GGUF file (llamacpp) or Hugging Face directory (vllm)")
    serve.add_argument("--model-name", dest="model_name")
    serve.add_argument("--api-key", dest="api_key", help="the endpoint key (default: $LLAMACERT_API_KEY or generated)")
    serve.add_argument("--profile", help="serverless-llama3 | serverless-llama31 | managed-compute")
    serve.add_argument("--rpm", dest="requests_per_minute", type=int)
    serve.add_argument("--tpm", dest="tokens_per_minute", type=int)
    safety = serve.add_mutually_exclusive_group()
    safety.add_argument("--content-safety", dest="content_safety", action="store_const", const=True)
    safety.add_argument("--no-content-safety", dest="content_safety", action="store_const", const=False)
    serve.add_argument("--content-safety-config", dest="content_safety_config", type=Path)
    serve.add_argument("--context-length", dest="context_length", type=int)
    serve.add_argument("--threads", type=int)
    serve.add_argument("--parallel", type=int, help="llama.cpp: sequences decoded together (default 4)")
    serve.add_argument("--max-waiting", dest="max_waiting", type=int)
    serve.add_argument("--simulated-first-token-s", dest="simulated_first_token_s", type=float)
    serve.add_argument("--simulated-token-s", dest="simulated_token_s", type=float)
    serve.add_argument(
        "--engine-arg",
        dest="engine_args",
        type=_engine_argument,
        action="append",
        metavar="KEY=VALUE",
        help="vllm backend: a vLLM engine argument, e.g. tensor_parallel_size=2 (repeatable)",
    )
    passthrough = {
        "conform": "run the conformance suite (pytest options and --endpoint/--api-key/... pass through)",
        "load": "run a Locust load test (see `llamacert load --help`)",
        "certify": "certify an endpoint: conformance + load test -> report (see `llamacert certify --help`)",
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
    passthrough = {"conform", "load", "certify", "compare"}
    if arguments and arguments[0] in passthrough:
        namespace: Any = argparse.Namespace(command=arguments[0])
        return handlers[arguments[0]](namespace, arguments[1:])
    args = parser.parse_args(arguments)
    return handlers[args.command](args, [])


if __name__ == "__main__":
    raise SystemExit(main())
