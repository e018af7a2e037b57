"""The installed distribution holds every file of the packages it ships.

`pip install llamacert` must give a command that runs: a subpackage or data file left out of the wheel
(conformance.rules once was) breaks an installed copy while every test run from the checkout still
passes, because the checkout's own directories are what those tests import. tox installs the project
from its sdist, not editable, so there this test reads what was really installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

from tests.test_layers import LAYERS, ROOT

SHIPPED = sorted(package for package in LAYERS if package != "benchmarks")
"""The top-level packages the wheel carries; benchmarks run from a checkout only."""


def _installed() -> metadata.Distribution:
    """The copy in site-packages: a build's llamacert.egg-info in the checkout would otherwise be found first."""
    found = list(metadata.distributions(name="llamacert", path=[sysconfig.get_paths()["purelib"]]))
    if not found:
        pytest.skip("llamacert is not installed in this environment")
    return found[0]


def _editable(distribution: metadata.Distribution) -> bool:
    direct_url = distribution.read_text("direct_url.json")
    return direct_url is not None and bool(json.loads(direct_url).get("dir_info", {}).get("editable"))


def _tracked_files() -> set[str]:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    listed = subprocess.run(
        [git, "ls-files", "--", *SHIPPED], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return {line for line in listed.stdout.splitlines() if line}


def test_the_installed_distribution_holds_every_tracked_file_of_its_packages() -> None:
    distribution = _installed()
    if _editable(distribution):
        pytest.skip("an editable install runs the checkout itself; tox installs the sdist, where this runs")
    installed = {str(path) for path in distribution.files or ()}
    missing = sorted(_tracked_files() - installed)
    assert not missing, f"the installed llamacert lacks {len(missing)} file(s) of its packages: {missing[:20]}"


def test_the_installed_command_imports_its_rules_outside_the_checkout(tmp_path: Path) -> None:
    """Run from an empty directory, so the checkout cannot stand in for the installed packages."""
    distribution = _installed()
    if _editable(distribution):
        pytest.skip("an editable install runs the checkout itself; tox installs the sdist, where this runs")
    script = "import conformance.rules, perf.capacity, llamacert.cli; print(len(conformance.rules.registry.RULES))"
    answer = subprocess.run(
        [sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert answer.returncode == 0, answer.stderr[-2000:]
    assert int(answer.stdout.strip()) > 0
