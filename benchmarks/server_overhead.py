"""Server overhead (issue 3): generated tokens/s through `llamacert serve` against llama-cpp-python called directly.

Both sides load the embedded SmolLM2 GGUF with n_ctx 2048 and the same thread count, decode greedily and
generate exactly N tokens (the server with ignore_eos; llama-cpp-python, which has no ignore_eos, with the
end-of-generation token's logit biased away). Each run gives both sides the same new prompt, evaluated from
scratch on both (no prompt cache on either side), and runs them back to back, which side first alternating,
so that a busy machine slows both alike: the ratio is taken per run and its median is the figure (target
>= 0.95). Each run also reports the CPU the rest of the machine used meanwhile: trust the quiet runs.

What is timed, the same way on each side:
  - tokens/s: completion_tokens (from usage) over the wall time of one whole non-streamed call. Through the
    server that is an HTTP request from this process: JSON in and out, tokenization, prompt evaluation and
    decoding. Directly it is `Llama.create_completion` in this process: tokenization, prompt evaluation,
    decoding and detokenization.
  - time to first token: from the start of a streamed call (on another new prompt) to its first chunk.

A benchmark, not a test: run it on a quiet machine.

    python -m benchmarks.server_overhead [--tokens 128] [--runs 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from launch import ReferenceServer
from perf.cpu_usage import machine_busy_cpu_s, process_cpu_s
from reference_server.backends.embedded import embedded_model_path
from spec.sse import DONE, SseDecoder

__all__ = ["DirectLlama", "OverheadRun", "ServedLlama", "SideTiming", "measure_overhead", "served_llama"]

CONTEXT_LENGTH = 2048
# the rest of the machine used less than this (in cores) during a run: its figures are trusted
QUIET_CPU_SHARE = 0.1


def _prompt(run: int, purpose: str) -> str:
    # a new prompt for every call, the same on both sides: neither can answer from a cached prompt
    return f"Write a long story about a lighthouse keeper (story {run}, {purpose})."


@dataclass(frozen=True)
class SideTiming:
    """One side's figures for one run."""

    tokens: int
    seconds: float
    first_token_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


@dataclass(frozen=True)
class OverheadRun:
    """Both sides of one run, measured back to back, and the CPU the rest of the machine used meanwhile."""

    direct: SideTiming
    served: SideTiming
    others_cpu_share: float

    @property
    def ratio(self) -> float:
        return self.served.tokens_per_s / self.direct.tokens_per_s


class DirectLlama:
    """llama-cpp-python in this process."""

    def __init__(self, threads: int) -> None:
        from llama_cpp import Llama

        self.llama: Any = Llama(
            model_path=str(embedded_model_path()),
            n_ctx=CONTEXT_LENGTH,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        self.no_end = {self.llama.token_eos(): -1e9}

    def run(self, run: int, tokens: int) -> SideTiming:
        self.llama.reset()
        started = time.perf_counter()
        out: Any = self.llama.create_completion(
            _prompt(run, "whole"), max_tokens=tokens, temperature=0, stop=[], logit_bias=self.no_end
        )
        seconds = time.perf_counter() - started
        self.llama.reset()
        started = time.perf_counter()
        chunks: Any = self.llama.create_completion(
            _prompt(run, "streamed"), max_tokens=tokens, temperature=0, stop=[], logit_bias=self.no_end, stream=True
        )
        next(chunks)
        first_token_s = time.perf_counter() - started
        for _ in chunks:  # generate the rest, as the server does
            pass
        return SideTiming(out["usage"]["completion_tokens"], seconds, first_token_s)


class ServedLlama:
    """`llamacert serve` (llama.cpp backend) over HTTP."""

    def __init__(self, server: ReferenceServer, client: httpx.Client) -> None:
        self.pid = server.process.pid
        self.client = client

    def run(self, run: int, tokens: int) -> SideTiming:
        body = {"max_tokens": tokens, "temperature": 0, "ignore_eos": True}
        started = time.perf_counter()
        response = self.client.post("/v1/completions", json={**body, "prompt": _prompt(run, "whole")})
        seconds = time.perf_counter() - started
        response.raise_for_status()
        first_token_s = 0.0
        started = time.perf_counter()
        streamed = {**body, "prompt": _prompt(run, "streamed"), "stream": True}
        decoder = SseDecoder()
        with self.client.stream("POST", "/v1/completions", json=streamed) as stream:
            for piece in stream.iter_text():
                events = decoder.feed(piece)
                if not first_token_s and any(event.data != DONE for event in events):
                    first_token_s = time.perf_counter() - started
        return SideTiming(response.json()["usage"]["completion_tokens"], seconds, first_token_s)


@contextmanager
def served_llama(threads: int) -> Iterator[ServedLlama]:
    """`llamacert serve` on the embedded model in a subprocess; always stopped."""
    server = ReferenceServer(["--context-length", str(CONTEXT_LENGTH), "--threads", str(threads)], profile=None)
    try:
        server.wait_ready()
        headers = {"Authorization": f"Bearer {server.api_key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=600) as client:
            yield ServedLlama(server, client)
    finally:
        server.stop()


@dataclass(frozen=True)
class _CpuSnapshot:
    """CPU seconds used so far by us (this process and the server) and by the whole machine."""

    ours_s: float
    machine_s: float
    taken_at: float

    @classmethod
    def take(cls, server_pid: int) -> _CpuSnapshot:
        return cls(process_cpu_s() + process_cpu_s(server_pid), machine_busy_cpu_s(), time.monotonic())

    def others_cpu_share(self, later: _CpuSnapshot) -> float:
        """Cores the rest of the machine used on average between this snapshot and `later`."""
        others_s = (later.machine_s - self.machine_s) - (later.ours_s - self.ours_s)
        return max(0.0, others_s) / (later.taken_at - self.taken_at)


def measure_overhead(tokens: int, runs: int, threads: int) -> list[OverheadRun]:
    """`runs` runs of both sides back to back (which goes first alternates), after a short warm-up of each."""
    direct = DirectLlama(threads)
    with served_llama(threads) as served:
        direct.run(-1, min(tokens, 8))
        served.run(-1, min(tokens, 8))
        results = []
        for run in range(runs):
            before = _CpuSnapshot.take(served.pid)
            if run % 2:
                served_timing = served.run(run, tokens)
                direct_timing = direct.run(run, tokens)
            else:
                direct_timing = direct.run(run, tokens)
                served_timing = served.run(run, tokens)
            others = before.others_cpu_share(_CpuSnapshot.take(served.pid))
            results.append(OverheadRun(direct_timing, served_timing, others))
        return results


def _spread(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    scaled = [value * scale for value in values]
    return f"{statistics.median(scaled):.{digits}f} ({min(scaled):.{digits}f}-{max(scaled):.{digits}f})"


def _summary(title: str, results: Sequence[OverheadRun]) -> None:
    print(f"{title}: median (min-max) over {len(results)} runs")
    print(f"  direct llama-cpp-python: {_spread([r.direct.tokens_per_s for r in results])} tok/s")
    print(f"  through llamacert serve: {_spread([r.served.tokens_per_s for r in results])} tok/s")
    print(f"  ratio served/direct:     {_spread([r.ratio for r in results], digits=3)} (target >= 0.95)")
    print(
        f"  time to first token:     direct {_spread([r.direct.first_token_s for r in results], 1000, 0)} ms, "
        f"served {_spread([r.served.first_token_s for r in results], 1000, 0)} ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.server_overhead", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    results = measure_overhead(args.tokens, args.runs, args.threads)
    for number, result in enumerate(results, start=1):
        print(
            f"run {number}: direct {result.direct.tokens_per_s:.1f} tok/s, served {result.served.tokens_per_s:.1f} "
            f"tok/s, ratio {result.ratio:.3f}; the rest of the machine used {result.others_cpu_share:.2f} cores"
        )
    _summary("all runs", results)
    quiet = [result for result in results if result.others_cpu_share < QUIET_CPU_SHARE]
    if quiet and len(quiet) < len(results):
        _summary(f"quiet runs (the rest of the machine under {QUIET_CPU_SHARE} cores)", quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
