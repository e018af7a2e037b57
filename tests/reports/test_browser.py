"""report.html in real headless Chromium: it lays out, shows the verdict in colour, and logs no console errors."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from reports.model import Report
from reports.render_html import render_html
from tests.reports.conftest import ENVIRONMENT, PROFILE, read_fixture

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install -y chromium)"),
]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # Nothing resolves: a page that needed the network would show it as missing content, not fetch it.
    "--host-resolver-rules=MAP * ~NOTFOUND",
]
WIDTH, HEIGHT = 1280, 2000
FAIL_RED = np.array([0xB9, 0x1C, 0x1C]) / 255  # --fail in the page's CSS: the FAIL verdict box


def _chromium(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page for the three fixtures (a FAIL with evidence, two load scenarios), rendered once."""
    report = Report.from_parts(
        read_fixture("conformance.json"),
        [read_fixture("load_throughput.json"), read_fixture("load_rate_limit.json")],
        PROFILE,
        environment=ENVIRONMENT,
    )
    path = tmp_path_factory.mktemp("browser") / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    return path


def test_screenshot_shows_the_red_verdict_and_no_console_errors(page: Path, tmp_path: Path) -> None:
    screenshot = tmp_path / "report.png"
    result = _chromium(
        tmp_path,
        "--enable-logging=stderr",
        "--v=0",
        f"--screenshot={screenshot}",
        f"--window-size={WIDTH},{HEIGHT}",
        page.as_uri(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, "\n".join(console)

    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", png[16:24]) == (WIDTH, HEIGHT)
    assert len(png) > 100_000, "a page of tables and plots compresses to far more than this"
    pixels = imread(screenshot)[..., :3]
    top = pixels[: HEIGHT // 5]
    red = np.all(np.abs(top - FAIL_RED) < 0.02, axis=-1).mean()
    assert red > 0.01, "the FAIL verdict box is not in the top fifth of the page"
    colours = np.unique((pixels * 255).round().astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32))
    assert len(colours) > 500, "the page looks blank"


def test_dom_parses_with_every_section(page: Path, tmp_path: Path) -> None:
    result = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert result.returncode == 0, result.stderr[-3000:]
    dom = result.stdout
    for marker in ('class="verdict verdict-fail"', 'id="rule-usage.total_is_sum"', 'id="load"', 'id="environment"'):
        assert marker in dom
    assert dom.count("<img ") == 6
