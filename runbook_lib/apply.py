"""apply: the forward change, once, under the migration lock, refused when preflight says NO-GO."""

from __future__ import annotations

from . import execution, ledger, preflight
from .errors import DependencyError, DriftError, PreflightFailed
from .execution import ExecutionResult
from .session import Session


def run(
    session: Session,
    *,
    dry_run: bool = False,
    force: bool = False,
    lock_timeout_ms: int = 200,
    statement_timeout_ms: int = 0,
    max_attempts: int = 5,
) -> ExecutionResult:
    """Apply the batch (or rehearse it with dry_run) and write the apply record, also on failure."""
    batch = session.batch
    result, t0 = execution.start_result(session, "apply", dry_run=dry_run)
    with session.connect(application_name=f"runbook apply batch {batch.number}") as conn, \
            execution.migration_lock(conn):
        states = ledger.states(conn)
        conn.commit()
        state = states.get(batch.number, ledger.BatchState(batch.number, False))
        if state.applied and state.checksum != batch.checksum:
            raise DriftError(
                f"Batch {batch.number}'s migration.sql changed since it was applied "
                f"(applied {state.checksum}, now {batch.checksum}); restore the applied file, "
                "or write the change as a new batch."
            )
        if state.applied:
            return _already_applied(session, result, state, t0)
        missing = [n for n in batch.depends_on if not states.get(n, ledger.BatchState(n, False)).applied]
        if missing:
            raise DependencyError(
                f"Batch {batch.number} depends on batch {missing[0]}, which is not applied on "
                f"{session.facts.database}; apply batch {missing[0]} first."
            )
        check = preflight.evaluate(session, lint=False)
        if check.verdict.status == preflight.NOGO and not force:
            raise PreflightFailed(
                f"Apply of batch {batch.number} refused, preflight says NO-GO: "
                + "; ".join(check.verdict.reasons) + "; fix these, or pass force=True (--force) to apply anyway.",
                list(check.verdict.reasons),
            )
        return execution.recorded(
            session, result, t0, conn,
            sql_text=batch.migration_sql, filename=f"{batch.name}/migration.sql",
            tables_touched=preflight.touched_tables(batch, check.statements), done="applied",
            lock_timeout_ms=lock_timeout_ms, statement_timeout_ms=statement_timeout_ms, max_attempts=max_attempts,
        )


def _already_applied(session: Session, result: ExecutionResult, state: ledger.BatchState, t0: float) -> ExecutionResult:
    result.status = "already applied"
    result.message = (f"batch {session.batch.number} was already applied at "
                      f"{state.applied_at:%Y-%m-%d %H:%M:%S %Z} by {state.applied_by}; nothing to do")
    with ledger.LedgerWriter(session.url, run_id=session.run.run_id, batch=session.batch.number,
                             batch_name=session.batch.name, phase="apply",
                             checksum=session.batch.checksum) as writer:
        execution.finish(session, result, t0)
        writer.finish(ledger.NOOP, result.message)
    return result
