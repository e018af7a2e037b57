"""The llama.cpp backend (llama-cpp-python): the CPU reference, on the embedded SmolLM2 by default.

Decoding is ours (reference_server/backends/decoding.py) over llama.cpp's logits, because the
library's own completion API does not do n, best_of or beam search, counts the token that
completed a stop string, and reports offsets that include the prompt.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from reference_server.backends.base import BackendInfo, ChatTurn, plain_chat_prompt, prompt_with_a_start
from reference_server.backends.decoding import Logits
from reference_server.backends.embedded import ModelNotFound, embedded_model_path
from reference_server.backends.token_backend import ModelSlot, TokenBackend

__all__ = [
    "LlamaCppTokenModel",
    "create_llamacpp_backend",
]


class LlamaCppTokenModel:
    """TokenModel over one llama_cpp.Llama; its KV cache is reused for the longest common prefix."""

    def __init__(self, llama: Any) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.llama = llama
        self.vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self.n_vocab = int(llama.n_vocab())
        self._logits_for_length = -1
        self._last_logits: Logits = np.zeros(self.n_vocab, dtype=np.float32)
        self._prompt: tuple[int, ...] = ()
        self._prompt_logits: Logits = self._last_logits

    def next_logits(self, sequence: list[int]) -> Logits:
        # Greedy decoding must not depend on what ran before: llama.cpp's numbers differ slightly
        # between evaluating a token in a batch and on its own, which can flip near-ties. So a new
        # prompt is always evaluated from scratch in one batch (its logits kept for the next choice
        # of the same prompt), and only tokens generated after it are evaluated incrementally.
        llama = self.llama
        if tuple(sequence) == self._prompt:
            llama.n_tokens = len(sequence)
            return self._prompt_logits
        prompt_length = len(self._prompt)
        current = llama.input_ids[: llama.n_tokens]
        limit = min(len(current), len(sequence))
        mismatch = np.flatnonzero(current[:limit] != np.asarray(sequence[:limit], dtype=current.dtype))
        common = int(mismatch[0]) if mismatch.size else limit
        extends_prompt = prompt_length > 0 and tuple(sequence[:prompt_length]) == self._prompt
        if extends_prompt and common >= prompt_length:
            if common == len(sequence) == llama.n_tokens and self._logits_for_length == common:
                return self._last_logits
            # llama.cpp keeps only the last evaluated token's logits: evaluate at least one token.
            llama.n_tokens = min(common, len(sequence) - 1)
            llama.eval(sequence[llama.n_tokens :])
            self._last_logits = self._read_logits()
            self._logits_for_length = len(sequence)
            return self._last_logits
        llama.reset()
        llama.eval(sequence)
        self._prompt = tuple(sequence)
        self._prompt_logits = self._read_logits()
        self._logits_for_length = -1
        return self._prompt_logits

    def _read_logits(self) -> Logits:
        pointer = self._lib.llama_get_logits_ith(self.llama.ctx, -1)
        logits: Logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()
        return logits

    def token_bytes(self, token_id: int, *, special: bool) -> bytes:
        if not special and self.is_special(token_id):
            return b""
        piece: bytes = self.llama.detokenize([token_id], special=True)
        return piece

    def is_end_of_generation(self, token_id: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self.vocab, token_id))

    def is_special(self, token_id: int) -> bool:
        return bool(self._lib.llama_vocab_is_control(self.vocab, token_id))


def _chat_renderer(llama: Any) -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    source = llama.metadata.get("tokenizer.chat_template")
    if not source:
        return None
    template = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(source)
    eos = llama.detokenize([llama.token_eos()], special=True).decode("utf-8", errors="replace")
    bos = llama.detokenize([llama.token_bos()], special=True).decode("utf-8", errors="replace")

    def render(messages: list[ChatTurn]) -> str:
        turns = [{"role": m.role, "content": m.content} for m in messages]
        rendered: str = template.render(messages=turns, add_generation_prompt=True, bos_token=bos, eos_token=eos)
        return rendered

    return render


def create_llamacpp_backend(
    model_path: Path | None = None,
    *,
    n_ctx: int = 8192,
    n_threads: int | None = None,
    instances: int = 1,
    max_waiting: int = 64,
    model_name: str | None = None,
) -> TokenBackend:
    """Load `instances` llama.cpp contexts of the GGUF (the file's pages are shared between them)."""
    from llama_cpp import Llama

    path = model_path or embedded_model_path()
    if not path.is_file():
        raise ModelNotFound(f"model file not found: {path}")
    threads = n_threads or max(1, (os.cpu_count() or 2) // instances)
    llamas = [
        Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
        for _ in range(instances)
    ]
    first = llamas[0]
    renderer = _chat_renderer(first)
    add_bos = first.metadata.get("tokenizer.ggml.add_bos_token", "true") != "false"

    bos = int(first.token_bos())

    def tokenize(text: str) -> list[int]:
        tokens: list[int] = first.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        return prompt_with_a_start(tokens, text, bos)

    def render_chat(messages: list[ChatTurn]) -> str:
        if renderer is None:
            return plain_chat_prompt(messages)
        rendered: str = renderer(messages)
        return rendered

    trained_context = int(first.metadata.get("llama.context_length", n_ctx))
    info = BackendInfo(
        model_name=model_name or path.stem,
        model_type="chat-completion" if renderer is not None else "text-generation",
        model_provider_name=first.metadata.get("general.organization", "unknown"),
        context_length=min(n_ctx, trained_context),
        backend="llamacpp",
        concurrency=instances,
    )
    slots = [
        ModelSlot(LlamaCppTokenModel(llama), ThreadPoolExecutor(1, thread_name_prefix=f"llamacpp-{i}"))
        for i, llama in enumerate(llamas)
    ]
    return TokenBackend(info, slots, tokenize, render_chat, max_waiting=max_waiting)
