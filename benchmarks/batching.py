"""Issue 14's figures side by side from one run: the raw llama_decode ceiling, the server at 1, 4 and 8 users.

Prints every ratio the issue asks for, each with the machine's idle CPU measured while it was taken:
  - the ceiling: raw llama_decode, one batch of 1 / 4 / 8 sequences (64-token prompts, 128 greedy tokens);
  - served / direct llama-cpp-python at 1 user (target >= 0.95, quiet machine);
  - aggregate output tokens/s at 4 and 8 users / the ceiling at that batch size (target >= 0.85);
  - TTFT p50 at 4 users / at 1 user (target <= 2);
  - 1 user under Locust / the same server timed quietly without Locust (steadiness, target >= 0.7);
  - optionally llama-cpp-python's own server at 4 users (--llama-cpp-server): it sends no usage, so
    its tokens cannot be counted; its failed requests are.
The server is measured with `llamacert load --scenario throughput --mix completion+stream --prompt-tokens
64 --output-tokens 128`. A benchmark, not a test: on a busy machine the figures mean little.

    python -m benchmarks.batching [--duration 40] [--threads N] [--llama-cpp-server]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from launch import ReferenceServer, free_loopback_port
from reference_server.backends.embedded import embedded_model_path
from reference_server.backends.llamacpp import choose_threads, create_batched_context

PROMPT_TOKENS = 64
OUTPUT_TOKENS = 128
CONTEXT_LENGTH = 2048
BATCHES = (1, 4, 8)


@dataclass
class Figure:
    value: float
    idle_cpu: float
    """Share of the machine's CPU time that was idle while the figure was taken (0..1)."""

    def __str__(self) -> str:
        return f"{self.value:8.1f}  (idle CPU {self.idle_cpu:4.0%})"


class IdleMeter:
    """The machine's idle share between start and the moment it is read."""

    def __init__(self) -> None:
        self._start = psutil.cpu_times()

    def idle(self) -> float:
        end = psutil.cpu_times()
        total = sum(end) - sum(self._start)
        return (end.idle - self._start.idle) / total if total > 0 else 0.0


def _prompt_text(seed: int) -> str:
    # about 64 tokens of plain words, different per request so that nothing is cached
    words = [f"lighthouse{seed}", "keeper", "storm", "harbour", "night", "lantern", "sea", "ship"]
    return " ".join(words[(seed + i) % len(words)] for i in range(PROMPT_TOKENS - 2))


def ceiling(threads: int) -> dict[int, Figure]:
    """Aggregate tokens/s of raw llama_decode: `batch` sequences advanced one token per step together."""
    import llama_cpp
    from llama_cpp import Llama

    llama = Llama(model_path=str(embedded_model_path()), n_ctx=256, n_batch=32, n_threads=1, verbose=False)
    context = create_batched_context(llama, context_length=CONTEXT_LENGTH, sequences=max(BATCHES), threads=threads)
    memory = llama_cpp.llama_get_memory(context)
    n_vocab = int(llama.n_vocab())
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    figures: dict[int, Figure] = {}
    try:
        for size in BATCHES:
            llama_cpp.llama_memory_clear(memory, True)
            prompts = [llama.tokenize(_prompt_text(seq).encode(), add_bos=True)[:PROMPT_TOKENS] for seq in range(size)]
            rows = 0
            for seq, prompt in enumerate(prompts):
                for position, token in enumerate(prompt):
                    batch.token[rows], batch.pos[rows], batch.n_seq_id[rows] = token, position, 1
                    batch.seq_id[rows][0] = seq
                    batch.logits[rows] = position == len(prompt) - 1
                    rows += 1
            batch.n_tokens = rows
            assert llama_cpp.llama_decode(context, batch) == 0
            last_rows = list(np.cumsum([len(p) for p in prompts]) - 1)
            positions = [len(p) for p in prompts]
            meter, started = IdleMeter(), time.perf_counter()
            for _ in range(OUTPUT_TOKENS):
                for seq in range(size):
                    logits = llama_cpp.llama_get_logits_ith(context, last_rows[seq])
                    pointer = ctypes.cast(logits, ctypes.POINTER(ctypes.c_float))
                    token = int(np.argmax(np.ctypeslib.as_array(pointer, shape=(n_vocab,))))
                    batch.token[seq], batch.pos[seq], batch.n_seq_id[seq] = token, positions[seq], 1
                    batch.seq_id[seq][0] = seq
                    batch.logits[seq] = 1
                    positions[seq] += 1
                batch.n_tokens = size
                assert llama_cpp.llama_decode(context, batch) == 0
                last_rows = list(range(size))
            seconds = time.perf_counter() - started
            figures[size] = Figure(size * OUTPUT_TOKENS / seconds, meter.idle())
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(context)
        llama.close()
    return figures


def direct_one_user(threads: int, seconds: float) -> Figure:
    """llama-cpp-python's create_completion back to back for `seconds`: output tokens / wall time."""
    from llama_cpp import Llama

    llama: Any = Llama(
        model_path=str(embedded_model_path()),
        n_ctx=CONTEXT_LENGTH,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    no_end = {llama.token_eos(): -1e9}
    meter, started, tokens, run = IdleMeter(), time.perf_counter(), 0, 0
    while time.perf_counter() - started < seconds:
        llama.reset()
        out = llama.create_completion(
            _prompt_text(1000 + run), max_tokens=OUTPUT_TOKENS, temperature=0, stop=[], logit_bias=no_end
        )
        tokens += out["usage"]["completion_tokens"]
        run += 1
    figure = Figure(tokens / (time.perf_counter() - started), meter.idle())
    llama.close()
    return figure


def served_quietly(server: ReferenceServer, seconds: float) -> Figure:
    """The server alone, one request after another from this process (no Locust): output tokens / wall time."""
    headers = {"Authorization": f"Bearer {server.api_key}"}
    body = {"max_tokens": OUTPUT_TOKENS, "temperature": 0, "ignore_eos": True}
    meter, started, tokens, run = IdleMeter(), time.perf_counter(), 0, 0
    with httpx.Client(base_url=server.url, headers=headers, timeout=600) as client:
        while time.perf_counter() - started < seconds:
            response = client.post("/v1/completions", json={**body, "prompt": _prompt_text(2000 + run)})
            response.raise_for_status()
            tokens += response.json()["usage"]["completion_tokens"]
            run += 1
    return Figure(tokens / (time.perf_counter() - started), meter.idle())


@dataclass
class LoadRun:
    tokens_per_s: Figure
    ttft_p50_ms: Figure
    ok: int
    failed: int


def load(endpoint: str, api_key: str, users: int, seconds: float, out: Path) -> LoadRun:
    """`llamacert load --scenario throughput` as a user runs it, in its own process beside the server."""
    command = [
        sys.executable, "-m", "llamacert.cli", "load", "--endpoint", endpoint, "--api-key", api_key,
        "--scenario", "throughput", "--mix", "completion+stream", "--prompt-tokens", str(PROMPT_TOKENS),
        "--output-tokens", str(OUTPUT_TOKENS), "--users", str(users), "--duration", f"{seconds:g}s",
        "--out", str(out),
    ]  # fmt: skip
    meter = IdleMeter()
    subprocess.run(command, check=False, capture_output=True, timeout=seconds * 3 + 120)
    idle = meter.idle()
    summary = json.loads((out / "load-summary.json").read_text())
    ttft = (summary.get("ttft_ms") or {}).get("p50") or float("nan")
    return LoadRun(Figure(summary["output_tokens_per_s"], idle), Figure(ttft, idle), summary["ok"], summary["errors"])


@contextlib.contextmanager
def llama_cpp_server(threads: int) -> Iterator[str]:
    port = free_loopback_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path()), "--n_ctx", str(CONTEXT_LENGTH),
        "--n_threads", str(threads), "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not start")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _ratio(name: str, value: float, target: str, *figures: Figure) -> None:
    idle = " / ".join(f"{figure.idle_cpu:.0%}" for figure in figures)
    print(f"  {name:<52} {value:6.2f}  target {target:<7} (idle CPU {idle})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=40.0, help="Seconds per load run and per direct run.")
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: the server's own choice).")
    parser.add_argument("--llama-cpp-server", action="store_true", help="Also load llama-cpp-python's server.")
    args = parser.parse_args(argv)
    threads = choose_threads(args.threads).threads
    print(f"threads {threads}; {PROMPT_TOKENS}-token prompts, {OUTPUT_TOKENS} output tokens; {args.duration:g} s runs")

    print("raw llama_decode ceiling, aggregate tokens/s:")
    ceilings = ceiling(threads)
    for size, figure in ceilings.items():
        print(f"  batch {size}: {figure}")
    direct = direct_one_user(threads, args.duration)
    print(f"direct llama-cpp-python, 1 user, tokens/s: {direct}")

    runs: dict[int, LoadRun] = {}
    server = ReferenceServer(
        ["--context-length", str(CONTEXT_LENGTH), "--threads", str(threads), "--parallel", str(max(BATCHES))],
        profile=None,
    )
    try:
        server.wait_ready()
        quiet = served_quietly(server, args.duration)
        print(f"served, 1 client without Locust, tokens/s: {quiet}")
        with tempfile.TemporaryDirectory(prefix="llamacert-bench-") as scratch:
            for users in BATCHES:
                runs[users] = load(server.url, server.api_key, users, args.duration, Path(scratch) / f"u{users}")
                run = runs[users]
                print(
                    f"served, {users} user(s): {run.tokens_per_s} tok/s, TTFT p50 {run.ttft_p50_ms} ms, "
                    f"{run.ok} ok / {run.failed} failed"
                )
            foreign: LoadRun | None = None
            if args.llama_cpp_server:
                with llama_cpp_server(threads) as url:
                    foreign = load(url, "none", 4, args.duration, Path(scratch) / "llama-cpp-server")
    finally:
        server.stop()

    print("ratios:")
    _ratio("served / direct llama-cpp-python, 1 user", runs[1].tokens_per_s.value / direct.value, ">= 0.95",
           runs[1].tokens_per_s, direct)  # fmt: skip
    for users in BATCHES[1:]:
        _ratio(f"aggregate {users} users / raw ceiling batch {users}",
               runs[users].tokens_per_s.value / ceilings[users].value, ">= 0.85",
               runs[users].tokens_per_s, ceilings[users])  # fmt: skip
    _ratio("TTFT p50 4 users / 1 user", runs[4].ttft_p50_ms.value / runs[1].ttft_p50_ms.value, "<= 2",
           runs[4].ttft_p50_ms, runs[1].ttft_p50_ms)  # fmt: skip
    _ratio("1 user under Locust / served without Locust", runs[1].tokens_per_s.value / quiet.value, ">= 0.7",
           runs[1].tokens_per_s, quiet)  # fmt: skip
    if foreign is not None:
        print(
            f"llama_cpp.server, 4 users: {foreign.ok} ok / {foreign.failed} failed; it sends no usage, so its "
            f"tokens cannot be counted (reported {foreign.tokens_per_s.value:.1f} tok/s)"
        )
    print(f"machine: {os.cpu_count()} cores; figures taken on a busy machine are noisy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
