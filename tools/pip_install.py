"""tox's install command: pip, with llama-cpp-python taken from a portable wheel built once.

A plain `pip install llama-cpp-python` compiles llama.cpp with -march=native (10+ minutes on two
cores), and on CPUs with AMX that build crashes on the first generated token. pip's wheel cache
ignores CMAKE_ARGS, so a crashing cached wheel would be reused. This wrapper builds the pinned
version once with GGML_NATIVE=OFF, outside pip's cache, into a wheelhouse keyed by version, and
points pip at it, so every later install (every tox env, every CI run) reuses it in seconds.

    python tools/pip_install.py PIP-INSTALL-ARGS...   pip install, llama-cpp-python from the wheelhouse
    python tools/pip_install.py --cpu-extra           install the `cpu` extra's requirements (tox's commands_pre)

The first build takes 10 to 20 minutes on two cores; it prints what it is doing and how far it got every
30 seconds, because tox shows a command's output but hides an install step's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = Path(os.environ.get("LLAMACERT_WHEELHOUSE", Path.home() / ".cache" / "llamacert" / "wheelhouse"))
PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF"


HEARTBEAT_S = 30
CMAKE_PROGRESS = re.compile(r"\[\s*(\d+)%\]")


def _cpu_extra() -> list[str]:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    requirements: list[str] = extras["cpu"]
    return requirements


def pinned_llama_cpp_version() -> str:
    for requirement in _cpu_extra():
        name, _, version = requirement.partition("==")
        if name.strip() == "llama-cpp-python":
            return version.strip()
    raise SystemExit("pyproject.toml: the cpu extra must pin llama-cpp-python==VERSION")


def _progress(log_path: Path) -> str:
    text = log_path.read_text(encoding="utf-8", errors="replace")
    percents = CMAKE_PROGRESS.findall(text)
    return f"compiling llama.cpp, {percents[-1]}% done" if percents else "preparing the build"


def ensure_portable_wheel(version: str) -> None:
    if any(WHEELHOUSE.glob(f"llama_cpp_python-{version}-*.whl")):
        return
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    print(
        f"llamacert: building llama-cpp-python {version} once ({PORTABLE_CMAKE_ARGS}) into {WHEELHOUSE}; "
        "10 to 20 minutes on two cores, reused by every later install",
        flush=True,
    )
    env = {
        **os.environ,
        "CMAKE_ARGS": PORTABLE_CMAKE_ARGS,
        "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2),
    }
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--verbose",  # cmake's [NN%] lines are how far the build got
        "--no-deps",
        "--no-cache-dir",
        "-w",
        str(WHEELHOUSE),
        f"llama-cpp-python=={version}",
    ]
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("w+", suffix=".log", prefix="llama-cpp-build-", delete=False) as log:
        log_path = Path(log.name)
        build = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        while build.poll() is None:
            try:
                build.wait(HEARTBEAT_S)
            except subprocess.TimeoutExpired:
                minutes = (time.monotonic() - started) / 60
                print(
                    f"llamacert: still building llama-cpp-python ({minutes:.0f} min): {_progress(log_path)}", flush=True
                )
    if build.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise SystemExit(f"llamacert: building llama-cpp-python failed (full log: {log_path}):\n{tail}")
    log_path.unlink()
    print(f"llamacert: llama-cpp-python built in {(time.monotonic() - started) / 60:.1f} min", flush=True)


def main(arguments: list[str]) -> int:
    ensure_portable_wheel(pinned_llama_cpp_version())
    if arguments[:1] == ["--cpu-extra"]:
        arguments = ["--quiet", *arguments[1:], *_cpu_extra()]
    command = [sys.executable, "-m", "pip", "install", "--find-links", str(WHEELHOUSE), *arguments]
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
