"""`runbook server`: a URL a person can export, `url` never starting a server, and no Python warning on the way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg


def _runbook(state: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "DATABASE_URL")}
    env["RUNBOOK_HOME"] = str(state)
    return subprocess.run(
        [sys.executable, "-m", "runbook_lib.cli", "server", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_server_start_url_and_stop_say_what_they_did_and_nothing_else(tmp_path: Path) -> None:
    state = tmp_path / "home"
    refused = _runbook(state, "url")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip() == (
        f"runbook: The embedded server under {state / 'pgdata'} is not running; "
        "`runbook server start` starts it and prints its URL."
    )
    assert not (state / "pgdata" / "postmaster.pid").exists()  # asking for the URL started nothing
    try:
        started = _runbook(state, "start")
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip()
        assert url.startswith("postgresql://postgres@/crm?host=") and started.stderr == ""
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == "crm"
        again = _runbook(state, "url")
        assert again.returncode == 0 and again.stdout.strip() == url and again.stderr == ""
    finally:
        stopped = _runbook(state, "stop")
    # before, stopping imported the wheel before XDG_RUNTIME_DIR was set: platformdirs' RuntimeDirWarning
    assert stopped.returncode == 0 and stopped.stdout.strip() == "embedded server stopped"
    assert stopped.stderr == ""
