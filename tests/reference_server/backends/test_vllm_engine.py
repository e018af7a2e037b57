"""The vLLM backend's own refusals, before any engine starts (the HTTP behaviour is in test_http_model.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_server.backends.vllm_engine import create_vllm_backend

pytestmark = pytest.mark.vllm


@pytest.fixture(autouse=True)
def _needs_vllm() -> None:
    pytest.importorskip("vllm")


def test_an_unknown_engine_argument_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bogus_setting"):
        create_vllm_backend(tmp_path, engine_args={"bogus_setting": 1, "tensor_parallel_size": 1})


def test_a_directory_without_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        create_vllm_backend(tmp_path, engine_args={"tensor_parallel_size": 1})
