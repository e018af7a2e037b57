"""A slowloris wave: idle sockets, headers a byte at a time, bodies a byte at a time, all at once.

Every slow connection must be cut within its deadline (header_timeout_s from opening, body_timeout_s
from its headers; one second of slack for scheduling) while an ordinary client is still served.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from launch import ReferenceServer
from tests.stress.figures import idle_cpu_percent, record, scaled

pytestmark = pytest.mark.stress
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 3.0
SLACK_S = 1.0


@pytest.fixture(scope="module")
def deadline_server() -> Iterator[ReferenceServer]:
    flags = [
        "--backend",
        "simulated",
        "--header-timeout-s",
        str(HEADER_TIMEOUT_S),
        "--body-timeout-s",
        str(BODY_TIMEOUT_S),
    ]
    with ReferenceServer(flags) as server:
        yield server


async def _slow(server: ReferenceServer, kind: str) -> tuple[str, float, bytes]:
    """One slow client; how long until the server cut it, and what it answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    opened = time.monotonic()
    body = json.dumps({"prompt": "hello", "max_tokens": 2}).encode()
    head = (
        f"POST /v1/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {server.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    trickle = {"idle": b"", "headers": head, "body": body}[kind]
    if kind == "body":
        writer.write(head)
    answer = b""

    async def dribble() -> None:
        for byte in trickle:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.5)

    sender = asyncio.create_task(dribble())
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), timeout=60):
            answer += chunk
    except (ConnectionError, TimeoutError):
        pass
    cut_after = time.monotonic() - opened
    sender.cancel()
    writer.close()
    return kind, cut_after, answer


async def _ordinary(server: ReferenceServer, until: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
        while not until.is_set():
            started = time.monotonic()
            response = await client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2})
            assert response.status_code == 200
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.05)
    return latencies


async def _wave(server: ReferenceServer, per_kind: int) -> tuple[list[tuple[str, float, bytes]], list[float]]:
    done = asyncio.Event()
    ordinary = asyncio.create_task(_ordinary(server, done))
    slow = await asyncio.gather(*(_slow(server, kind) for kind in ("idle", "headers", "body") for _ in range(per_kind)))
    done.set()
    return slow, await ordinary


def test_a_slowloris_wave_is_cut_within_the_deadlines(deadline_server: ReferenceServer) -> None:
    per_kind = int(scaled(200, 20))
    slow, latencies = asyncio.run(_wave(deadline_server, per_kind))
    limits = {"idle": HEADER_TIMEOUT_S, "headers": HEADER_TIMEOUT_S, "body": BODY_TIMEOUT_S}
    late = [(kind, cut) for kind, cut, _ in slow if cut > limits[kind] + SLACK_S]
    answers = {
        kind: sorted({answer.split(b" ", 2)[1].decode() if answer else "closed" for k, _, answer in slow if k == kind})
        for kind in limits
    }
    worst = {kind: max(cut for k, cut, _ in slow if k == kind) for kind in limits}
    record(
        "slowloris wave",
        f"{len(slow)} slow connections ({per_kind} idle, {per_kind} slow headers, {per_kind} slow bodies; deadlines "
        f"{HEADER_TIMEOUT_S:g} s / {BODY_TIMEOUT_S:g} s): longest held "
        f"{', '.join(f'{kind} {held:.2f} s' for kind, held in worst.items())}; "
        f"answers {answers}; late {len(late)}; an ordinary client meanwhile: {len(latencies)} requests, "
        f"slowest {max(latencies) * 1000:.0f} ms; idle CPU {idle_cpu_percent():.0f} %",
    )
    assert not late, late[:10]
    assert answers == {"idle": ["closed"], "headers": ["408"], "body": ["408"]}
    assert max(latencies) < 1.0
