"""tox's install command: pip, with llama-cpp-python taken from a portable wheel built once.

A plain `pip install llama-cpp-python` compiles llama.cpp with -march=native (10+ minutes on two
cores), and on CPUs with AMX that build crashes on the first generated token. pip's wheel cache
ignores CMAKE_ARGS, so a crashing cached wheel would be reused. This wrapper builds the pinned
version once with GGML_NATIVE=OFF, outside pip's cache, into a wheelhouse keyed by version, and
points pip at it, so every later install (every tox env, every CI run) reuses it in seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = Path(os.environ.get("LLAMACERT_WHEELHOUSE", Path.home() / ".cache" / "llamacert" / "wheelhouse"))
PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF"


def pinned_llama_cpp_version() -> str:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for requirement in extras["cpu"]:
        name, _, version = requirement.partition("==")
        if name.strip() == "llama-cpp-python":
            return version.strip()
    raise SystemExit("pyproject.toml: the cpu extra must pin llama-cpp-python==VERSION")


def ensure_portable_wheel(version: str) -> None:
    if any(WHEELHOUSE.glob(f"llama_cpp_python-{version}-*.whl")):
        return
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    print(f"building llama-cpp-python {version} once ({PORTABLE_CMAKE_ARGS}) into {WHEELHOUSE}", flush=True)
    env = {
        **os.environ,
        "CMAKE_ARGS": PORTABLE_CMAKE_ARGS,
        "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2),
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-cache-dir",
            "-w",
            str(WHEELHOUSE),
            f"llama-cpp-python=={version}",
        ],
        check=True,
        env=env,
    )


def main(arguments: list[str]) -> int:
    ensure_portable_wheel(pinned_llama_cpp_version())
    command = [sys.executable, "-m", "pip", "install", "--find-links", str(WHEELHOUSE), *arguments]
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
