"""The managed-process helper and the reference-server launcher: ready, logged, always stopped."""

from __future__ import annotations

import sys

import httpx
import pytest

from launch import ManagedProcess, ReferenceServer, free_loopback_port


def test_a_process_that_exits_early_is_reported_with_its_log() -> None:
    process = ManagedProcess([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], name="the test process")
    with pytest.raises(RuntimeError, match=r"the test process exited with status 3:\s+boom"):
        process.wait_until(lambda: False, timeout_s=30)
    assert process.stop() == 3


def test_a_process_never_ready_is_stopped_after_the_timeout() -> None:
    process = ManagedProcess([sys.executable, "-c", "import time; time.sleep(60)"], name="the sleeper")
    with pytest.raises(RuntimeError, match="was not ready within"):
        process.wait_until(lambda: False, timeout_s=0.5)
    assert not process.running()


def test_stop_ends_a_running_process_and_is_idempotent() -> None:
    with ManagedProcess([sys.executable, "-c", "import time; time.sleep(60)"], name="the sleeper") as process:
        assert process.running()
    assert not process.running()
    assert process.stop() == process.process.returncode


def test_free_loopback_ports_can_be_bound() -> None:
    import socket

    port = free_loopback_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))


@pytest.mark.slow
def test_reference_server_starts_answers_with_its_key_and_stops() -> None:
    with ReferenceServer(["--backend", "simulated"]) as server:
        headers = {"Authorization": f"Bearer {server.api_key}"}
        response = httpx.post(f"{server.url}/v1/completions", json={"prompt": "hi", "max_tokens": 2}, headers=headers)
        assert response.status_code == 200
        assert httpx.post(f"{server.url}/v1/completions", json={"prompt": "hi"}).status_code == 401
    assert not server.process.running()
