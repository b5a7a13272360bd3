"""apply and rollback under pressure: concurrency, blockers, failures, the online strategy, Prisma."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest

from runbook_lib import config
from runbook_lib.db import catalog, ledger
from runbook_lib.errors import LockBusy, MigrationFailed
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, rollback

TABLES = ["Customer", "Lead", "Job"]


def catalog_state(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        snap = catalog.snapshot(conn, TABLES)
    return tuple(dataclasses.replace(t, bytes=0) for t in snap.tables)


@pytest.fixture
def open_for(crm_url: str, tmp_path: Path):
    def make(batch: int, migrations_dir: Path | None = None):
        return open_session(
            batch,
            database_url=crm_url,
            reports_dir=tmp_path / "reports",
            migrations_dir=migrations_dir or config.example_migrations_dir(),
        )

    return make


@pytest.fixture
def after_6(open_for):
    apply.run(open_for(6))
    return open_for


def copy_examples(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(config.example_migrations_dir(), target)
    return target


class Blocker:
    """A session idle in a transaction after reading "Lead": it holds ACCESS SHARE until released."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, application_name="blocker")
        self.conn.execute('SELECT count(*) FROM "Lead"')

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


class Busy(threading.Thread):
    """A session that read "Lead" and stays busy in its transaction (pg_sleep), so apply's look before it
    queues lets it be under a high blocker_threshold_ms: the lock request then waits under lock_timeout."""

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, application_name="busy")
        self.conn.execute('SELECT count(*) FROM "Lead"')
        self.seconds = seconds
        self.start()

    def run(self) -> None:
        self.conn.execute("SELECT pg_sleep(%s)", (self.seconds,))
        self.conn.rollback()
        self.conn.close()


class Writer(threading.Thread):
    """The application: inserts a lead every 10 ms and records how long each insert waited."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.waits, self.errors = url, [], []
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            n = 0
            while not self.stop.is_set():
                n += 1
                started = time.perf_counter()
                try:
                    conn.execute(
                        'INSERT INTO "Lead" (id, customer_id, channel, name, updated_at)'
                        " VALUES (%s, (SELECT min(id) FROM \"Customer\"), 'web', 'writer', now())",
                        (f"writer_{threading.get_ident()}_{n}",),
                    )
                except psycopg.Error as exc:
                    self.errors.append(str(exc))
                self.waits.append(time.perf_counter() - started)
                time.sleep(0.01)


def test_blocked_apply_keeps_writers_moving_and_fails_cleanly(after_6, crm_url: str) -> None:
    """A lock request that is not granted (the look before it saw no blocker) waits at most lock_timeout, or
    less: the guard cancels it once a writer queues behind it (tests/phases/test_blockers.py)."""
    before = catalog_state(crm_url)
    blocker = Busy(crm_url, 3.0)
    writer = Writer(crm_url)
    writer.start()
    held_from = time.perf_counter()
    try:
        with pytest.raises(MigrationFailed, match="could not get its locks in 3 attempts"):
            apply.run(after_6(7), lock_timeout_ms=100, max_attempts=3, blocker_threshold_ms=60_000)
        blocked_for = time.perf_counter() - held_from
    finally:
        writer.stop.set()
        writer.join()
        blocker.join()
    # Lead's row count grew (the writer ran); the schema did not change.
    assert [[c.ddl for c in t.columns] for t in catalog_state(crm_url)] == [[c.ddl for c in t.columns] for t in before]
    assert not writer.errors
    # Writers queue behind the migration's pending ACCESS EXCLUSIVE only until lock_timeout gives up;
    # without it they would wait as long as the blocker holds on (blocked_for).
    worst = max(writer.waits)
    assert worst < blocked_for / 2, f"a writer waited {worst:.3f} s while the blocker held {blocked_for:.3f} s"
    with psycopg.connect(crm_url) as conn:
        row = conn.execute(
            "SELECT status, message FROM runbook.phase_run WHERE batch = 7 AND phase = 'apply' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert row[0] == "failed" and ("55P03" in row[1] or "cancelled by runbook's guard" in row[1])


def test_apply_succeeds_once_the_blocker_leaves_and_every_attempt_is_in_the_timeline(after_6, crm_url: str) -> None:
    blocker = Busy(crm_url, 0.5)
    try:
        result = apply.run(after_6(7), lock_timeout_ms=100, max_attempts=20, blocker_threshold_ms=60_000)
    finally:
        blocker.join()
    assert result.status == "applied" and result.attempts >= 2
    timeouts = [s for s in result.statements if s.status == "lock timeout"]
    assert timeouts and all("55P03" in s.error for s in timeouts)
    assert {s.attempt for s in result.statements if s.status == "ok"} == {result.attempts}


def test_two_applies_at_once_the_second_names_the_first(after_6, crm_url: str) -> None:
    blocker = Blocker(crm_url)  # keeps the first apply busy retrying, holding the migration lock
    first_error: list[BaseException] = []

    def first() -> None:
        try:
            apply.run(after_6(7), lock_timeout_ms=200, max_attempts=8)
        except BaseException as exc:  # reported below
            first_error.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.4)
    try:
        with pytest.raises(LockBusy, match=r"pid \d+ \(runbook apply batch 7"):
            apply.run(after_6(7))
    finally:
        blocker.release()
        thread.join()
    assert not first_error, first_error
    with psycopg.connect(crm_url) as conn:
        assert ledger.state(conn, 7).applied


def test_failing_middle_statement_leaves_the_database_exactly_as_it_was(after_6, crm_url: str, tmp_path: Path) -> None:
    migrations = copy_examples(tmp_path)
    path = migrations / "007_tighten_constraints" / "migration.sql"
    lines = path.read_text().replace(
        '-- AlterTable\nALTER TABLE "Job"',
        '-- AlterTable\nALTER TABLE "Job" ALTER COLUMN "no_such_column" SET NOT NULL;\n'
        '-- AlterTable\nALTER TABLE "Job"',
        1,
    )
    path.write_text(lines)
    before = catalog_state(crm_url)
    with pytest.raises(MigrationFailed, match=r"statement 4 .* failed: 42703 .*nothing changed"):
        apply.run(after_6(7, migrations))
    assert catalog_state(crm_url) == before
    with psycopg.connect(crm_url) as conn:
        status, message = conn.execute(
            "SELECT status, message FROM runbook.phase_run WHERE batch = 7 AND phase = 'apply' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert status == "failed" and 'column "no_such_column"' in message


def test_online_strategy_reaches_the_same_catalog_as_direct(
    after_6, crm_url: str, make_database, crm_template, tmp_path: Path
) -> None:
    online = apply.run(after_6(7), strategy="online")
    assert online.status == "applied" and len(online.plan) == 11
    # The scans ran under SHARE UPDATE EXCLUSIVE, which does not block writes: measured in pg_locks.
    validates = [s for s in online.statements if s.kind == "ALTER TABLE … VALIDATE CONSTRAINT"]
    assert validates and all(
        "SHARE UPDATE EXCLUSIVE" in s.locks and "ACCESS EXCLUSIVE" not in s.locks for s in validates
    )
    # ...and nothing else in those steps blocked writes while the scans ran.
    validate_steps = {s.step for s in validates}
    assert [h for h in online.locks_before_commit if h.step in validate_steps and h.blocks_writes] == []
    assert all(s.longest_write_block_s == 0 for s in online.steps if s.number in validate_steps)
    online_catalog = catalog_state(crm_url)

    other = make_database(crm_template)

    def other_session(b):
        return open_session(
            b, database_url=other, reports_dir=tmp_path / "direct", migrations_dir=config.example_migrations_dir()
        )

    apply.run(other_session(6))
    direct = apply.run(other_session(7))
    assert direct.status == "applied" and len(direct.plan) == 1
    assert catalog_state(other) == online_catalog


def test_online_failure_cleans_up_says_how_far_and_a_rerun_resumes(after_6, crm_url: str) -> None:
    with psycopg.connect(crm_url) as conn:
        conn.execute('UPDATE "Job" SET customer_id = NULL WHERE id = (SELECT min(id) FROM "Job")')
    # Job's online group is steps 5-7: step 6 (VALIDATE) fails, step 5's CHECK is removed, 1-4 stay.
    with pytest.raises(
        MigrationFailed, match=r"stopped at step 6 .* of 11; steps 1-4 were committed.*resumes after step 4"
    ):
        apply.run(after_6(7), strategy="online", force=True)
    with psycopg.connect(crm_url) as conn:
        leftovers = conn.execute("SELECT conname FROM pg_constraint WHERE conname LIKE '%%not_null_rb'").fetchall()
        assert leftovers == []  # the CHECK it added was removed
        row = conn.execute(
            "SELECT steps_done, steps_total FROM runbook.phase_run WHERE phase = 'apply' AND batch = 7"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
        assert row == (4, 11)
        conn.execute(
            'UPDATE "Job" j SET customer_id = l.customer_id FROM "Lead" l WHERE l.id = j.lead_id'
            " AND j.customer_id IS NULL"
        )
    resumed = apply.run(after_6(7), strategy="online")
    assert resumed.status == "applied"
    assert [s.status for s in resumed.steps][:5] == ["skipped"] * 4 + ["committed"]
    with psycopg.connect(crm_url) as conn:
        nullable = conn.execute(
            "SELECT is_nullable FROM information_schema.columns WHERE table_name IN ('Lead', 'Job')"
            " AND column_name = 'customer_id'"
        ).fetchall()
    assert nullable == [("NO",), ("NO",)]


def test_statements_that_cannot_run_in_a_transaction_run_alone_and_clean_up(empty_db: str, tmp_path: Path) -> None:
    with psycopg.connect(empty_db) as conn:
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, code text)")
        conn.execute("INSERT INTO item VALUES (1, 'a'), (2, 'a')")
    folder = tmp_path / "migrations" / "001_indexes"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text(
        "CREATE INDEX CONCURRENTLY item_code_idx ON item (code);\n"
        "ALTER TABLE item ADD COLUMN note text;\n"
        "CREATE UNIQUE INDEX CONCURRENTLY item_code_key ON item (code);\n"
    )
    session = open_session(1, database_url=empty_db, reports_dir=tmp_path / "r", migrations_dir=tmp_path / "migrations")
    with pytest.raises(
        MigrationFailed, match=r"stopped at step 3 .*steps 1-2 were committed.*cleaned up: DROP INDEX CONCURRENTLY"
    ):
        apply.run(session)
    with psycopg.connect(empty_db) as conn:
        indexes = dict(
            conn.execute(
                "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = 'item'::regclass"
            ).fetchall()
        )
        assert indexes == {"item_pkey": True, "item_code_idx": True}  # the invalid unique index was dropped
        assert (
            conn.execute(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'item' AND column_name = 'note'"
            ).fetchone()[0]
            == 1
        )


def test_dry_run_online_changes_nothing(after_6, crm_url: str) -> None:
    before = catalog_state(crm_url)
    result = apply.run(after_6(7), strategy="online", dry_run=True)
    assert result.status == "dry run" and len(result.plan) == 1
    assert any(c.object == 'column "customer_id"' for c in result.changes)  # measured inside, then rolled back
    assert catalog_state(crm_url) == before


def test_prisma_migrations_table_agrees(after_6, crm_url: str, open_for) -> None:
    with psycopg.connect(crm_url) as conn:
        conn.execute(
            'CREATE TABLE "_prisma_migrations" (id VARCHAR(36) PRIMARY KEY, checksum VARCHAR(64) NOT NULL,'
            " finished_at TIMESTAMPTZ, migration_name VARCHAR(255) NOT NULL, logs TEXT, rolled_back_at TIMESTAMPTZ,"
            " started_at TIMESTAMPTZ NOT NULL DEFAULT now(), applied_steps_count INTEGER NOT NULL DEFAULT 0)"
        )
    result = apply.run(after_6(7))
    assert result.prisma.action == "applied"
    expected = hashlib.sha256(
        (config.example_migrations_dir() / "007_tighten_constraints/migration.sql").read_bytes()
    ).hexdigest()
    with psycopg.connect(crm_url) as conn:
        rows = conn.execute(
            "SELECT migration_name, checksum, logs, finished_at = started_at, rolled_back_at,"
            ' applied_steps_count FROM "_prisma_migrations"'
        ).fetchall()
    # as `prisma migrate deploy` leaves a successful migration: logs NULL, its one step counted
    assert rows == [("007_tighten_constraints", expected, None, True, None, 1)]
    back = rollback.run(open_for(7))
    assert back.prisma.action == "rolled back" and back.prisma.rows == 1
    with psycopg.connect(crm_url) as conn:
        assert conn.execute('SELECT rolled_back_at IS NOT NULL FROM "_prisma_migrations"').fetchone()[0]
