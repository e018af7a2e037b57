"""The ASGI app: the routes of spec/openapi.yaml mounted over any Backend, and the error handlers.

Generation routes are `GenerationEndpoint`s (reference_server/serving.py) of one API family each
(completions.py, chat.py). It never imports llama.cpp or vLLM.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reference_server.admission import GenerationGate
from reference_server.azure import ClientRequestIdMiddleware, check_api_version, error_response_for
from reference_server.backends.base import Backend, BackendOverloaded
from reference_server.chat import ChatApi
from reference_server.completions import CompletionsApi
from reference_server.errors import ApiError
from reference_server.faults import FaultBarrier
from reference_server.metrics import install_metrics
from reference_server.moderation import ContentSafety
from reference_server.ratelimit import RateLimiter, rate_limit_headers
from reference_server.serving import ApiFamily, AppState, GenerationEndpoint, app_state, authenticate
from reference_server.settings import ServerSettings
from reference_server.tokenize import tokenize_route
from spec.models import ModelInfo, ModelList, ModelListEntry
from spec.routes import GENERATION_ROUTES, Api, info_path, tokenize_path

__all__ = ["create_app"]

_API_FAMILIES: dict[Api, ApiFamily] = {"completion": CompletionsApi(), "chat": ChatApi()}


async def _info(request: Request) -> Response:
    state = app_state(request)
    authenticate(request, state.api_key)
    check_api_version(request)
    info = state.backend.info
    body = ModelInfo(
        model_name=info.model_name, model_type=info.model_type, model_provider_name=info.model_provider_name
    )
    headers = rate_limit_headers(state.rate_limiter.snapshot()) if state.rate_limiter is not None else None
    return JSONResponse(body.model_dump(mode="json"), headers=headers)


async def _models(request: Request) -> Response:
    """GET /v1/models, OpenAI's list form of the one deployed model (D45)."""
    state = app_state(request)
    authenticate(request, state.api_key)
    info = state.backend.info
    entry = ModelListEntry(id=info.model_name, created=int(time.time()), owned_by=info.model_provider_name)
    return JSONResponse(ModelList(data=[entry]).model_dump(mode="json"))


async def _openapi(request: Request) -> Response:
    return Response(app_state(request).openapi_json, media_type="application/json")


async def _health(request: Request) -> Response:
    state = app_state(request)
    # in_flight: requests admitted to generation or waiting for it (zero on an idle server)
    return JSONResponse({"status": "ok", "backend": state.backend.info.backend, "in_flight": state.gate.in_flight})


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    state = app_state(request)
    headers: dict[str, str] = {}
    if state.rate_limiter is not None and "Retry-After" not in exc.headers:
        headers = rate_limit_headers(state.rate_limiter.snapshot())
    return error_response_for(request.url.path, exc, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error = ApiError(404, "not_found", f"no route {request.method} {request.url.path}")
    elif exc.status_code == 405:
        error = ApiError(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")
        error.headers = dict(exc.headers or {})
    else:
        error = ApiError(exc.status_code, "http_error", str(exc.detail))
    return error_response_for(request.url.path, error)


async def _overloaded(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BackendOverloaded)
    retry = max(1, round(exc.retry_after_s))
    error = ApiError(503, "overloaded", str(exc), headers={"Retry-After": str(retry)})
    return error_response_for(request.url.path, error)


def create_app(
    settings: ServerSettings,
    backend: Backend,
    *,
    api_key: str,
    rate_limiter: RateLimiter | None = None,
    safety: ContentSafety | None = None,
) -> Starlette:
    """The ASGI app for one deployment. The backend is started and closed with the app's lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await backend.start()
        try:
            yield
        finally:
            await backend.close()

    endpoints = {api: GenerationEndpoint(family) for api, family in _API_FAMILIES.items()}
    routes = [
        *(Route(route.path, endpoints[route.api].handle, methods=["POST"]) for route in GENERATION_ROUTES),
        Route(info_path(), _info, methods=["GET"]),
        Route("/v1/models", _models, methods=["GET"]),
        Route(tokenize_path(), tokenize_route, methods=["POST"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
        Route("/swagger.json", _openapi, methods=["GET"]),
        Route("/health", _health, methods=["GET"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: _api_error,
        HTTPException: _http_error,
        BackendOverloaded: _overloaded,
    }
    # the fault barrier answers whatever no handler took: a 500 envelope on a connection that stays open
    app = Starlette(
        routes=routes,
        exception_handlers=handlers,
        middleware=[Middleware(ClientRequestIdMiddleware), Middleware(FaultBarrier)],
        lifespan=lifespan,
    )
    gate = GenerationGate(backend.info.concurrency, settings.max_waiting, settings.slot_wait_s)
    app.state.llamacert = AppState(settings, backend, api_key, rate_limiter, safety, gate)
    app.state.llamacert.metrics = install_metrics(app, rate_limiter, gate, backend)
    return app
