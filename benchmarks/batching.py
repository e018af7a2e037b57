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
64 --output-tokens 128`, after a warm-up that is left out of every figure (all users start at once, so the
first prompts are evaluated together). Aggregate tokens/s is counted by the server's batch engine
(/metrics llamacert_engine_answered_total: one per token sampled) over a steady window inside the load run:
Locust's own figure counts only requests that were sent after the warm-up and finished before the end,
which with 128-token requests of several seconds leaves out about one request per user. Both are printed.
Each load run also prints the engine's steps: sequences decoded per step against sequences running
(a late sequence waits a whole step), and the engine thread's time inside llama_decode (wall and CPU)
against its time waiting for sequences and its other work. The ceiling is also given with the prompts'
evaluation counted, which is what a served request must pay as well: it bounds the served ratio.
A benchmark, not a test: on a busy machine the figures mean little.

    python -m benchmarks.batching [--duration 40] [--warmup 10] [--threads N] [--llama-cpp-server]
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


def ceiling(threads: int) -> tuple[dict[int, Figure], dict[int, Figure]]:
    """Aggregate tokens/s of raw llama_decode: `batch` sequences advanced one token per step together.

    Returned twice: over the generation steps only (the ceiling issue 14 names), and with the one
    batched evaluation of the sequences' prompts counted too.
    """
    import llama_cpp
    from llama_cpp import Llama

    llama = Llama(model_path=str(embedded_model_path()), n_ctx=256, n_batch=32, n_threads=1, verbose=False)
    context = create_batched_context(llama, context_length=CONTEXT_LENGTH, sequences=max(BATCHES), threads=threads)
    memory = llama_cpp.llama_get_memory(context)
    n_vocab = int(llama.n_vocab())
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    figures: dict[int, Figure] = {}
    with_prompts: dict[int, Figure] = {}
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
            prompts_started = time.perf_counter()
            assert llama_cpp.llama_decode(context, batch) == 0
            prompt_seconds = time.perf_counter() - prompts_started
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
            idle = meter.idle()
            figures[size] = Figure(size * OUTPUT_TOKENS / seconds, idle)
            with_prompts[size] = Figure(size * OUTPUT_TOKENS / (seconds + prompt_seconds), idle)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(context)
        llama.close()
    return figures, with_prompts


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
class EngineWindow:
    """What the server's batch engine did over a steady window of a load run (/metrics llamacert_engine_*)."""

    tokens_per_s: Figure
    counters: dict[str, float]
    seconds: float

    def __str__(self) -> str:
        c = self.counters
        steps = c["steps"] or 1.0
        timed = ("decode_wall_s", "decode_cpu_s", "gather_wait_s", "other_wall_s")
        share = {name: c[name] / self.seconds for name in timed}
        return (
            f"{c['steps']:.0f} steps: {c['sequences'] / steps:.2f} sequences decoded per step of "
            f"{c['running'] / steps:.2f} running ({c['left_out']:.0f} left out: missed the gather window), "
            f"{c['tokens'] / steps:.1f} tokens/step, {c['prompt_steps']:.0f} with a prompt chunk; engine thread: "
            f"llama_decode {share['decode_wall_s']:.0%} of wall (CPU {share['decode_cpu_s']:.0%}), "
            f"gather wait {share['gather_wait_s']:.0%}, other {share['other_wall_s']:.0%}"
        )


@dataclass
class LoadRun:
    tokens_per_s: Figure
    """Locust's figure: completion tokens of requests sent after the warm-up and finished in the run."""
    ttft_p50_ms: Figure
    ok: int
    failed: int
    engine: EngineWindow | None
    """None for a server without the engine's counters (llama-cpp-python's own)."""


def engine_counters(endpoint: str) -> dict[str, float] | None:
    """The batch engine's totals from /metrics, or None when the server has none."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        response = httpx.get(f"{endpoint}/metrics", timeout=10)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    counters = {
        sample.name.removeprefix("llamacert_engine_").removesuffix("_total"): float(sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name.startswith("llamacert_engine_") and sample.name.endswith("_total")
    }
    return counters or None


def load(endpoint: str, api_key: str, users: int, seconds: float, warmup: float, out: Path) -> LoadRun:
    """`llamacert load --scenario throughput` as a user runs it, in its own process beside the server.

    The engine's window starts `warmup` seconds after the engine began stepping for this run and lasts
    `seconds`; the load runs a few seconds longer, so the window never sees its users stop.
    """
    tail = 5.0
    command = [
        sys.executable, "-m", "llamacert.cli", "load", "--endpoint", endpoint, "--api-key", api_key,
        "--scenario", "throughput", "--mix", "completion+stream", "--prompt-tokens", str(PROMPT_TOKENS),
        "--output-tokens", str(OUTPUT_TOKENS), "--users", str(users), "--duration", f"{seconds + tail:g}s",
        "--warmup", f"{warmup:g}s", "--out", str(out),
    ]  # fmt: skip
    meter = IdleMeter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine: EngineWindow | None = None
    try:
        before = engine_counters(endpoint)
        if before is not None:
            # the load has begun when the engine steps; the warm-up counts from there
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and process.poll() is None:
                now = engine_counters(endpoint)
                if now is not None and now["steps"] > before["steps"]:
                    break
                time.sleep(0.2)
            time.sleep(warmup)
            start, window_meter, started = engine_counters(endpoint), IdleMeter(), time.perf_counter()
            time.sleep(seconds)
            end, elapsed = engine_counters(endpoint), time.perf_counter() - started
            if start is not None and end is not None:
                delta = {name: end[name] - start.get(name, 0.0) for name in end}
                rate = Figure(delta["answered"] / elapsed, window_meter.idle())
                engine = EngineWindow(rate, delta, elapsed)
        process.wait(timeout=seconds * 3 + warmup + 120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    idle = meter.idle()
    summary = json.loads((out / "load-summary.json").read_text())
    ttft = (summary.get("ttft_ms") or {}).get("p50") or float("nan")
    return LoadRun(
        Figure(summary["output_tokens_per_s"], idle), Figure(ttft, idle), summary["ok"], summary["errors"], engine
    )


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
    print(f"  {name:<58} {value:6.2f}  target {target:<7} (idle CPU {idle})")


def served_rate(run: LoadRun) -> Figure:
    """Aggregate output tokens/s of a load run: counted by the engine when it can be, else Locust's figure."""
    return run.engine.tokens_per_s if run.engine is not None else run.tokens_per_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=40.0, help="Seconds measured per load run and direct run.")
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="Seconds of each load run left out of its figures (before them)."
    )
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: the server's own choice).")
    parser.add_argument("--llama-cpp-server", action="store_true", help="Also load llama-cpp-python's server.")
    args = parser.parse_args(argv)
    threads = choose_threads(args.threads).threads
    print(
        f"threads {threads}; {PROMPT_TOKENS}-token prompts, {OUTPUT_TOKENS} output tokens; "
        f"{args.duration:g} s measured after a {args.warmup:g} s warm-up"
    )

    print("raw llama_decode ceiling, aggregate tokens/s (generation steps only / with the prompts' evaluation):")
    ceilings, ceilings_with_prompts = ceiling(threads)
    for size, figure in ceilings.items():
        print(f"  batch {size}: {figure}   with prompts {ceilings_with_prompts[size]}")
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
                run = load(server.url, server.api_key, users, args.duration, args.warmup, Path(scratch) / f"u{users}")
                runs[users] = run
                print(
                    f"served, {users} user(s): {served_rate(run)} tok/s (engine-counted; Locust's "
                    f"{run.tokens_per_s.value:.1f}), TTFT p50 {run.ttft_p50_ms} ms, {run.ok} ok / {run.failed} failed"
                )
                if run.engine is not None:
                    print(f"    engine: {run.engine}")
                    if run.engine.counters["prompt_steps"] < 2 * users:
                        # users finish their equal requests at about the same time: a window shorter
                        # than two requests each counts whichever phase (prompts, generation) it caught
                        print("    (the window held under two prompts per user: lengthen --duration)")
            foreign: LoadRun | None = None
            if args.llama_cpp_server:
                with llama_cpp_server(threads) as url:
                    foreign = load(url, "none", 4, args.duration, args.warmup, Path(scratch) / "llama-cpp-server")
    finally:
        server.stop()

    print("ratios (served tokens/s counted by the engine over the steady window):")
    _ratio("served / direct llama-cpp-python, 1 user", served_rate(runs[1]).value / direct.value, ">= 0.95",
           served_rate(runs[1]), direct)  # fmt: skip
    for users in BATCHES[1:]:
        _ratio(f"aggregate {users} users / raw ceiling batch {users}",
               served_rate(runs[users]).value / ceilings[users].value, ">= 0.85",
               served_rate(runs[users]), ceilings[users])  # fmt: skip
        _ratio(f"  (the same / ceiling batch {users} with prompts: the bound)",
               served_rate(runs[users]).value / ceilings_with_prompts[users].value, "",
               served_rate(runs[users]), ceilings_with_prompts[users])  # fmt: skip
        _ratio("  (the same with Locust's tokens/s)",
               runs[users].tokens_per_s.value / ceilings[users].value, "",
               runs[users].tokens_per_s, ceilings[users])  # fmt: skip
    _ratio("TTFT p50 4 users / 1 user", runs[4].ttft_p50_ms.value / runs[1].ttft_p50_ms.value, "<= 2",
           runs[4].ttft_p50_ms, runs[1].ttft_p50_ms)  # fmt: skip
    _ratio("1 user under Locust / served without Locust", served_rate(runs[1]).value / quiet.value, ">= 0.7",
           served_rate(runs[1]), quiet)  # fmt: skip
    if foreign is not None:
        print(
            f"llama_cpp.server, 4 users: {foreign.ok} ok / {foreign.failed} failed; it sends no usage, so its "
            f"tokens cannot be counted (reported {foreign.tokens_per_s.value:.1f} tok/s)"
        )
    print(f"machine: {os.cpu_count()} cores; figures taken on a busy machine are noisy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
