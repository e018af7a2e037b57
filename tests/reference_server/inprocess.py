"""The reference app on the simulated backend, served in process over httpx.ASGITransport (lifespan included)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from reference_server.server import build_app
from reference_server.settings import ServerSettings


async def simulated_client(api_key: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh app on the simulated backend with `settings`; the app is started and stopped."""
    app = build_app(ServerSettings(backend="simulated", **settings), api_key=api_key)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        yield client
