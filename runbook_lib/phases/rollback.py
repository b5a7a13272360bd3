"""rollback: rollback.sql under the same protections as apply, for an applied batch or one an apply left part way."""

from __future__ import annotations

import psycopg

from runbook_lib import names
from runbook_lib.batch import blocks as sqlblocks
from runbook_lib.batch import declared as checks
from runbook_lib.batch import history
from runbook_lib.batch.model import ROLLBACK
from runbook_lib.config import DEFAULTS, Options
from runbook_lib.db import ledger
from runbook_lib.db.migration_lock import migration_lock
from runbook_lib.errors import NotApplied, RunbookError
from runbook_lib.execution import recording, stepping
from runbook_lib.execution.blockers import Policy
from runbook_lib.execution.session import Release, Session
from runbook_lib.layouts import detect
from runbook_lib.phases import preflight
from runbook_lib.report.records import ExecutionResult
from runbook_lib.sql import plan


def run(
    session: Session,
    *,
    dry_run: bool = DEFAULTS.dry_run,
    lock_timeout_ms: int = DEFAULTS.lock_timeout_ms,
    statement_timeout_ms: int = DEFAULTS.statement_timeout_ms,
    max_attempts: int = DEFAULTS.max_attempts,
    wait_for_blockers_s: float = DEFAULTS.wait_for_blockers_s,
    terminate_blockers_after_s: float | None = DEFAULTS.terminate_blockers_after_s,
    blocker_threshold_ms: int = DEFAULTS.blocker_threshold_ms,
    only_step: int | None = None,
) -> ExecutionResult:
    """Reverse an applied batch, verify its declared checks no longer hold, and record it.

    A batch whose apply stopped part way (killed, or failed after committing steps or backfill batches) is
    rolled back too: rollback.sql must then undo a partial apply, as the example's batch 6 does. Afterwards
    the next apply starts over instead of resuming the stopped one. A rollback that stopped part way is
    resumed after the steps it committed, as an apply is: rollback.sql's statements are rarely safe twice.
    `only_step` (a runbook notebook's rollback cell): that step alone, then stop (`execution.stepping`).
    """
    if isinstance(session, Release):
        raise RunbookError(
            "A release is rolled back one migration at a time, newest first: "
            "`runbook rollback N` for each migration to undo."
        )
    batch = session.batch
    batch.require(ROLLBACK, "make the batch reversible")
    sql_text = batch.rollback_sql
    filename = f"{batch.name}/{ROLLBACK}"
    options = Options(
        dry_run=dry_run,
        lock_timeout_ms=lock_timeout_ms,
        statement_timeout_ms=statement_timeout_ms,
        max_attempts=max_attempts,
        wait_for_blockers_s=wait_for_blockers_s,
        terminate_blockers_after_s=terminate_blockers_after_s,
        blocker_threshold_ms=blocker_threshold_ms,
    ).checked()
    dry_run, lock_timeout_ms, statement_timeout_ms, max_attempts = (
        options.dry_run,
        options.lock_timeout_ms,
        options.statement_timeout_ms,
        options.max_attempts,
    )
    statements = recording.require_statements(sql_text, filename, server_major=session.facts.major)
    result, t0 = recording.start_result(session, "rollback", dry_run=dry_run)
    with (
        session.connect(application_name=f"runbook rollback batch {batch.number}") as conn,
        migration_lock(conn),
        detect.tool_session(conn, session.batch, prepare=False),
    ):
        ledger.close_interrupted(conn, batch.number)
        state = history.read(conn, session.batches()).state(batch.number)
        stopped = ledger.stopped(conn, batch.number)
        conn.commit()
        resume_after = resume_steps = None
        if only_step is not None:
            steps = plan.build(statements, plan.DIRECT)
            ours = stopped if stopped is not None and stopped.phase == "rollback" else None
            if (
                ours is None
                and not state.applied
                and not (stopped is not None and stopped.changed_anything)
                and ledger.step_done_by(conn, batch.number, only_step, names.ROLLBACK) is not None
            ):
                return stepping.done(session, result, conn, only_step, names.ROLLBACK)
            done = stepping.committed(steps, ours)
            if only_step <= done:
                return stepping.done(session, result, conn, only_step, names.ROLLBACK)
            if state.applied or ours is not None or (stopped is not None and stopped.changed_anything):
                stepping.require_next(session, steps, only_step, done, names.ROLLBACK)
        if stopped is not None and stopped.phase == "rollback" and not dry_run:
            # an earlier rollback committed some of its steps: go on after them, as a stopped apply does
            resume_after, resume_steps = stopped.steps_done, stopped.steps
            if not (stopped.paused and stopped.run_id == session.run.run_id):  # not this notebook's own step
                result.resumed = (
                    f"an earlier rollback (run {stopped.run_id}) stopped after {stopped.committed}; went on from there"
                )
                result.message = (
                    f"resumed an earlier rollback (run {stopped.run_id}) that stopped after {stopped.committed}"
                )
        elif not state.applied and stopped is not None and stopped.changed_anything:
            # steps or backfill batches of an apply, not all: undo them
            result.partly_applied = f"its apply (run {stopped.run_id}) stopped after {stopped.committed}"
        elif not state.applied:
            raise NotApplied(
                f"Batch {batch.number} is not applied on {session.facts.database} (neither runbook's ledger nor "
                "Prisma's history has it applied), "
                "so there is nothing to roll back; `runbook status` shows what is applied."
            )

        def verify(c: psycopg.Connection) -> list[sqlblocks.BlockResult]:
            return [sqlblocks.run(c, block) for block in checks.reverse_tests(c, batch.checks)]

        return recording.recorded(
            session,
            result,
            t0,
            conn,
            sql_text=sql_text,
            filename=filename,
            tables_touched=preflight.touched_tables(batch, statements),
            done=names.ROLLED_BACK,
            lock_timeout_ms=lock_timeout_ms,
            statement_timeout_ms=statement_timeout_ms,
            max_attempts=max_attempts,
            verify=verify,
            statements=statements,
            blocker_policy=Policy.of(options),
            resume_after=resume_after,
            resume_steps=resume_steps,
            resume_exact=stopped is not None and stopped.phase == "rollback" and stopped.paused,
            stop_after=only_step,
        )
