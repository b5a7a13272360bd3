"""Runs that stop part way: a rollback resumes as an apply does, status names what is stopped or at work,
and a resumed run may change the steps still to run but never the ones committed."""

from __future__ import annotations

import contextlib
import io
import re
import threading
import time
from pathlib import Path

import psycopg
import pytest

from runbook_lib import cli, commands
from runbook_lib.db import ledger
from runbook_lib.errors import DriftError, MigrationFailed, RunStopped
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, rollback
from runbook_lib.report import records, terminal

TWO_INDEXES = (
    "CREATE TABLE t (id int PRIMARY KEY, a int, b int);\n"
    "CREATE INDEX CONCURRENTLY t_a ON t (a);\n"
    "CREATE INDEX CONCURRENTLY t_b ON t (b);\n"
)
UNDO_TWO_INDEXES = "DROP INDEX CONCURRENTLY t_a;\nDROP INDEX CONCURRENTLY t_b;\nDROP TABLE t;\n"


def _batch(root: Path, sql: str, rollback_sql: str | None = None, number: int = 1) -> Path:
    folder = root / "migrations" / f"{number:03d}_change"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "migration.sql").write_text(sql)
    if rollback_sql is not None:
        (folder / "rollback.sql").write_text(rollback_sql)
    return root / "migrations"


def _session(url: str, migrations: Path, tmp_path: Path, number: int = 1):
    return open_session(number, database_url=url, migrations_dir=migrations, reports_dir=tmp_path / "r")


def _indexes(url: str, table: str = "t") -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,))}


def _sql(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def _row(url: str, migrations: Path, number: int = 1) -> commands.BatchStatus:
    return next(r for r in commands.status(commands.target(url), migrations) if r.number == number)


def _status_out(url: str, migrations: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["status", "--database-url", url, "--migrations-dir", str(migrations)]) == 0
    return out.getvalue()


def test_a_rollback_stopped_part_way_is_named_blocks_apply_and_resumes(empty_db: str, tmp_path: Path) -> None:
    migrations = _batch(tmp_path, TWO_INDEXES, UNDO_TWO_INDEXES)
    apply.run(_session(empty_db, migrations, tmp_path))
    _sql(empty_db, "DROP INDEX t_b")  # the rollback's step 2 will fail: its step 1 commits and stays
    failing = _session(empty_db, migrations, tmp_path)
    with pytest.raises(MigrationFailed, match=r"stopped at step 2 .* of 3; step 1 was committed and stays"):
        rollback.run(failing)
    assert _indexes(empty_db) == {"t_pkey"}
    # the headline gives the message whole: its end is what stays and what a rerun does
    said = terminal.execution_lines(failing.run.read("rollback", records.ExecutionResult))[1]
    assert said.endswith("step 1 was committed and stays (a rerun resumes after step 1)"), said

    row = _row(empty_db, migrations)
    assert row.part_rolled_back == "its rollback stopped after step 1 of 3: `runbook rollback 1` finishes it"
    assert re.search(
        r"^\s+1\s+001_change\s+PART ROLLED BACK: its rollback stopped after step 1 of 3",
        _status_out(empty_db, migrations),
        re.M,
    )
    # the batch is neither applied nor rolled back: apply says so instead of "already applied, nothing to do"
    with pytest.raises(
        RunStopped,
        match=r"A rollback of batch 1 \(run .*\) stopped after step 1 of 3, so the batch "
        r"is only partly rolled back; finish it with `runbook rollback 1`",
    ):
        apply.run(_session(empty_db, migrations, tmp_path))

    _sql(empty_db, "CREATE INDEX t_b ON t (b)")  # the data fixed: the rerun goes on at step 2, not at step 1
    done = rollback.run(_session(empty_db, migrations, tmp_path))
    assert done.status == "rolled back" and done.resumed.startswith("an earlier rollback (run ")
    assert "stopped after step 1 of 3; went on from there" in done.resumed
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('t')").fetchone()[0] is None
    row = _row(empty_db, migrations)
    assert not row.applied and row.part_rolled_back == "" and row.part_applied == ""
    assert apply.run(_session(empty_db, migrations, tmp_path)).status == "applied"  # from the start
    assert _indexes(empty_db) == {"t_pkey", "t_a", "t_b"}


def test_a_resumed_apply_may_fix_the_failed_step_but_not_change_a_committed_one(empty_db: str, tmp_path: Path) -> None:
    _sql(empty_db, "CREATE TABLE item (id int PRIMARY KEY, a int)")
    committed = "CREATE INDEX CONCURRENTLY item_a ON item (a);\n"
    migrations = _batch(
        tmp_path, committed + "ALTER TABLE item ADD COLUMN c int;\nALTER TABLE item ALTER COLUMN nosuch SET NOT NULL;\n"
    )
    with pytest.raises(MigrationFailed, match="step 1 was committed and stays"):
        apply.run(_session(empty_db, migrations, tmp_path))
    assert _indexes(empty_db, "item") == {"item_pkey", "item_a"}

    file = migrations / "001_change" / "migration.sql"
    file.write_text(
        "CREATE INDEX CONCURRENTLY item_a ON item (a, id);\n"
        "ALTER TABLE item ADD COLUMN c int;\nALTER TABLE item ALTER COLUMN a SET NOT NULL;\n"
    )
    with pytest.raises(
        DriftError,
        match=r"001_change/migration.sql changed since an earlier apply stopped after "
        r"step 1 of 2: step 1 \(.*\), which it committed, now reads otherwise; "
        r"restore the statements of steps 1 to 1",
    ):
        apply.run(_session(empty_db, migrations, tmp_path))

    file.write_text(committed + "ALTER TABLE item ADD COLUMN c int;\nALTER TABLE item ALTER COLUMN a SET NOT NULL;\n")
    done = apply.run(_session(empty_db, migrations, tmp_path))
    assert done.status == "applied" and done.resumed.startswith("an earlier apply (run ")
    with psycopg.connect(empty_db) as conn:
        assert (
            conn.execute(
                "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'item' AND column_name = 'a'"
            ).fetchone()[0]
            == "NO"
        )
        # the ledger records the file as it is now: the batch it applied is this one
        assert (
            conn.execute(
                "SELECT checksum FROM runbook.phase_run WHERE phase = 'apply' AND status = 'succeeded'"
            ).fetchone()[0]
            == _session(empty_db, migrations, tmp_path).batch.checksum
        )
    assert _row(empty_db, migrations).applied


def test_status_names_the_apply_at_work_and_not_a_dead_run(empty_db: str, tmp_path: Path) -> None:
    _sql(empty_db, "CREATE TABLE item (id int PRIMARY KEY, a int)")
    migrations = _batch(tmp_path, "ALTER TABLE item ADD COLUMN c int;\n")
    _batch(tmp_path, "CREATE INDEX CONCURRENTLY item_a ON item (a);\nSELECT pg_sleep(4);\n", number=2)
    apply.run(_session(empty_db, migrations, tmp_path))
    # what a runbook killed an hour ago leaves: batch 1's rollback still 'running', its first step committed
    _sql(
        empty_db,
        "INSERT INTO runbook.phase_run (run_id, batch, batch_name, phase, status, started_at, steps_done,"
        " steps_total) VALUES ('dead', 1, '001_change', 'rollback', 'running', now() - interval '1 hour',"
        " 1, 2)",
    )
    worker = threading.Thread(target=lambda: apply.run(_session(empty_db, migrations, tmp_path, 2)))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "1 of 2" not in _row(empty_db, migrations, 2).in_progress:
            time.sleep(0.1)
        row = _row(empty_db, migrations, 2)
        assert re.fullmatch(
            r"apply run \S+ by \S+.* since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+, 1 of 2 steps committed", row.in_progress
        ), row.in_progress
        assert not row.applied
        # the dead rollback is neither at work nor (while a runbook holds the lock) known to be dead
        first = _row(empty_db, migrations)
        assert first.in_progress == "" and first.part_rolled_back == "" and first.applied
        assert re.search(r"^\s+2\s+002_change\s+IN PROGRESS: apply run ", _status_out(empty_db, migrations), re.M)
        # a role that may not see when the lock's holder connected (pg_stat_activity hides it): the newest row
        with psycopg.connect(empty_db) as conn:
            unseen = ledger.live(conn, None)
        assert unseen is not None and (unseen.batch, unseen.phase) == (2, "apply")
    finally:
        worker.join()
    row = _row(empty_db, migrations, 2)
    assert row.applied and row.in_progress == ""
    # with no runbook at work, the row left 'running' is a rollback that died after its first step
    assert _row(empty_db, migrations).part_rolled_back.startswith("its rollback stopped after step 1 of 2")
    # one that died before committing a step changed nothing: the batch is applied
    _sql(empty_db, "UPDATE runbook.phase_run SET steps_done = 0 WHERE run_id = 'dead'")
    first = _row(empty_db, migrations)
    assert first.applied and first.part_rolled_back == ""
