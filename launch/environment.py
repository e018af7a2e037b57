"""The environment for llamacert's own subprocesses (servers, pytest, Locust): the project importable."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PROJECT_ROOT", "project_environment"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def project_environment() -> dict[str, str]:
    """This process's environment with the project's packages importable, installed or not."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), environment.get("PYTHONPATH")]))
    return environment
