"""The bottom layer for processes: the project environment, managed subprocesses, the one server launcher.

Nothing here imports the servers, the suites or the CLI; they all start processes through this package.
"""

from __future__ import annotations

from launch.environment import PROJECT_ROOT, project_environment
from launch.process import ManagedProcess, free_loopback_port
from launch.reference import ReferenceServer

__all__ = ["PROJECT_ROOT", "ManagedProcess", "ReferenceServer", "free_loopback_port", "project_environment"]
