"""A trivial Llama API endpoint on raw asyncio: canned answers as fast as one core can send them.

It exists to measure the load generator, not a server (`benchmarks/harness_capacity.py`), and to give the perf
tests an endpoint whose every answer is known: N tokens of one word each (N = max_tokens), usage always
(unless --no-usage), optional delays between stream events, a 429 for every K-th request (--reject-every),
and GET /stats with what it saw. It is no conformance reference: the reference server is `llamacert serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from spec.sse import DONE_EVENT, encode_event

__all__ = ["ServerConfig", "main", "serve"]


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    tokens_per_event: int = 1
    token_delay_s: float = 0.0
    reject_every: int = 0
    usage: bool = True
    limit_rpm: int | None = None
    seen: dict[str, int] = field(default_factory=lambda: {"requests": 0, "rejected": 0, "ok": 0})


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 429: b"Too Many Requests"}


def _response(status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Error")), b"content-type: application/json"]
    lines += [f"{name}: {value}".encode() for name, value in headers]
    lines.append(b"content-length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@functools.cache
def _completion(chat: bool, tokens: int, usage: bool) -> bytes:
    text = " word" * tokens
    choice: dict[str, Any] = (
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
        if chat
        else {"index": 0, "text": text, "finish_reason": "length"}
    )
    body: dict[str, Any] = {
        "id": "trivial",
        "object": "chat.completion" if chat else "text_completion",
        "created": 0,
        "model": "trivial",
        "choices": [choice],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}
    return json.dumps(body).encode()


@functools.cache
def _events(chat: bool, tokens: int, per_event: int, usage: bool) -> tuple[bytes, ...]:
    base: dict[str, Any] = {
        "id": "trivial",
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": 0,
    }
    events = []
    for start in range(0, tokens, per_event):
        count = min(per_event, tokens - start)
        last = start + count >= tokens
        text = " word" * count
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length" if last else None}
        choice.update({"delta": {"content": text}} if chat else {"text": text})
        events.append({**base, "choices": [choice]})
    if usage:
        events.append(
            {
                **base,
                "choices": [],
                "usage": {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens},
            }
        )
    return (*(encode_event(json.dumps(event)).encode() for event in events), DONE_EVENT.encode())


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class _Connection(asyncio.Protocol):
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy is not None:
            self.busy.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        # Requests on one connection are answered in order; a delayed stream holds the rest back.
        if self.busy is None:
            self._serve_buffered()

    def _serve_buffered(self) -> None:
        while self.transport is not None and not self.transport.is_closing():
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self.buffer[:head_end]).decode("latin-1")
            request_line, *header_lines = head.split("\r\n")
            length = 0
            for line in header_lines:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < head_end + 4 + length:
                return
            body = bytes(self.buffer[head_end + 4 : head_end + 4 + length])
            del self.buffer[: head_end + 4 + length]
            method, path, *_ = request_line.split(" ")
            delayed = self._answer(method, path, body)
            if delayed is not None:
                self.busy = asyncio.get_running_loop().create_task(delayed)
                self.busy.add_done_callback(self._resume)
                return

    def _resume(self, _: asyncio.Task[None]) -> None:
        self.busy = None
        self._serve_buffered()

    def _answer(self, method: str, path: str, body: bytes) -> Any:
        assert self.transport is not None
        config, seen = self.config, self.config.seen
        if method == "GET" and path == "/stats":
            self.transport.write(_response(200, json.dumps(seen).encode()))
            return None
        if method == "GET" and path == "/info":
            info = {"model_name": "trivial", "model_type": "chat-completion", "model_provider_name": "llamacert"}
            self.transport.write(_response(200, json.dumps(info).encode()))
            return None
        chat = path.endswith("/chat/completions")
        if method != "POST" or not (chat or path.endswith("/completions")):
            self.transport.write(_response(404, b'{"error":{"code":"not_found","message":"no such route"}}'))
            return None
        seen["requests"] += 1
        limits = [] if config.limit_rpm is None else [("x-ratelimit-limit-requests", str(config.limit_rpm))]
        if config.reject_every and seen["requests"] % config.reject_every == 0:
            seen["rejected"] += 1
            error = b'{"error":{"code":"rate_limit_exceeded","message":"slow down"}}'
            self.transport.write(_response(429, error, [("retry-after", "1"), ("retry-after-ms", "1000"), *limits]))
            return None
        try:
            request = json.loads(body)
            tokens = int(request.get("max_tokens", 16))
        except (ValueError, AttributeError, TypeError):
            self.transport.write(_response(400, b'{"error":{"code":"invalid_request","message":"bad body"}}'))
            return None
        seen["ok"] += 1
        if not request.get("stream"):
            self.transport.write(_response(200, _completion(chat, tokens, config.usage), limits))
            return None
        events = _events(chat, tokens, config.tokens_per_event, config.usage)
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
        head += b"".join(f"{name}: {value}\r\n".encode() for name, value in limits) + b"\r\n"
        if config.token_delay_s <= 0:
            self.transport.write(head + b"".join(_chunk(event) for event in events) + b"0\r\n\r\n")
            return None
        return self._stream_slowly(head, events)

    async def _stream_slowly(self, head: bytes, events: Sequence[bytes]) -> None:
        assert self.transport is not None
        self.transport.write(head)
        for event in events:
            await asyncio.sleep(self.config.token_delay_s)
            self.transport.write(_chunk(event))
        self.transport.write(b"0\r\n\r\n")


async def serve(config: ServerConfig, ready: asyncio.Event | None = None) -> None:
    """Serve until cancelled; prints `listening on PORT` (the bound port, for port 0) when ready."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(config), config.host, config.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on {port}", flush=True)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trivial_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens-per-event", type=int, default=1)
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between stream events")
    parser.add_argument("--reject-every", type=int, default=0, help="answer every K-th request with 429")
    parser.add_argument("--no-usage", action="store_true")
    parser.add_argument("--limit-rpm", type=int, help="announce this in x-ratelimit-limit-requests")
    args = parser.parse_args(argv)
    config = ServerConfig(
        host=args.host,
        port=args.port,
        tokens_per_event=args.tokens_per_event,
        token_delay_s=args.token_delay,
        reject_every=args.reject_every,
        usage=not args.no_usage,
        limit_rpm=args.limit_rpm,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
