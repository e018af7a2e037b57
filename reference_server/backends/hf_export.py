"""A Hugging Face model directory made offline from a GGUF file, for the vLLM backend.

vLLM loads Hugging Face directories; the embedded model ships as a GGUF. transformers can read the
GGUF (dequantising it) but refuses to save a model loaded that way, so the weights are moved into
a freshly built model of the same configuration and saved from there, in float32, with the
tokenizer and its chat template. The result is cached per GGUF file: made once, reused after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from reference_server.backends.embedded import embedded_model_path

__all__ = ["MODEL_CARD_FILE", "cached_export", "default_cache_dir", "export_gguf"]

MODEL_CARD_FILE = "llamacert-model.json"
"""Written beside the weights: the name and provider /info reports, taken from the GGUF's metadata."""


def default_cache_dir() -> Path:
    root = os.environ.get("LLAMACERT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "llamacert")
    return Path(root) / "models"


def _gguf_organization(gguf: Path) -> str:
    """The publisher named in the GGUF's metadata (what the llama.cpp backend's /info reports)."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf)).fields.get("general.organization")
    if field is None or not field.data:
        return "unknown"
    return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")


def export_gguf(gguf: Path, destination: Path) -> Path:
    """Write the Hugging Face directory of `gguf` to `destination` (atomically: a whole directory or none)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        config: dict[str, Any] = loaded.config.to_dict()
        # the GGUF's quantisation description would make the saved model claim to be quantised
        config.pop("quantization_config", None)
        fresh = LlamaForCausalLM(LlamaConfig(**config))
        fresh.load_state_dict(loaded.state_dict(), strict=True)
        # float32 holds Q4_1's dequantised weights exactly; bfloat16 would round them a second time
        # and, with logits only 8 bits of mantissa apart, turn near-ties into ties
        fresh.save_pretrained(str(staging))
        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(staging))
        card = {
            "model_name": gguf.name.split(".")[0],
            "model_provider_name": _gguf_organization(gguf),
            "source_gguf": gguf.name,
        }
        (staging / MODEL_CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def cached_export(gguf: Path | None = None, cache_dir: Path | None = None) -> Path:
    """The Hugging Face directory of `gguf` (default: the embedded SmolLM2), exporting it on first use."""
    source = gguf or embedded_model_path()
    # keyed by content: every fresh environment installs its own copy of the same embedded file
    with source.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()[:16]
    destination = (cache_dir or default_cache_dir()) / f"{source.stem}-{digest}-float32-hf"
    if not (destination / "config.json").is_file():
        print(f"llamacert: exporting {source.name} to a Hugging Face directory (once): {destination}", file=sys.stderr)
        export_gguf(source, destination)
    return destination
