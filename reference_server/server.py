"""Builds a deployment from ServerSettings (backend, key, limits, content safety) and serves it."""

from __future__ import annotations

import contextlib
import resource
import secrets
import socket
import sys

import uvicorn
from starlette.applications import Starlette

from reference_server.app import create_app
from reference_server.backends.base import Backend
from reference_server.connections import ConnectionLimits, limited_protocol
from reference_server.drain import Drain
from reference_server.moderation import ContentSafety, load_content_filter
from reference_server.ratelimit import RateLimiter
from reference_server.serving import AppState
from reference_server.settings import ServerSettings
from spec.profiles import get_profile

__all__ = ["build_app", "build_backend", "connection_cap", "resolve_api_key", "serve", "uvicorn_config"]


def build_backend(settings: ServerSettings) -> Backend:
    """The backend the settings name, model loaded."""
    if settings.backend == "simulated":
        from reference_server.backends.simulated import create_simulated_backend

        simulated: Backend = create_simulated_backend(
            first_token_delay_s=settings.simulated_first_token_s,
            token_delay_s=settings.simulated_token_s,
            context_length=settings.context_length,
            slots=settings.simulated_slots,
        )
        return simulated
    if settings.backend == "vllm":
        from reference_server.backends.vllm_engine import create_vllm_backend

        return create_vllm_backend(
            settings.model,
            context_length=settings.context_length,
            max_waiting=settings.max_waiting,
            model_name=settings.model_name,
            engine_args=settings.vllm_engine_args,
        )
    from reference_server.backends.llamacpp import create_llamacpp_backend

    return create_llamacpp_backend(
        settings.model,
        n_ctx=settings.context_length,
        n_threads=settings.threads,
        parallel=settings.parallel,
        max_waiting=settings.max_waiting,
        model_name=settings.model_name,
    )


def resolve_api_key(settings: ServerSettings) -> tuple[str, bool]:
    """The configured key, or a new random one (and True: it must be shown to the user)."""
    if settings.api_key is not None and settings.api_key.get_secret_value():
        return settings.api_key.get_secret_value(), False
    return secrets.token_urlsafe(24), True


def build_app(settings: ServerSettings, backend: Backend | None = None, api_key: str | None = None) -> Starlette:
    """The app of one deployment: the profile decides rate limits and content safety."""
    profile = get_profile(settings.profile)
    limited = bool(profile.has_rate_limits or settings.requests_per_minute or settings.tokens_per_minute)
    limiter = (
        RateLimiter.from_profile(
            profile, rpm_override=settings.requests_per_minute, tpm_override=settings.tokens_per_minute
        )
        if limited
        else None
    )
    use_safety = (
        settings.content_safety if settings.content_safety is not None else profile.content_safety == "required"
    )
    safety = None
    if use_safety:
        content_filter = load_content_filter(settings.content_safety_config)
        safety = ContentSafety(content_filter, settings.content_filter_timeout_s)
    return create_app(
        settings,
        backend or build_backend(settings),
        api_key=api_key or resolve_api_key(settings)[0],
        rate_limiter=limiter,
        safety=safety,
    )


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, telling the app when shutdown starts so running requests get the drain deadline."""

    def __init__(self, config: uvicorn.Config, drain: Drain, drain_timeout_s: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._drain_timeout_s = drain_timeout_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._drain.begin(self._drain_timeout_s)
        await super().shutdown(sockets)


def connection_cap(requested: int) -> int:
    """The connection cap in force: the setting, lowered below the open-file limit (a reserve for models, logs)."""
    soft_limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft_limit == resource.RLIM_INFINITY:
        return requested
    return max(1, min(requested, soft_limit - _FILE_RESERVE))


_FILE_RESERVE = 64


def uvicorn_config(settings: ServerSettings, app: Starlette) -> uvicorn.Config:
    """uvicorn's own limits where it has them; the protocol of reference_server.connections for the rest."""
    limits = ConnectionLimits(
        header_timeout_s=settings.header_timeout_s,
        max_header_bytes=settings.max_header_bytes,
        max_header_count=settings.max_header_count,
        max_connections=connection_cap(settings.max_connections),
    )
    # uvloop and httptools, not uvicorn's pure-Python fallbacks: with them one core serves about a
    # third more requests/s (issue 6), and naming them makes a missing one an error, not a slowdown
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=limited_protocol(limits),
        log_level="warning",
        timeout_keep_alive=max(1, round(settings.keep_alive_s)),
        # past the drain deadline the app ends its requests itself; this margin lets those answers flush
        timeout_graceful_shutdown=round(settings.drain_timeout_s) + _DRAIN_MARGIN_S,
    )


_DRAIN_MARGIN_S = 3


def serve(settings: ServerSettings) -> None:
    """Run the server until SIGTERM or SIGINT, then drain (`llamacert serve`)."""
    api_key, generated = resolve_api_key(settings)
    if generated:
        print(f"llamacert: no --api-key given; this server's key is: {api_key}", file=sys.stderr, flush=True)
    app = build_app(settings, api_key=api_key)
    print(
        f"llamacert: serving the Llama API ({settings.backend} backend, profile {settings.profile}) "
        f"on http://{settings.host}:{settings.port}",
        file=sys.stderr,
        flush=True,
    )
    if settings.backend == "llamacpp":
        from reference_server.backends.llamacpp import choose_threads

        threads = choose_threads(settings.threads)
        print(
            f"llamacert: llama.cpp decodes up to {settings.parallel} sequences together (--parallel) "
            f"with {threads.threads} thread(s): {threads.reason}",
            file=sys.stderr,
            flush=True,
        )
    state: AppState = app.state.llamacert
    server = _DrainingServer(uvicorn_config(settings, app), state.drain, settings.drain_timeout_s)
    # uvicorn re-raises the signal it stopped for once it has drained: SIGTERM then ends the process
    # with its usual status, SIGINT as a KeyboardInterrupt that is not a failure to report
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
