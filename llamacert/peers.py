"""`python -m llamacert.peers`: the conformance suite, on one scope, against servers no one here wrote.

It starts llama-cpp-python's server (`python -m llama_cpp.server`) and, when vLLM is installed, vLLM's
OpenAI server, both on the embedded SmolLM2 model, runs `llamacert conform` against each with the
same options, and prints (and writes) the table the README shows. The scope is fixed so the rows
compare: Llama routes, the model kinds each server offers (R5), docs strictness, the
managed-compute profile (no platform rate limits or content filter to expect of a bare server).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from launch import PROJECT_ROOT, ManagedProcess, free_loopback_port, project_environment

__all__ = ["Peer", "main", "peers_available", "table"]

OUTCOMES = ("pass", "fail", "skip", "error", "not-run")
SCOPE = ["--routes", "llama", "--model-kind", "auto", "--strictness", "docs", "--profile", "managed-compute"]


@dataclass(frozen=True)
class Peer:
    """A server to judge: how to start it on a port, and how long its start may take."""

    name: str
    command: tuple[str, ...]
    start_timeout_s: float
    ready_path: str = "/v1/models"


def peers_available(model: Path, threads: int) -> list[Peer]:
    """The peer servers installed here, each with a {port} placeholder in its command."""
    peers = []
    if importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("fastapi") is not None:
        peers.append(
            Peer(
                "llama_cpp.server",
                (
                    *(sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1"),
                    *("--port", "{port}", "--n_threads", str(threads), "--n_ctx", "2048", "--verbose", "False"),
                ),
                start_timeout_s=180,
            )
        )
    if importlib.util.find_spec("vllm") is not None:
        from reference_server.backends.hf_export import cached_export

        directory = cached_export(model)
        peers.append(
            Peer(
                "vLLM OpenAI server",
                (
                    *(sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(directory)),
                    *("--host", "127.0.0.1", "--port", "{port}", "--max-model-len", "2048"),
                ),
                start_timeout_s=900,
            )
        )
    return peers


def _judge(peer: Peer, extra: Sequence[str], workdir: Path) -> tuple[Counter[str], list[str], int]:
    port = free_loopback_port()
    command = [part.replace("{port}", str(port)) for part in peer.command]
    results = workdir / f"{peer.name.replace(' ', '_')}.json"
    with ManagedProcess(command, name=peer.name) as server:
        server.wait_http(f"http://127.0.0.1:{port}{peer.ready_path}", timeout_s=peer.start_timeout_s)
        suite = ManagedProcess(
            [
                sys.executable,
                "-m",
                "llamacert.cli",
                "conform",
                "--endpoint",
                f"http://127.0.0.1:{port}",
                *SCOPE,
                "--results-json",
                str(results),
                "-q",
                "-p",
                "no:randomly",
                *extra,
            ],
            name=f"the suite against {peer.name}",
            cwd=PROJECT_ROOT,
            environment=project_environment(),
        )
        status = suite.process.wait(timeout=3600)
        suite.stop()
    rules = json.loads(results.read_text(encoding="utf-8"))["rules"]
    counts = Counter(rule["outcome"] for rule in rules)
    failed = [rule["rule_id"] for rule in rules if rule["outcome"] == "fail"]
    return counts, failed, status


def table(rows: Sequence[tuple[str, Counter[str], list[str]]]) -> str:
    """The Markdown table of rule outcomes per server."""
    lines = [
        "| server | " + " | ".join(OUTCOMES) + " | failed rules |",
        "|---|" + "---|" * len(OUTCOMES) + "---|",
    ]
    for name, counts, failed in rows:
        cells = " | ".join(str(counts.get(outcome, 0)) for outcome in OUTCOMES)
        lines.append(f"| {name} | {cells} | {', '.join(failed) or '-'} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llamacert.peers", description=__doc__)
    parser.add_argument("--model", type=Path, help="GGUF file (default: the embedded SmolLM2)")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads of the peer server (default 1)")
    parser.add_argument("--quick", action="store_true", help="the suite's quick subset")
    parser.add_argument("--out", type=Path, default=Path("peers.md"), help="where to write the table")
    args = parser.parse_args(argv)
    from reference_server.backends.embedded import embedded_model_path

    model = args.model or embedded_model_path()
    peers = peers_available(model, args.threads)
    if not peers:
        print("no peer server is installed (pip install 'llamacert[peers]', or vLLM)", file=sys.stderr)
        return 3
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for peer in peers:
            print(f"judging {peer.name} ...", file=sys.stderr, flush=True)
            counts, failed, _ = _judge(peer, ["--quick"] if args.quick else [], Path(workdir))
            rows.append((peer.name, counts, failed))
    scope = " ".join(SCOPE) + (" --quick" if args.quick else "")
    text = f"rule outcomes of `llamacert conform {scope}` on {model.name}\n\n{table(rows)}\n"
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
