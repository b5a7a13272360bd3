"""Live progress: a long statement is watched from a second connection, and the terminal hears about it."""

from __future__ import annotations

import io
from pathlib import Path

import psycopg
import pytest

from runbook_lib.execution import live, watch
from runbook_lib.execution.session import open_session
from runbook_lib.notebook.progress import PhaseProgress
from runbook_lib.phases import apply

SLOW_VALIDATE = """\
ALTER TABLE "Slow" ADD CONSTRAINT "Slow_check" CHECK (slow_ok(id)) NOT VALID;
ALTER TABLE "Slow" VALIDATE CONSTRAINT "Slow_check";
"""


@pytest.fixture
def slow_batch(tmp_path: Path, empty_db: str) -> Path:
    """A batch whose VALIDATE CONSTRAINT takes about 1.5 s: a CHECK that sleeps 0.3 s on each of 5 rows."""
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION slow_ok(integer) RETURNS boolean IMMUTABLE LANGUAGE sql"
            " AS $$ SELECT pg_sleep(0.3) IS NOT NULL $$"
        )
        conn.execute('CREATE TABLE "Slow" AS SELECT id FROM generate_series(1, 5) id')
    folder = tmp_path / "migrations" / "001_slow"
    folder.mkdir(parents=True)
    (folder / "batch.toml").write_text('batch = 1\ntitle = "A slow validate"\ndepends_on = []\n', encoding="utf-8")
    (folder / "migration.sql").write_text(SLOW_VALIDATE, encoding="utf-8")
    return folder.parent


def test_a_long_validate_reports_progress_while_it_runs(
    slow_batch: Path, empty_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "DELAY_S", 0.2)
    monkeypatch.setattr(watch, "POLL_S", 0.1)
    monkeypatch.setattr(live, "MIN_INTERVAL_S", 0.0)
    session = open_session(1, database_url=empty_db, reports_dir=tmp_path / "reports", migrations_dir=slow_batch)
    with live.to_file(tmp_path / "live.jsonl") as path:
        result = apply.run(session, strategy="online")
    assert result.status == "applied"
    events = live.Tail(path).read()
    running = [e for e in events if e.kind == live.STATEMENT and not e.final]
    assert running, events
    assert all("VALIDATE" in e.text and "Slow" in e.text for e in running), running
    assert any(" running " in e.text for e in running)
    assert events[-1].final and events[-1].text.endswith("finished")
    # the short statements were never watched: only the VALIDATE outlasted the delay
    assert not [e for e in events if "ADD CHECK" in e.text or "NOT VALID" in e.text]


def test_an_index_build_reports_how_far_it_is() -> None:
    row = (42.4, "active", None, None, "building index: scanning table", 250, 1000, 0, 0)
    text, done, total, unit = watch.describe('step 2, CREATE INDEX (on "Lead")', row)
    assert (
        text == 'step 2, CREATE INDEX (on "Lead"): running 42 s, building index: scanning table (25% of 1,000 blocks)'
    )
    assert (done, total, unit) == (250.0, 1000.0, "blocks")
    waiting = watch.describe("step 1, SET NOT NULL", (3.0, "active", "Lock", "relation", None, None, None, None, None))
    assert waiting[0] == "step 1, SET NOT NULL: running 3 s, waiting for a relation lock"


def test_the_terminal_shows_live_events(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    log = io.StringIO()
    progress = PhaseProgress(("apply",), stream=log, bar=False)
    progress.follow(path)
    with live.to_file(path):
        live.emit(live.STATEMENT, "step 2, VALIDATE CONSTRAINT: running 4 s")
        live.emit(live.STATEMENT, "step 2, VALIDATE CONSTRAINT: running 5 s")  # within PLAIN_EVERY_S: not repeated
        live.emit(live.STATEMENT, "step 2, VALIDATE CONSTRAINT: finished", final=True)
    progress.close()
    lines = log.getvalue().splitlines()
    assert lines == ["    step 2, VALIDATE CONSTRAINT: running 4 s", "    step 2, VALIDATE CONSTRAINT: finished"]

    screen = io.StringIO()
    bar = PhaseProgress(("apply",), stream=screen, bar=True)
    bar.show(live.Event(live.STATEMENT, "step 2, VALIDATE CONSTRAINT: running 4 s"))
    assert "running 4 s" in screen.getvalue()
    bar.close()
