"""A runbook notebook's calls without a kernel (the database part, on every server): one step at a time, a step
run twice or too early, a pause and its approval, a terminal finishing what the notebook started, a changed file."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from runbook_lib import commands, config, names
from runbook_lib.db import approvals, ledger
from runbook_lib.errors import AwaitingApproval, StepRefused
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, releasebook, stepwise
from runbook_lib.report.records import ExecutionResult

pytestmark = pytest.mark.versions


def _write(
    url: str, tmp_path: Path, number: int | str, migrations: Path | None = None, **options
) -> commands.NotebookWritten:
    return commands.notebook(
        commands.target(url),
        number,
        migrations_dir=migrations or config.example_migrations_dir(),
        reports_dir=tmp_path / "reports",
        options=config.Options(**options),
    )


def _nullable(url: str, table: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT is_nullable = 'YES' FROM information_schema.columns WHERE table_name = %s"
            " AND column_name = 'customer_id'",
            (table,),
        ).fetchone()[0]


def _apply_rows(url: str, batch: int) -> list[tuple]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('runbook.phase_run')").fetchone()[0] is None:
            return []  # no ledger yet: nothing was ever recorded
        return conn.execute(
            "SELECT phase, status, steps_done FROM runbook.phase_run WHERE batch = %s"
            " AND phase IN ('apply', 'approval') ORDER BY id",
            (batch,),
        ).fetchall()


def _status(url: str, number: int) -> commands.BatchStatus:
    report = commands.status(commands.target(url), config.example_migrations_dir())
    return next(r for r in report.rows if r.number == number)


def test_batch_7_online_one_step_at_a_time_then_a_terminal_finishes(crm_url: str, tmp_path: Path) -> None:
    apply.run(
        open_session(
            6, database_url=crm_url, reports_dir=tmp_path / "setup", migrations_dir=config.example_migrations_dir()
        )
    )
    written = _write(crm_url, tmp_path, 7, strategy="online")
    assert (written.steps, written.pauses) == (11, [5])  # batch.toml: pause_before = [4], Job's SET NOT NULL
    book = stepwise.open_book(written.run_dir, database_url=crm_url)

    with pytest.raises(
        StepRefused,
        match=r"Step 3 of batch 7's apply cannot run yet: step 1 \(statements 1-2 in one "
        r"transaction\) comes first \(0 of 11 committed\)",
    ):
        book.step(3)
    assert _apply_rows(crm_url, 7) == []  # refused before the ledger or the database saw anything

    assert book.preflight().verdict.status in (names.GO, names.WARN)
    first = book.step(1)
    assert first.result.status == names.PAUSED and first.result.steps_kept == 1
    assert "Lead_customer_id_fkey" in first.result.changes_frame().to_string()  # its own catalog change
    assert _status(crm_url, 7).part_applied.startswith("its apply stopped after step 1 of 11")

    again = book.step(1)
    assert again.result.status == names.ALREADY_DONE
    assert f"(run {written.run_dir.name}); nothing changed" in again.result.message
    assert len(_apply_rows(crm_url, 7)) == 1  # run again: no second ledger row, nothing run

    with pytest.raises(StepRefused):
        book.step(4)  # refused again, now after step 1: its record is not merged twice
    recorded = book.session.run.read(names.APPLY, ExecutionResult)
    assert recorded is not None and [s.step for s in recorded.statements] == [1, 1, 1]  # LOCK TABLE and two DROPs
    for number in (2, 3, 4):
        book.step(number)
    assert not _nullable(crm_url, "Lead") and _nullable(crm_url, "Job")

    with pytest.raises(AwaitingApproval, match="Step 5 of batch 7 waits for an approval"):
        book.step(5)
    assert _nullable(crm_url, "Job")
    assert _status(crm_url, 7).paused.startswith("step 4 of 11 committed; a runbook notebook")
    pause = book.pause(5)
    assert not pause.approved
    assert 'Enforced already: Lead: column "customer_id" changed ("customer_id" text NOT NULL)' in pause.text
    said = stepwise.approve(pause, by="alice")
    assert said.startswith("step 5 approved by alice at ")
    with psycopg.connect(crm_url) as conn:
        found = approvals.find(conn, written.run_dir.name, 7, 5)
    assert found is not None and found.approved and found.by == "alice" and found.at is not None
    book.step(5)
    assert _status(crm_url, 7).paused == ""

    # a terminal takes over: the same apply, resumed after the notebook's step 5
    done = apply.run(
        open_session(
            7, database_url=crm_url, reports_dir=tmp_path / "terminal", migrations_dir=config.example_migrations_dir()
        ),
        strategy="online",
    )
    assert done.status == names.APPLIED
    assert done.resumed.startswith(f"an earlier apply (run {written.run_dir.name}) stopped after step 5 of 11")
    assert [s.status for s in done.steps][:5] == [names.SKIPPED] * 5
    assert not _nullable(crm_url, "Job")
    late = book.step(11)
    assert late.result.status == names.ALREADY_DONE and "was done at" in late.result.message

    merged = book.session.run.read(names.APPLY, ExecutionResult)
    assert merged is not None and merged.stepped
    assert [s.number for s in merged.steps if s.status == names.COMMITTED] == [1, 2, 3, 4, 5]
    assert [(a.step, a.by, a.how) for a in merged.approvals] == [(5, "alice", "approve() in the notebook")]
    assert sorted({s.step for s in merged.statements}) == [1, 2, 3, 4, 5]
    offsets = [s.started_offset_s for s in merged.statements]
    assert offsets == sorted(offsets)  # one clock across the cells


def test_a_step_after_migration_sql_changed_is_refused(crm_url: str, tmp_path: Path, migrations: Path) -> None:
    apply.run(open_session(6, database_url=crm_url, reports_dir=tmp_path / "setup", migrations_dir=migrations))
    written = _write(crm_url, tmp_path, 7, migrations, strategy="online")
    book = stepwise.open_book(written.run_dir, database_url=crm_url)
    sql = migrations / "007_tighten_constraints" / "migration.sql"
    sql.write_text(sql.read_text() + '\nALTER TABLE "Job" ADD COLUMN note text;\n')
    with pytest.raises(
        StepRefused,
        match=r"007_tighten_constraints/migration.sql changed since this notebook was "
        r"written .*`runbook notebook 7`. Nothing was changed.",
    ):
        book.step(1)
    assert _apply_rows(crm_url, 7) == []


def test_direct_is_one_step_and_rollback_runs_only_when_asked(crm_url: str, tmp_path: Path) -> None:
    apply.run(
        open_session(
            6, database_url=crm_url, reports_dir=tmp_path / "setup", migrations_dir=config.example_migrations_dir()
        )
    )
    written = _write(crm_url, tmp_path, 7)
    assert (written.strategy, written.steps, written.online_steps) == ("direct", 1, 11)
    book = stepwise.open_book(written.run_dir, database_url=crm_url, approve="all")
    assert book.step(1).result.status == names.APPLIED
    assert _status(crm_url, 7).applied and not _nullable(crm_url, "Lead")
    assert "not run: set rollback = True" in repr(book.rollback_step(1))
    assert not _nullable(crm_url, "Lead")
    undone = book.rollback_step(1, run=True)
    assert undone.result.status == names.ROLLED_BACK and _nullable(crm_url, "Lead")
    assert book.rollback_step(1, run=True).result.status == names.ALREADY_DONE
    with psycopg.connect(crm_url) as conn:
        assert not ledger.state(conn, 7).applied


def test_the_notebook_refuses_what_it_cannot_run(crm_url: str, tmp_path: Path, empty_db: str) -> None:
    with pytest.raises(Exception, match="has no dry run; rehearse the batch with `runbook apply 7 --dry-run`"):
        _write(crm_url, tmp_path, 7, dry_run=True)
    written = _write(crm_url, tmp_path, 7, strategy="online")
    with pytest.raises(Exception, match="written for the online strategy"):
        stepwise.open_book(written.run_dir, database_url=crm_url, strategy="direct")
    with pytest.raises(Exception, match=r"approve must be None .* or \"all\", not 'yes'"):
        stepwise.open_book(written.run_dir, database_url=crm_url, approve="yes")
    with pytest.raises(Exception, match=r"This notebook was written for database t_\w+, but DATABASE_URL points at "):
        stepwise.open_book(written.run_dir, database_url=empty_db)
    book = stepwise.open_book(written.run_dir, database_url=crm_url)
    with pytest.raises(StepRefused, match="has 11 step\\(s\\), so there is no step 12"):
        book.step(12)


def test_a_release_notebook_steps_each_migration_in_the_release_order(crm_url: str, tmp_path: Path) -> None:
    written = _write(crm_url, tmp_path, "pending", strategy="online")  # batches 6 and 7 are pending
    assert written.migrations == [6, 7] and written.batch == "pending"
    assert "7.5" in written.pauses and written.steps == 6 + 11
    assert (written.run_dir / "0006" / "runbook.json").exists() and (written.run_dir / "release.json").exists()
    release = releasebook.open_release(written.run_dir, database_url=crm_url)

    with pytest.raises(
        StepRefused,
        match=r"Migration 7 of this release cannot start yet: migration 6 "
        r"\(006_backfill_customers\) comes first and is not applied",
    ):
        release.step(7, 1)
    with pytest.raises(StepRefused, match="cannot start yet"):
        release.preflight(7)
    assert _apply_rows(crm_url, 7) == [] and _apply_rows(crm_url, 6) == []
    with pytest.raises(StepRefused, match=r"deploys migration\(s\) 6, 7, so there is no migration 5"):
        release.step(5, 1)

    assert release.preflight(6).verdict.status in (names.GO, names.WARN)
    for step in range(1, 7):
        release.step(6, step)
    assert _status(crm_url, 6).applied
    assert release.validate(6).ok
    with pytest.raises(AwaitingApproval, match="Step 5 of batch 7 waits for an approval"):
        for step in range(1, 6):
            release.step(7, step)
    stepwise.approve(release.pause(7, 5), by="dana")
    for step in range(5, 12):
        release.step(7, step)
    assert _status(crm_url, 7).applied and not _nullable(crm_url, "Job")
    assert release.validate(7).ok
    with psycopg.connect(crm_url) as conn:  # the approval is this release's: its folder's run id names the release
        found = approvals.find(conn, f"{written.run_dir.name}/0007", 7, 5)
    assert found is not None and found.by == "dana"
    merged = release.book(7).session.run.read(names.APPLY, ExecutionResult)
    assert merged is not None and merged.status == names.APPLIED and [a.by for a in merged.approvals] == ["dana"]

    nothing = _write(crm_url, tmp_path / "again", "pending")
    assert nothing.notebook is None and nothing.lines()[0].endswith("every migration is applied; no notebook written")
    assert not (tmp_path / "again" / "reports").exists() or not any((tmp_path / "again" / "reports").rglob("*.json"))
