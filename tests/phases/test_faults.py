"""Faults during apply: each leaves the database as it was before the batch (or resumable), the ledger
telling what happened, and a rerun succeeding."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psycopg
import pytest

from runbook_lib.db import embedded, ledger
from runbook_lib.db.connection import with_database
from runbook_lib.errors import MigrationFailed
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply


def batch_folder(root: Path, sql: str, number: int = 1) -> Path:
    folder = root / "migrations" / f"{number:03d}_change"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text(textwrap.dedent(sql))
    return root / "migrations"


def columns(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT column_name, is_nullable FROM information_schema.columns"
            " WHERE table_name = 'item' ORDER BY ordinal_position"
        ).fetchall()


def constraints(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = 'item'::regclass AND contype = 'c' ORDER BY 1"
            )
        ]


def last_apply(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT status, message, steps_done, steps_total FROM runbook.phase_run"
            " WHERE phase = 'apply' ORDER BY id DESC LIMIT 1"
        ).fetchone()


def wait_for(url: str, query_like: str, timeout: float = 20.0) -> int:
    """The pid of the backend running a query like `query_like`."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid() AND state = 'active'",
                (query_like,),
            ).fetchone()
            if row:
                return row[0]
            time.sleep(0.05)
    raise AssertionError(f"no backend ran {query_like!r} within {timeout} s")


def wait_gone(url: str, pid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if not conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                return
            time.sleep(0.05)
    raise AssertionError(f"backend {pid} still there after {timeout} s")


@pytest.fixture
def item_db(empty_db: str) -> str:
    with psycopg.connect(empty_db) as conn:
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, a int, b int)")
        conn.execute("INSERT INTO item SELECT g, g, g FROM generate_series(1, 1000) g")
    return empty_db


def test_backend_terminated_mid_migration_leaves_nothing_and_a_rerun_succeeds(item_db: str, tmp_path: Path) -> None:
    migrations = batch_folder(
        tmp_path,
        """\
        ALTER TABLE item ADD COLUMN c int;
        SELECT pg_sleep(2);
        ALTER TABLE item ALTER COLUMN a SET NOT NULL;
        """,
    )
    before = columns(item_db)

    def terminate() -> None:
        pid = wait_for(item_db, "SELECT pg_sleep(2)%")
        with psycopg.connect(item_db, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))

    killer = threading.Thread(target=terminate)
    killer.start()
    with pytest.raises(MigrationFailed, match=r"57P01|terminat"):
        apply.run(open_session(1, database_url=item_db, migrations_dir=migrations, reports_dir=tmp_path / "r"))
    killer.join()
    assert columns(item_db) == before
    status, message, *_ = last_apply(item_db)
    assert status == "failed" and "terminat" in message
    again = apply.run(open_session(1, database_url=item_db, migrations_dir=migrations, reports_dir=tmp_path / "r"))
    assert again.status == "applied" and ("c", "YES") in columns(item_db)


def test_statement_timeout_stops_a_slow_statement_cleanly(item_db: str, tmp_path: Path) -> None:
    migrations = batch_folder(
        tmp_path,
        """\
        ALTER TABLE item ADD COLUMN c int;
        SELECT pg_sleep(3);
        """,
    )
    before = columns(item_db)
    session = open_session(1, database_url=item_db, migrations_dir=migrations, reports_dir=tmp_path / "r")
    with pytest.raises(MigrationFailed, match="57014"):
        apply.run(session, statement_timeout_ms=300)
    assert columns(item_db) == before
    assert last_apply(item_db)[0] == "failed"
    assert apply.run(session, statement_timeout_ms=10_000).status == "applied"


_CHILD = """
import sys
import time
from runbook_lib.execution import executor
from runbook_lib.phases import apply
from runbook_lib.execution.session import open_session
# the fault, injected from outside the migration path: a pause after step 1 commits, for the kill
executor.AFTER_STEP_HOOKS.append(lambda step: time.sleep(60) if step == 1 else None)
apply.run(open_session(1, database_url=sys.argv[1], migrations_dir=sys.argv[2], reports_dir=sys.argv[3]),
          strategy="online", lock_timeout_ms=100, max_attempts=1000)
"""


def test_sigkill_between_online_steps_is_found_cleaned_up_and_resumed(item_db: str, tmp_path: Path) -> None:
    migrations = batch_folder(
        tmp_path,
        """\
        ALTER TABLE item ALTER COLUMN a SET NOT NULL;
        ALTER TABLE item ALTER COLUMN b SET NOT NULL;
        """,
    )
    # Killed after step 1 (CHECK ... NOT VALID) committed and before step 2 (VALIDATE) of the same group.
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, item_db, str(migrations), str(tmp_path / "r")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while "item_a_not_null_rb" not in constraints(item_db):
            assert time.monotonic() < deadline and child.poll() is None, "step 1 never committed"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    with psycopg.connect(item_db) as conn:
        conn.execute("SELECT 1")
    assert last_apply(item_db)[0] == "running"  # what a killed process leaves behind
    result = apply.run(
        open_session(1, database_url=item_db, migrations_dir=migrations, reports_dir=tmp_path / "r"), strategy="online"
    )
    assert result.status == "applied"
    assert any(c.startswith("leftover: ") and "item_a_not_null_rb" in c for c in result.cleanup), result.cleanup
    assert "interrupted" in result.message
    assert columns(item_db) == [("id", "NO"), ("a", "NO"), ("b", "NO")]
    assert constraints(item_db) == []
    with psycopg.connect(item_db) as conn:
        statuses = [
            r[0] for r in conn.execute("SELECT status FROM runbook.phase_run WHERE phase = 'apply' ORDER BY id")
        ]
    assert statuses == ["interrupted", "succeeded"]


def test_server_stopped_and_started_mid_migration(tmp_path: Path) -> None:
    state = tmp_path / "own-server"
    server = embedded.start(state, stop_at_exit=False)
    try:
        url = with_database(server.url, "postgres")
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE item (id int PRIMARY KEY, a int, b int)")
        migrations = batch_folder(
            tmp_path,
            """\
            ALTER TABLE item ADD COLUMN c int;
            SELECT pg_sleep(5);
            """,
        )

        def restart() -> None:
            wait_for(url, "SELECT pg_sleep(5)%")
            embedded.stop(state)

        stopper = threading.Thread(target=restart)
        stopper.start()
        with pytest.raises(MigrationFailed):
            apply.run(open_session(1, database_url=url, migrations_dir=migrations, reports_dir=tmp_path / "r"))
        stopper.join()
        embedded.start(state, stop_at_exit=False)
        assert ("c", "YES") not in columns(url)
        assert last_apply(url)[0] in ("running", "failed")  # 'running' when the server was down for the ledger too
        again = apply.run(open_session(1, database_url=url, migrations_dir=migrations, reports_dir=tmp_path / "r"))
        assert again.status == "applied" and ("c", "YES") in columns(url)
        with psycopg.connect(url) as conn:
            assert not [r for r in conn.execute("SELECT status FROM runbook.phase_run WHERE status = 'running'")]
            assert ledger.state(conn, 1).applied
    finally:
        embedded.stop(state)
