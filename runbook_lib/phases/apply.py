"""apply: the forward change, once, under the migration lock, refused when preflight says NO-GO."""

from __future__ import annotations

from runbook_lib import names
from runbook_lib.config import DEFAULTS, Options
from runbook_lib.db import history, ledger
from runbook_lib.db.migration_lock import migration_lock
from runbook_lib.errors import (
    DependencyError,
    DriftError,
    PreflightFailed,
    PrismaMigrationFailed,
    RunbookError,
)
from runbook_lib.execution import recording
from runbook_lib.phases import preflight
from runbook_lib.phases.session import Session
from runbook_lib.report.records import ExecutionResult


def run(
    session: Session,
    *,
    dry_run: bool = DEFAULTS.dry_run,
    force: bool = DEFAULTS.force,
    strategy: str = DEFAULTS.strategy,
    lock_timeout_ms: int = DEFAULTS.lock_timeout_ms,
    statement_timeout_ms: int = DEFAULTS.statement_timeout_ms,
    max_attempts: int = DEFAULTS.max_attempts,
) -> ExecutionResult:
    """Apply the batch (or rehearse it with dry_run) and write the apply record, also on failure."""
    batch = session.batch
    options = Options(dry_run, force, strategy, lock_timeout_ms, statement_timeout_ms, max_attempts).checked()
    dry_run, force, strategy = options.dry_run, options.force, options.strategy
    lock_timeout_ms, statement_timeout_ms, max_attempts = (
        options.lock_timeout_ms, options.statement_timeout_ms, options.max_attempts)
    statements = recording.require_statements(batch.migration_sql, f"{batch.name}/migration.sql",
                                              server_major=session.facts.major)
    inputs = preflight.load_inputs(session, statements)  # every file parsed once, before the lock
    result, t0 = recording.start_result(session, "apply", dry_run=dry_run)
    with session.connect(application_name=f"runbook apply batch {batch.number}") as conn, \
            migration_lock(conn):
        interrupted = ledger.close_interrupted(conn, batch.number)  # we hold the lock: whoever ran them is gone
        known = history.read(conn, session.batches())
        conn.commit()
        if known.failed_prisma:
            raise PrismaMigrationFailed(known.failed_message())
        state = known.state(batch.number)
        drift = state.drift(batch)
        if drift:
            raise DriftError(
                f"Batch {batch.number}'s migration.sql changed since it was applied ({drift}); restore the "
                "applied file, or write the change as a new batch."
            )
        if state.applied:
            return _already_applied(session, result, state, t0)
        missing = [n for n in batch.depends_on if not known.state(n).applied]
        if missing:
            raise DependencyError(
                f"Batch {batch.number} depends on batch {missing[0]}, which is not applied on "
                f"{session.facts.database}; apply batch {missing[0]} first."
            )
        resume_after = _resume_point(conn, session, strategy, dry_run)
        check = preflight.evaluate(session, lint=False, measure=False, inputs=inputs)
        # A resumed apply is part way: the gates describe the state before step 1, not this one.
        if check.verdict.status == preflight.NOGO and not force and resume_after is None:
            raise PreflightFailed(
                f"Apply of batch {batch.number} refused, preflight says NO-GO: "
                + "; ".join(check.verdict.reasons) + "; fix these, or pass force=True (--force) to apply anyway.",
                list(check.verdict.reasons),
            )
        if resume_after is not None or interrupted:
            result.message = ("an earlier apply was interrupted; " if interrupted else "") + (
                f"resuming after step {resume_after}, which it committed" if resume_after else "starting over")
        return recording.recorded(
            session, result, t0, conn,
            sql_text=batch.migration_sql, filename=f"{batch.name}/migration.sql",
            tables_touched=preflight.touched_tables(batch, check.statements), done=names.APPLIED,
            lock_timeout_ms=lock_timeout_ms, statement_timeout_ms=statement_timeout_ms, max_attempts=max_attempts,
            strategy=strategy, resume_after=resume_after, statements=statements,
        )


def _resume_point(conn, session: Session, strategy: str, dry_run: bool) -> int | None:
    """Steps an earlier apply committed before it failed or was killed: this run goes on after them."""
    partial = ledger.partial(conn, session.batch.number)
    conn.commit()
    if partial is None or dry_run:
        return None
    number = session.batch.number
    if partial.checksum != session.batch.checksum:
        raise DriftError(
            f"An earlier apply of batch {number} stopped after step {partial.steps_done} of {partial.steps_total} "
            f"with another migration.sql (checksum {partial.checksum}, now {session.batch.checksum}); restore that "
            "file to finish it, or repair the database by hand and record the batch with a new number."
        )
    if partial.strategy != strategy:
        raise RunbookError(
            f"An earlier apply of batch {number} ({partial.strategy} strategy) stopped after step "
            f"{partial.steps_done} of {partial.steps_total}; run apply again with strategy {partial.strategy!r} "
            "to resume it."
        )
    return partial.steps_done


def _already_applied(session: Session, result: ExecutionResult, state: history.MigrationState,
                     t0: float) -> ExecutionResult:
    result.status = names.ALREADY_APPLIED
    when = f"{state.applied_at:%Y-%m-%d %H:%M:%S %Z}".strip() if state.applied_at else "an unknown time"
    result.message = (f"batch {session.batch.number} was already applied at {when} by {state.applied_by} "
                      f"(according to {state.source}); nothing to do")
    with ledger.LedgerWriter(session.url, run_id=session.run.run_id, batch=session.batch.number,
                             batch_name=session.batch.name, phase="apply",
                             checksum=session.batch.checksum) as writer:
        recording.finish(session, result, t0)
        writer.finish(ledger.NOOP, result.message)
    return result
