"""The shared report in a real browser: headless Chromium renders summary.html; the key figures are on the page."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from runbook_lib import cli, config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Chromium is not installed (apt-get install chromium; make test installs it where it can)",
    ),
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
]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_summary_renders_in_chromium_with_its_key_figures(crm_url: str, tmp_path: Path) -> None:
    assert (
        cli.main(
            [
                "run",
                "6",
                "--database-url",
                crm_url,
                "--reports-dir",
                str(tmp_path / "reports"),
                "--migrations-dir",
                str(config.example_migrations_dir()),
            ]
        )
        == 0
    )
    run_dir = next((tmp_path / "reports").glob("*/6/*"))
    page = run_dir / "summary.html"

    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = re.sub(r"<[^>]+>", " ", dom.stdout)
    text = " ".join(text.split())
    passed = re.search(r"(\d+)/(\d+) tests passed \(100%", text)
    assert passed and passed.group(1) == passed.group(2), "the X/Y figure is not on the rendered page"
    assert "Batch 6 Migration Summary: COMPLETED" in text
    assert "Migration Timeline" in text and "T+0.000s" in text
    assert "open_session" not in text  # no code in the shared report
    assert re.search(r"<svg\b[^>]*role=\"img\"", dom.stdout)  # the timeline chart, inline SVG in the page
    assert "Batch 6: statements and the locks they took (measured)" in text

    shot = run_dir / "summary.png"
    result = _chromium(tmp_path, "--window-size=1200,2000", f"--screenshot={shot}", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
