"""The reference server (simulated backend) wrapped in an ASGI middleware that counts answers by status.

`python -m tests.perf.counting_server --port P --api-key K [--rpm N] [--tpm N] [--first-token-s S]
[--fault-wrong-usage F]`;
GET /_seen returns {"requests": n, "429": n, "200": n, ...}, so a test can compare what the load generator
recorded with what the server saw; GET /_bodies returns every generation request's JSON body, in arrival order,
so a test can read the prompts the server was sent.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

import uvicorn

from reference_server.server import build_app
from reference_server.settings import ServerSettings

Scope = dict[str, Any]
Message = dict[str, Any]


class CountingApp:
    """Counts each generation request's response status; answers /_seen itself."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()
        self.bodies: list[Any] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in ("/_seen", "/_bodies"):
            body = json.dumps(self.counts if scope["path"] == "/_seen" else self.bodies).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        counted = scope["path"].endswith("completions")
        chunks: list[bytes] = []

        async def recording_receive() -> Message:
            message: Message = await receive()
            if counted and message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    try:
                        self.bodies.append(json.loads(b"".join(chunks)))
                    except ValueError:
                        self.bodies.append(None)
            return message

        async def counting_send(message: Message) -> None:
            if counted and message["type"] == "http.response.start":
                self.counts["requests"] += 1
                self.counts[str(message["status"])] += 1
            await send(message)

        await self.app(scope, recording_receive, counting_send)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--rpm", type=int)
    parser.add_argument("--tpm", type=int)
    parser.add_argument("--first-token-s", type=float, default=0.0)
    parser.add_argument("--token-s", type=float, default=0.0)
    parser.add_argument("--fault-wrong-usage", type=float, default=0.0)
    args = parser.parse_args()
    settings = ServerSettings(
        backend="simulated",
        port=args.port,
        api_key=args.api_key,
        profile="managed-compute",
        requests_per_minute=args.rpm,
        tokens_per_minute=args.tpm,
        simulated_first_token_s=args.first_token_s,
        simulated_token_s=args.token_s,
        fault_wrong_usage=args.fault_wrong_usage,
    )
    uvicorn.run(CountingApp(build_app(settings)), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
