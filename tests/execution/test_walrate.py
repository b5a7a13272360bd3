"""The WAL a backfill writes, paced to a budget (execution.walrate, --batch-wal-mb-per-s)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from runbook_lib import cli
from runbook_lib.config import Options
from runbook_lib.errors import RunbookError
from runbook_lib.execution import walrate
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply
from runbook_lib.report import summary, terminal

MB = walrate.MB


class _Clock:
    """Time that passes only when slept or told to: the pace's arithmetic, exactly."""

    def __init__(self) -> None:
        self.now, self.slept = 100.0, []

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def _pace(mb_per_s: float) -> tuple[walrate.WalPace, _Clock]:
    clock = _Clock()
    return walrate.WalPace(mb_per_s, sleep=clock.sleep, clock=lambda: clock.now), clock


def test_a_pace_sleeps_what_the_wal_is_worth_beyond_the_time_that_passed() -> None:
    pace, clock = _pace(1.0)
    pace.note(0)
    clock.now += 0.1
    pace.note(1 * MB)  # a megabyte in 0.1 s, at 1 MB/s: 0.9 s owed
    assert pace.pause() == pytest.approx(0.9) and clock.slept == [0.9]
    clock.now += 0.5
    pace.note(int(1.2 * MB))  # 0.2 MB in 0.5 s: under budget, nothing owed
    assert pace.pause() == 0.0
    clock.now += 0.2  # time spent elsewhere (another throttle's pause) counts
    pace.note(int(2.2 * MB))  # 1 MB more, 0.3 s saved before and 0.2 s since: 0.5 s owed
    assert pace.pause() == pytest.approx(0.5)
    assert pace.written == int(2.2 * MB) and pace.paused_s == pytest.approx(1.4)


def test_time_a_pace_did_not_use_is_saved_for_one_second_at_most() -> None:
    """After a long pause (replica lag), the next burst is not let through unpaced."""
    pace, clock = _pace(1.0)
    pace.note(0)
    clock.now += 60
    pace.note(3 * MB)  # three seconds' worth after a minute of nothing: one second of credit, two owed
    assert pace.pause() == pytest.approx(2.0)


def test_an_unpaced_backfill_never_sleeps_but_counts_its_wal() -> None:
    pace, clock = _pace(0.0)
    pace.note(0)
    pace.note(10_000 * MB)
    assert pace.pause() == 0.0 and clock.slept == [] and pace.written == 10_000 * MB


def test_options_refuse_a_negative_wal_rate() -> None:
    with pytest.raises(RunbookError, match="backfill_wal_mb_per_s must be a number, 0 or more"):
        Options(backfill_wal_mb_per_s=-1).checked()
    assert Options(backfill_wal_mb_per_s=3).checked().backfill_wal_mb_per_s == 3.0
    assert Options().checked().backfill_wal_mb_per_s == 0  # unpaced unless asked: benchmarks/RESULTS.md §7c
    args = cli.build_parser().parse_args(["run", "6", "--batch-wal-mb-per-s", "5"])
    assert cli._options(args).parameters("apply") == {"backfill_wal_mb_per_s": 5.0}  # what the notebook is given


def _padded_items(url: str, rows: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, pad text NOT NULL)")
        conn.execute("INSERT INTO item (id, pad) SELECT g, repeat('x', 300) FROM generate_series(1, %s) g", (rows,))


def _apply(url: str, root: Path, sql: str, **options):
    folder = root / "migrations" / "001_backfill"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "migration.sql").write_text(sql)
    session = open_session(1, database_url=url, migrations_dir=root / "migrations", reports_dir=root / "reports")
    return apply.run(session, strategy="online", backfill_batch_ms=5, **options)


def _summary(root: Path) -> str:
    return summary.load(next((root / "reports").rglob("apply.json")).parent).markdown


def test_a_backfill_writes_no_more_wal_per_second_than_its_budget(empty_db: str, tmp_path: Path) -> None:
    """Every byte of WAL the server wrote between the first batch and the last took its time at the budget:
    the batches' time is never shorter than that (sleeps are never shorter than asked), whatever the machine."""
    _padded_items(empty_db, 10_000)
    result = _apply(
        empty_db, tmp_path, "UPDATE item SET n = n + 1, pad = repeat('y', 300) WHERE n >= 0;\n", backfill_wal_mb_per_s=2
    )
    [run] = result.backfills
    assert run.rows == 10_000 and run.batches > 5
    assert run.wal_mb >= 2 and run.wal_pause_s > 0 and run.wal_mb_per_s == 2
    assert run.duration_s >= (run.wal_mb - 0.05) / 2.0, run  # wal_mb is rounded to 0.1 MB
    line = next(line for line in terminal.execution_lines(result) if "batched:" in line)
    assert f"WAL {run.wal_mb:,.0f} MB, {run.wal_pause_s:.1f} s paused to keep it to 2.0 MB/s" in line, line
    assert "WAL paced to at most 2.0 MB/s (`--batch-wal-mb-per-s`)." in _summary(tmp_path)
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM item WHERE n = 1 AND pad = repeat('y', 300)").fetchone() == (10_000,)


def test_an_unpaced_backfill_never_pauses_and_reports_its_wal(empty_db: str, tmp_path: Path) -> None:
    _padded_items(empty_db, 2_000)
    result = _apply(empty_db, tmp_path, "UPDATE item SET n = n + 1 WHERE n >= 0;\n")
    [run] = result.backfills
    assert run.rows == 2_000 and run.wal_mb_per_s == 0 and run.wal_pause_s == 0 and run.wal_mb > 0
    text = _summary(tmp_path)
    assert "| WAL written |" in text and "WAL paced" not in text
