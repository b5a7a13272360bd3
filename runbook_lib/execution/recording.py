"""A run with its evidence: the ledger row and `<phase>.json` written on success and on failure alike,
and Prisma's `_prisma_migrations` told what happened.

Exactly once: each committed step's ledger progress, and for the last step the ledger's 'succeeded' and
Prisma's row, are written inside that step's transaction (`_step_recorder`), so whatever is killed when,
the database never holds a step's effect the ledger does not know, and the next run neither repeats
nor skips it. Only the row's insertion and a failure go through the ledger's own connection.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import psycopg

from runbook_lib import names
from runbook_lib.batch.blocks import BlockResult
from runbook_lib.batch.model import BatchInfo
from runbook_lib.config import DIRECT
from runbook_lib.db import ledger
from runbook_lib.errors import MigrationFailed, RunbookError
from runbook_lib.execution import backfill
from runbook_lib.execution.blockers import Policy
from runbook_lib.execution.executor import execute
from runbook_lib.execution.failure import server_message
from runbook_lib.execution.session import Session
from runbook_lib.layouts import detect, prisma
from runbook_lib.layouts.base import History, Migration
from runbook_lib.report import records
from runbook_lib.report.records import ExecutionResult
from runbook_lib.sql import analysis


def _record_prisma(conn: psycopg.Connection, phase: str, session: Session) -> prisma.PrismaRecord:
    """Tell Prisma what happened, where `_prisma_migrations` exists; a failure here is reported, not fatal
    (it runs in a savepoint of the last step's transaction, which commits without it).

    A folder in Prisma's layout gets the table (Prisma's DDL) with its first record, in one transaction,
    so Prisma can take the project over later; a batch.toml project never gets it.
    """
    name = session.batch.name
    try:
        with conn.transaction():
            if phase == "apply":
                return prisma.record_applied(conn, name, session.batch.checksum, create=session.batch.prisma_layout)
            return prisma.record_rolled_back(conn, name)
    except psycopg.Error as exc:
        return prisma.PrismaRecord(f"not recorded: {server_message(exc)}", name)


def _tool_history(session: Session) -> tuple[History, Migration, list[Migration]]:
    """The batch's tool history, its migration, and every migration of its folder in the tool's order (a
    rollback's row names the one before)."""
    batch = session.batch
    # only for another tool's migration (the callers check batch.tool), which discovery reads with its settings
    assert batch.tool is not None and batch.settings is not None
    return detect.history(batch.settings), batch.tool, [b.tool for b in session.batches() if b.tool is not None]


def _record_tool(conn: psycopg.Connection, result: ExecutionResult, session: Session) -> str:
    """The tool's own history (golang-migrate's, Flyway's, Drizzle's) told, as the tool would write it, in the last
    step's transaction: a failure here fails the step, so the database never holds a migration the tool's
    history does not (the tool would run it again)."""
    history, migration, migrations = _tool_history(session)
    if result.phase == "apply":
        ms = round(sum(s.duration_s for s in result.statements) * 1000)
        return history.record_applied(conn, migration, migrations, ran=True, execution_ms=ms)
    return history.record_rolled_back(conn, migration, migrations)


def _record_tool_failure(session: Session) -> str:
    """A migration that failed after some of its steps committed (statements outside a transaction): the row the
    tool writes then (golang-migrate's dirty flag, Flyway's success = false), in its own transaction; runbook's
    next apply resumes it from the ledger and writes the tool's row for success when it commits."""
    history, migration, migrations = _tool_history(session)
    try:
        with session.connect() as conn:
            return history.record_failed(conn, migration, migrations)
    except psycopg.Error as exc:
        return f"not recorded: {server_message(exc)}"


def _step_recorder(
    writer: ledger.LedgerWriter, result: ExecutionResult, session: Session, message: Callable[[], str]
) -> Callable[[psycopg.Connection, int, int, bool], None]:
    """What a committed step writes inside its own transaction: its progress; the last step also Prisma's row
    (apply: record_applied; rollback: record_rolled_back) and the ledger's 'succeeded' with its message."""

    def record(conn: psycopg.Connection, kept: int, total: int, last: bool) -> None:
        if last and session.batch.tool is not None:
            result.tool_history = _record_tool(conn, result, session)
        elif last:
            result.prisma = _record_prisma(conn, result.phase, session)
        writer.record_in(conn, kept, total, succeeded=message() if last else None)

    return record


def require_statements(sql_text: str, filename: str, *, server_major: int | None = None) -> list:
    """The parsed statements of a file that must change something: an empty one is refused, not 'applied'."""
    statements = analysis.analyze(sql_text, filename=filename, server_major=server_major)
    if not statements:
        raise MigrationFailed(f"{filename} has no SQL statement; write the change in it (or remove the batch).")
    return statements


def start_result(session: Session, phase: str, *, dry_run: bool) -> tuple[ExecutionResult, float]:
    result = ExecutionResult(
        phase=phase,
        batch=BatchInfo.of(session.batch),
        connection=session.facts,
        run_id=session.run.run_id,
        started_at=records.now_iso(),
        dry_run=dry_run,
    )
    return result, time.perf_counter()


def finish(session: Session, result: ExecutionResult, t0: float) -> None:
    """Close the result's clock and write `<phase>.json`, whatever the outcome."""
    result.finished_at = records.now_iso()
    result.duration_s = round(time.perf_counter() - t0, 6)
    session.run.write(result.phase, result)


def _terminated_note(result: ExecutionResult) -> str:
    """What the ledger's message says of sessions the run terminated (never any without the option)."""
    gone = result.terminated
    if not gone:
        return ""
    return "; terminated " + ", ".join(f"{w.who} holding {w.lock}" for w in gone) + " (--terminate-blockers-after)"


def recorded(
    session: Session,
    result: ExecutionResult,
    t0: float,
    conn: psycopg.Connection,
    *,
    sql_text: str,
    filename: str,
    tables_touched: list[str],
    done: str,
    lock_timeout_ms: int,
    statement_timeout_ms: int,
    max_attempts: int,
    strategy: str = DIRECT,
    resume_after: int | None = None,
    resume_steps: tuple[str, ...] | None = None,
    verify: Callable[[psycopg.Connection], list[BlockResult]] | None = None,
    statements: list | None = None,
    blocker_policy: Policy | None = None,
    backfill_settings: backfill.Settings | None = None,
    resume_position: dict | None = None,
    resume_exact: bool = False,
    stop_after: int | None = None,
) -> ExecutionResult:
    """`execute` with its ledger row and its record: both written on success and on failure.

    A session terminated for `blocker_policy` goes into the ledger row at once, and into its message.
    `resume_position`: the keyset position a stopped batched step committed (from the ledger); this run's
    row carries it from the start and moves it with every batch it commits. `resume_steps`: the stopped
    run's step fingerprints, which the steps it committed must still match. `stop_after`: run up to that step
    and stop there on purpose (a notebook's step cell): the row ends 'paused', and the next run of the phase
    goes on at the next step (`resume_exact`, which that run is told by `ledger.PartialRun.paused`).
    """
    dry_run = result.dry_run
    note = f"; {result.message}" if result.message else ""  # e.g. resuming after an interrupted run

    def succeeded() -> str:
        return f"{filename}: {done} ({len(result.plan)} step(s), {strategy}){note}{_terminated_note(result)}"

    with ledger.LedgerWriter(
        session.url,
        run_id=session.run.run_id,
        batch=session.batch.number,
        batch_name=session.batch.name,
        phase=result.phase,
        checksum=session.batch.checksum,
        dry_run=dry_run,
        strategy=strategy,
    ) as writer:
        context = backfill.Context(backfill_settings or backfill.Settings(), resume_position, writer.record_position_in)

        def planned(steps_done: int, steps_total: int, steps: tuple[str, ...]) -> None:
            writer.progress(steps_done, steps_total, resume_position, steps)

        try:
            execute(
                session,
                phase=result.phase,
                sql_text=sql_text,
                filename=filename,
                tables_touched=tables_touched,
                dry_run=dry_run,
                strategy=strategy,
                lock_timeout_ms=lock_timeout_ms,
                statement_timeout_ms=statement_timeout_ms,
                max_attempts=max_attempts,
                resume_after=resume_after,
                resume_steps=resume_steps,
                verify=verify,
                on_step=planned,
                record_step=_step_recorder(writer, result, session, succeeded),
                statements=statements,
                result=result,
                conn=conn,
                blocker_policy=blocker_policy,
                on_terminated=lambda w: writer.terminated(dataclasses.asdict(w)),
                backfill_context=context,
                resume_exact=resume_exact,
                stop_after=stop_after,
            )
        except RunbookError as exc:
            result.status = names.FAILED
            result.message = (result.message or str(exc)) + _terminated_note(result)
            if not dry_run and result.phase == "apply" and result.steps_kept and session.batch.tool is not None:
                result.tool_history = _record_tool_failure(session)  # part of it stands: as the tool would say
            finish(session, result, t0)
            writer.finish(ledger.FAILED, result.message, steps_done=result.steps_kept, steps_total=len(result.plan))
            raise
        if not dry_run and result.steps_kept < len(result.plan):  # stopped on purpose (stop_after)
            result.status = names.PAUSED
            result.message = (
                f"{filename}: step {result.steps_kept} of {len(result.plan)} committed, paused "
                f"there ({strategy}){note}{_terminated_note(result)}"
            )
            finish(session, result, t0)
            writer.finish(ledger.PAUSED, result.message, steps_done=result.steps_kept, steps_total=len(result.plan))
            return result
        result.status = names.DRY_RUN if dry_run else done
        result.message = (
            f"dry run: {filename} executed, measured and rolled back; nothing changed" if dry_run else succeeded()
        )
        finish(session, result, t0)
        # a dry run's row ends here; a real run's last step made it 'succeeded' already, and this leaves it
        writer.finish(ledger.SUCCEEDED, result.message, steps_done=result.steps_kept, steps_total=len(result.plan))
    return result
