"""Builds a deployment from ServerSettings (backend, key, limits, content safety) and serves it."""

from __future__ import annotations

import secrets
import sys

import uvicorn
from starlette.applications import Starlette

from reference_server.app import create_app
from reference_server.backends.base import Backend
from reference_server.content_safety import load_content_filter
from reference_server.ratelimit import RateLimiter
from reference_server.safety import ContentSafety
from reference_server.settings import ServerSettings
from spec.profiles import get_profile

__all__ = ["build_app", "build_backend", "resolve_api_key", "serve"]


def build_backend(settings: ServerSettings) -> Backend:
    """The backend the settings name, model loaded."""
    if settings.backend == "simulated":
        from reference_server.backends.simulated import create_simulated_backend

        simulated: Backend = create_simulated_backend(
            first_token_delay_s=settings.simulated_first_token_s,
            token_delay_s=settings.simulated_token_s,
            context_length=settings.context_length,
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
        safety = ContentSafety(content_filter, settings.content_filter_timeout_s, content_filter.hold_back_chars)
    return create_app(
        settings,
        backend or build_backend(settings),
        api_key=api_key or resolve_api_key(settings)[0],
        rate_limiter=limiter,
        safety=safety,
    )


def serve(settings: ServerSettings) -> None:
    """Run the server until interrupted (`llamacert serve`)."""
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
    # uvloop and httptools, not uvicorn's pure-Python fallbacks: with them one core serves about a
    # third more requests/s (issue 6), and naming them makes a missing one an error, not a slowdown
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
