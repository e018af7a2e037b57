"""Prometheus `/metrics` for the reference server (prometheus_client), so a load test sees the server's side.

Exposed (each app has its own registry, so several apps in one process never share counts):
  llamacert_requests_total{route,status}                    requests answered, by route and HTTP status
  llamacert_prompt_tokens_total, llamacert_generation_tokens_total   tokens of settled generation requests
  llamacert_requests_running, llamacert_requests_waiting   the admission gate's running and waiting requests
  llamacert_time_to_first_token_seconds                     histogram, streamed requests: arrival to first event
  llamacert_inter_token_latency_seconds                     histogram: gaps between token-bearing SSE events
  llamacert_rate_limit_remaining_requests / _tokens         the limiter's buckets now (absent without limits)
  llamacert_rate_limit_rejections_total{reason}             refusals by reason (requests, tokens, ...)
  llamacert_engine_<counter>_total                          a batching backend's decode-step totals (steps,
                                                            sequences, tokens, left_out, decode_cpu_s, ...)
Timing is taken by a pure ASGI middleware around the routes, so the HTTP layer only reports tokens and
refusals; running and waiting are read from the admission gate when scraped. The server emits one SSE event
per decoding step, so event gaps are inter-token gaps for n=1.
/metrics needs no key, as vLLM's and llama.cpp's do not: it carries counts, never prompts.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reference_server.admission import GenerationGate
from reference_server.ratelimit import RateLimiter
from spec.routes import GENERATION_ROUTES

__all__ = ["METRICS_PATH", "ServerMetrics", "StepCounting", "install_metrics"]

METRICS_PATH: Final = "/metrics"
_GENERATION_ROUTES: Final = frozenset(route.path for route in GENERATION_ROUTES)
_KNOWN_ROUTES: Final = _GENERATION_ROUTES | {"/info", "/openapi.json", "/swagger.json", "/health"}
_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_NO_TOKEN_MARKERS: Final = (b'"choices":[]', b"[DONE]", b'"text":""', b'"content":""', b'"content":null', b'{"error"')
"""An SSE event holding one of these carries no token: the usage event, [DONE], a bare finish_reason, an error."""
_GAP_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@runtime_checkable
class StepCounting(Protocol):
    """A backend that decodes in steps and counts what they did (the llama.cpp batch engine)."""

    def step_counters(self) -> dict[str, float]:
        """Totals since start by name: steps, sequences decoded, seconds inside the decoder, ..."""


class _StepCounters(Collector):
    """The backend's step totals, read when scraped (the backend keeps them; nothing is copied per step)."""

    def __init__(self, source: StepCounting) -> None:
        self._source = source

    def collect(self) -> Any:
        for name, value in self._source.step_counters().items():
            yield CounterMetricFamily(f"llamacert_engine_{name}", f"Batch engine total: {name}.", value=value)


class ServerMetrics:
    """The metrics of one app, in their own registry."""

    def __init__(
        self, gate: GenerationGate, rate_limiter: RateLimiter | None = None, steps: StepCounting | None = None
    ) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        if steps is not None:
            registry.register(_StepCounters(steps))
        self.requests = Counter(
            "llamacert_requests", "Requests answered, by route and HTTP status.", ["route", "status"], registry=registry
        )
        # route and status are bounded (known routes or "other"; HTTP statuses), so this cache is too
        self._requests_by_label: dict[tuple[str, int], Counter] = {}
        self.prompt_tokens = Counter("llamacert_prompt_tokens", "Prompt tokens of settled requests.", registry=registry)
        self.generation_tokens = Counter(
            "llamacert_generation_tokens", "Tokens generated for settled requests.", registry=registry
        )
        running = Gauge("llamacert_requests_running", "Generation requests admitted and running.", registry=registry)
        waiting = Gauge("llamacert_requests_waiting", "Generation requests waiting for a slot.", registry=registry)
        running.set_function(lambda: float(gate.running))
        waiting.set_function(lambda: float(gate.waiting))
        self.ttft = Histogram(
            "llamacert_time_to_first_token_seconds",
            "Streamed requests: arrival to the first SSE event.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.inter_token = Histogram(
            "llamacert_inter_token_latency_seconds",
            "Gaps between consecutive token-bearing SSE events.",
            buckets=_GAP_BUCKETS,
            registry=registry,
        )
        self.rejections = Counter(
            "llamacert_rate_limit_rejections",
            "Requests refused by the rate limiter, by reason.",
            ["reason"],
            registry=registry,
        )
        if rate_limiter is not None:
            remaining_requests = Gauge(
                "llamacert_rate_limit_remaining_requests", "Requests the limiter would admit now.", registry=registry
            )
            remaining_tokens = Gauge(
                "llamacert_rate_limit_remaining_tokens", "Tokens the limiter would admit now.", registry=registry
            )
            remaining_requests.set_function(lambda: float(rate_limiter.snapshot().remaining_requests or 0))
            remaining_tokens.set_function(lambda: float(rate_limiter.snapshot().remaining_tokens or 0))

    def _requests_child(self, route: str, status: int) -> Counter:
        """The requests counter of one route and status, looked up once (labels() validates on every call)."""
        child = self._requests_by_label.get((route, status))
        if child is None:
            child = self._requests_by_label[route, status] = self.requests.labels(route=route, status=str(status))
        return child

    def count_tokens(self, prompt_tokens: int, generated_tokens: int) -> None:
        """A generation request settled: what it consumed."""
        self.prompt_tokens.inc(prompt_tokens)
        self.generation_tokens.inc(generated_tokens)

    def count_rejection(self, reason: str) -> None:
        self.rejections.labels(reason=reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Wrap `app`: count every HTTP request by route and status, time streamed answers."""

        async def observed(scope: Scope, receive: Receive, send: Send) -> None:
            # scrapes are not counted, or every scraper would see its own requests in the request rate
            if scope["type"] != "http" or scope["path"] == METRICS_PATH:
                await app(scope, receive, send)
                return
            path = scope["path"]
            generation = path in _GENERATION_ROUTES
            arrived = time.perf_counter()
            status = 500
            streaming = False
            last_event: float | None = None

            async def watch(message: Message) -> None:
                nonlocal status, streaming, last_event
                kind = message["type"]
                if kind == "http.response.start":
                    status = message["status"]
                    headers = dict(message.get("headers") or ())
                    streaming = generation and headers.get(b"content-type", b"").startswith(b"text/event-stream")
                elif kind == "http.response.body" and streaming:
                    body = message.get("body", b"")
                    if body and not any(marker in body for marker in _NO_TOKEN_MARKERS):
                        now = time.perf_counter()
                        if last_event is None:
                            self.ttft.observe(now - arrived)
                        else:
                            self.inter_token.observe(now - last_event)
                        last_event = now
                await send(message)

            try:
                await app(scope, receive, watch)
            finally:
                self._requests_child(path if path in _KNOWN_ROUTES else "other", status).inc()

        return observed


def install_metrics(
    app: Starlette, rate_limiter: RateLimiter | None, gate: GenerationGate, backend: object = None
) -> ServerMetrics:
    """Add GET /metrics and the timing middleware to `app`; returns the metrics for the routes to report to.

    A backend that counts its decode steps (StepCounting) has them exposed too.
    """
    metrics = ServerMetrics(gate, rate_limiter, backend if isinstance(backend, StepCounting) else None)

    async def exposition(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    app.router.routes.append(Route(METRICS_PATH, exposition, methods=["GET"]))
    app.add_middleware(_Wrapped, metrics=metrics)
    return metrics


class _Wrapped:
    """Starlette's middleware slot for `ServerMetrics.middleware` (it builds middleware from a class)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self._observed = metrics.middleware(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._observed(scope, receive, send)
