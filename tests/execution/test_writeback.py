"""Past a checkpoint's worth of WAL, the backfill's session writes back what it dirties (execution.writeback)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from runbook_lib import cli
from runbook_lib.config import Options
from runbook_lib.errors import MigrationFailed, RunbookError
from runbook_lib.execution import backfill
from runbook_lib.execution.session import open_session
from runbook_lib.execution.walrate import MB
from runbook_lib.execution.writeback import Writeback
from runbook_lib.phases import apply
from runbook_lib.report import summary, terminal


def _show(conn: psycopg.Connection) -> str:
    value = conn.execute("SHOW backend_flush_after").fetchone()[0]
    conn.commit()
    return value


def test_from_its_threshold_on_the_session_writes_back_what_it_dirties(empty_db: str) -> None:
    with psycopg.connect(empty_db) as conn:
        wb = Writeback(from_mb=1)
        wb.add(conn, MB // 2)
        assert _show(conn) == "0" and wb.since_mb is None
        wb.add(conn, MB // 2 + 100_000)  # 1.1 MB: past it
        assert _show(conn) == "256kB"
        assert (wb.since_mb, wb.setting, wb.kept, wb.threshold_mb) == (1.1, "256kB", False, 1.0)
        assert wb.threshold == "--batch-flush-from-mb 1"
        conn.execute("SET backend_flush_after = 0")  # once set, never asked again in this migration
        wb.add(conn, 5 * MB)
        assert _show(conn) == "0" and wb.since_mb == 1.1 and wb.written == 6 * MB + 100_000


def test_a_session_that_already_writes_back_is_left_as_it_was(empty_db: str) -> None:
    with psycopg.connect(empty_db, options="-c backend_flush_after=64kB") as conn:  # a role's or a server's setting
        wb = Writeback(from_mb=0.5)
        wb.add(conn, MB)
        assert _show(conn) == "64kB" and (wb.since_mb, wb.setting, wb.kept) == (1.0, "64kB", True)


def test_by_default_the_threshold_is_the_servers_checkpoint_distance_and_0_is_never(empty_db: str) -> None:
    with psycopg.connect(empty_db) as conn:
        expected = conn.execute(
            "SELECT pg_size_bytes(current_setting('max_wal_size')) "
            "/ (1 + current_setting('checkpoint_completion_target')::numeric) / 1e6"
        ).fetchone()[0]
        conn.commit()
        wb = Writeback()
        wb.add(conn, 10 * MB)  # well under any server's distance (max_wal_size is at least 2 WAL segments)
        assert wb.threshold_mb == pytest.approx(float(expected), abs=0.05) and wb.since_mb is None
        assert wb.threshold.startswith(f"the server's checkpoint distance, {float(expected):,.0f} MB")
        assert _show(conn) == "0"
        wb.add(conn, int(float(expected) * MB))  # past it
        assert _show(conn) == "256kB" and wb.since_mb == pytest.approx(float(expected) + 10, abs=0.1)
        never = Writeback(from_mb=0)
        conn.execute("SET backend_flush_after = 0")
        never.add(conn, 10**12)
        assert _show(conn) == "0" and never.since_mb is None and never.threshold_mb is None


def _padded_items(url: str, rows: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, pad text NOT NULL)")
        conn.execute("INSERT INTO item (id, pad) SELECT g, repeat('x', 300) FROM generate_series(1, %s) g", (rows,))


def _apply(url: str, root: Path, **options):
    folder = root / "migrations" / "001_backfill"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "migration.sql").write_text("UPDATE item SET n = n + 1, pad = repeat('y', 300) WHERE n >= 0;\n")
    session = open_session(1, database_url=url, migrations_dir=root / "migrations", reports_dir=root / "reports")
    result = apply.run(session, strategy="online", backfill_batch_ms=5, **options)
    text = summary.load(next((root / "reports").rglob("apply.json")).parent).markdown
    return result, text


def test_an_apply_past_its_threshold_says_from_which_wal_its_session_wrote_back(empty_db: str, tmp_path: Path) -> None:
    _padded_items(empty_db, 10_000)
    result, text = _apply(empty_db, tmp_path, backfill_flush_from_mb=0.5)
    [run] = result.backfills
    assert run.rows == 10_000 and run.wal_mb > 0.5
    assert run.flush_from_mb is not None and 0.5 <= run.flush_from_mb <= run.wal_mb and run.flush_setting == "256kB"
    line = next(line for line in terminal.execution_lines(result) if "written back" in line)
    assert (
        f"from {run.flush_from_mb:,.0f} MB of WAL on, pages it dirtied written back as it went "
        "(backend_flush_after 256kB, from --batch-flush-from-mb 0.5)"
    ) in line, line
    assert (
        f"From {run.flush_from_mb:,.0f} MB of WAL on (--batch-flush-from-mb 0.5), the session wrote back the pages "
        "it dirtied as it went (backend_flush_after = 256kB)"
    ) in text, text
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM item WHERE n = 1 AND pad = repeat('y', 300)").fetchone() == (10_000,)


def test_an_apply_under_the_checkpoint_distance_leaves_its_writes_to_the_kernel(empty_db: str, tmp_path: Path) -> None:
    _padded_items(empty_db, 2_000)
    result, text = _apply(empty_db, tmp_path)
    [run] = result.backfills
    assert run.flush_from_mb is None and run.flush_threshold_mb > run.wal_mb > 0
    assert "the server's checkpoint distance" in run.flush_threshold
    assert "written back" not in "\n".join(terminal.execution_lines(result)) and "wrote back" not in text


def test_a_resumed_backfill_counts_on_from_the_wal_its_stopped_run_wrote(
    empty_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _padded_items(empty_db, 10_000)
    folder = tmp_path / "migrations" / "001_backfill"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text(
        "UPDATE item SET n = n + 1, pad = repeat('y', 300) WHERE n >= 0;\nUPDATE item SET n = n + 1 WHERE id <= 300;\n"
    )

    def stop(step: int, batch: int) -> None:  # the apply's backend ended before step 2's third batch commits
        if (step, batch) == (2, 3):
            with psycopg.connect(empty_db, autocommit=True) as other:
                other.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name LIKE 'runbook apply%%' AND datname = current_database()"
                )

    def run(flush_from_mb: float):
        session = open_session(
            1, database_url=empty_db, migrations_dir=tmp_path / "migrations", reports_dir=tmp_path / "reports"
        )
        return apply.run(session, strategy="online", backfill_batch_ms=5, backfill_flush_from_mb=flush_from_mb)

    monkeypatch.setattr(backfill, "BEFORE_BATCH_COMMIT_HOOKS", [stop])
    with pytest.raises(MigrationFailed):
        run(0)
    with psycopg.connect(empty_db) as conn:
        position = conn.execute("SELECT backfill FROM runbook.phase_run ORDER BY id DESC LIMIT 1").fetchone()[0]
    # the position committed with step 2's second batch carries the migration's WAL so far: all of step 1's
    assert position["step"] == 2 and position["batches"] == 2 and position["wal"] > MB
    monkeypatch.setattr(backfill, "BEFORE_BATCH_COMMIT_HOOKS", [])
    threshold = position["wal"] / MB
    result = run(threshold)
    [resumed] = result.backfills  # step 2's rest: a few kB of WAL, far under the threshold by itself
    assert resumed.rows_before > 0 and resumed.wal_mb < threshold / 10
    assert resumed.flush_setting == "256kB" and resumed.flush_from_mb >= round(threshold, 1)
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT n, count(*) FROM item GROUP BY n ORDER BY n").fetchall() == [(1, 9_700), (2, 300)]


def test_the_threshold_is_a_number_of_mb_or_none() -> None:
    for bad in (-1, "a lot", True):
        with pytest.raises(RunbookError, match="backfill_flush_from_mb must be a number of MB, 0 or more"):
            Options(backfill_flush_from_mb=bad).checked()
    assert Options().checked().backfill_flush_from_mb is None
    assert Options(backfill_flush_from_mb=0).checked().backfill_flush_from_mb == 0.0
    args = cli.build_parser().parse_args(["run", "6", "--batch-flush-from-mb", "0"])
    assert cli._options(args).parameters("apply") == {"backfill_flush_from_mb": 0.0}  # what the notebook is given
