"""Server overhead: generated tokens/s through `llamacert serve` vs llama-cpp-python called directly.

Same GGUF, same prompt, same thread count, greedy, ignore_eos, N tokens. Prints both rates, the ratio
(target >= 0.95) and the server's time to first token. A benchmark, not a test: run it on a quiet machine.
    python tools/bench_server_overhead.py [--tokens 128] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conformance.plugin import EmbeddedServer
from reference_server.backends.llamacpp import embedded_model_path

PROMPT = "Write a long story about a lighthouse keeper."


def direct(tokens: int, runs: int, threads: int) -> float:
    from llama_cpp import Llama

    llama = Llama(model_path=str(embedded_model_path()), n_ctx=2048, n_threads=threads, verbose=False)
    rates = []
    for _ in range(runs):
        llama.reset()
        started = time.perf_counter()
        # the library has no ignore_eos: forbid the end-of-generation token instead
        out = llama.create_completion(
            PROMPT, max_tokens=tokens, temperature=0, stop=[], logit_bias={llama.token_eos(): -1e9}
        )
        elapsed = time.perf_counter() - started
        rates.append(out["usage"]["completion_tokens"] / elapsed)
    return statistics.median(rates)


def served(tokens: int, runs: int, threads: int) -> tuple[float, float]:
    server = EmbeddedServer(["--context-length", "2048", "--threads", str(threads)], profile=None)
    try:
        server.wait_ready()
        headers = {"Authorization": f"Bearer {server.api_key}"}
        body = {"prompt": PROMPT, "max_tokens": tokens, "temperature": 0, "ignore_eos": True}
        rates, ttfts = [], []
        with httpx.Client(base_url=server.url, headers=headers, timeout=300) as client:
            client.post("/v1/completions", json={**body, "max_tokens": 4})  # warm up
            for _ in range(runs):
                started = time.perf_counter()
                response = client.post("/v1/completions", json=body).json()
                rates.append(response["usage"]["completion_tokens"] / (time.perf_counter() - started))
                started = time.perf_counter()
                with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as stream:
                    for line in stream.iter_lines():
                        if line.startswith("data: {"):
                            ttfts.append(time.perf_counter() - started)
                            break
        return statistics.median(rates), statistics.median(ttfts)
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    direct_rate = direct(args.tokens, args.runs, args.threads)
    served_rate, ttft = served(args.tokens, args.runs, args.threads)
    print(f"direct llama-cpp-python: {direct_rate:.1f} tok/s")
    print(f"through llamacert serve:  {served_rate:.1f} tok/s (ratio {served_rate / direct_rate:.2f}, target >= 0.95)")
    print(f"time to first token through the server: {ttft * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
