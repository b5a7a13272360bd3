"""How a step's failure is told and undone: the server's message, the clean-ups of a half-made group,
and the one sentence (MigrationFailed) that says how far the run got and what to do."""

from __future__ import annotations

import psycopg

from runbook_lib import names
from runbook_lib.batch.blocks import BlockResult
from runbook_lib.db import connection
from runbook_lib.errors import MigrationFailed, RunbookError
from runbook_lib.execution.blockers import BlockedTooLong, describe
from runbook_lib.report.records import ExecutionResult
from runbook_lib.sql import plan


class VerificationFailed(Exception):
    """The checks that must hold after a rollback did not."""

    def __init__(self, failed: list[BlockResult]) -> None:
        self.failed = failed


class GaveUp(Exception):
    """Every attempt timed out waiting for a lock."""

    def __init__(self, attempts: int, exc: psycopg.Error) -> None:
        self.attempts = attempts
        self.exc = exc


def server_message(exc: psycopg.Error) -> str:
    diag = exc.diag
    text = diag.message_primary or str(exc).strip().splitlines()[0]
    return f"{diag.sqlstate} {text}" if diag.sqlstate else text


def run_cleanups(
    conn: psycopg.Connection, statements: list[str], result: ExecutionResult, url: str, prefix: str = ""
) -> None:
    if not statements:
        return
    if conn.closed or conn.broken:
        # The connection died with the failure (terminated, server restart): clean up on a new one.
        try:
            conn = connection.connect(url, autocommit=True)
        except RunbookError as exc:
            result.cleanup.append(f"{prefix}not cleaned up, the server could not be reached: {exc}")
            return
    conn.autocommit = True
    try:
        for cleanup_sql in statements:
            try:
                conn.execute(cleanup_sql)
                result.cleanup.append(prefix + cleanup_sql)
            except psycopg.Error as cleanup_exc:
                result.cleanup.append(f"{prefix}FAILED: {cleanup_sql}: {server_message(cleanup_exc)}")
    finally:
        if not conn.closed:
            conn.autocommit = False


def fail(
    conn: psycopg.Connection,
    result: ExecutionResult,
    steps: list[plan.Step],
    done: list[plan.Step],
    step: plan.Step,
    exc: GaveUp | VerificationFailed | BlockedTooLong | psycopg.Error,
    filename: str,
    lock_timeout_ms: int,
    url: str,
) -> None:
    """Clean up what the plan added so far, say how far it got, and raise MigrationFailed."""
    if not conn.closed and not conn.broken and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()
    # Undo the failing step's group (an online change half made); earlier groups are complete and stay.
    group = [s for s in [*done, step] if s.group == step.group]
    run_cleanups(conn, [sql for s in reversed(group) for sql in s.cleanup], result, url)
    first_of_group = min(s.number for s in steps if s.group == step.group)
    committed = [s for s in done if s.number < first_of_group]
    result.steps_kept = len(committed)
    if isinstance(exc, GaveUp):
        waited = next((r.error for r in reversed(result.statements) if r.status == names.LOCK_TIMEOUT), "")
        cause = (
            f"could not get its locks in {exc.attempts} attempts of lock_timeout={lock_timeout_ms} ms "
            f"({waited or server_message(exc.exc)})"
        )
        fix = "find the blocking session with `runbook preflight` and retry, or raise --lock-timeout / --max-attempts"
    elif isinstance(exc, BlockedTooLong):
        cause = (
            f"waited {exc.waited_s:.1f} s (--wait-for-blockers {exc.budget_s:g}) for {describe(exc.blocker)}, "
            "without queuing behind it"
        )
        fix = (
            f"end that session (SELECT pg_terminate_backend({exc.blocker.pid})) or let it finish and run again, "
            "or raise --wait-for-blockers, or pass --terminate-blockers-after SECONDS"
        )
    elif isinstance(exc, VerificationFailed):
        # a check not run proves nothing, so what must hold afterwards is not shown: it stops the run as a failure does
        failed_checks = "; ".join(
            f"{b.name}: expected {b.expectation}, got {b.observed}" if b.ran else f"{b.name}: not run ({b.reason})"
            for b in exc.failed
        )
        cause = (
            "ran, but the checks that must hold afterwards failed"
            + (" or could not be run" if any(not b.ran for b in exc.failed) else "")
            + f" ({failed_checks})"
        )
        fix = "fix the SQL so the checks hold"
    else:
        failed = next((r for r in reversed(result.statements) if r.status == names.FAILED), None)
        where = f"statement {failed.index} ({filename} line {failed.line})" if failed else step.label
        cause = f"{where} failed: {server_message(exc)}"
        fix = "fix the SQL or the data and run again"
    batched = next((b for b in result.backfills if b.step == step.number and b.batches), None)
    if batched is not None:
        state = (
            f"stopped at {step.label} of {len(steps)}"
            + (f" after steps 1-{committed[-1].number}" if committed else "")
            + f"; its {batched.batches} committed batch(es) ({batched.rows} rows, through key {batched.last_key}) "
            "stay, and a rerun with the same strategy goes on after them"
        )
    elif not committed:
        state = (
            "the transaction was rolled back and nothing changed"
            if len(steps) == 1
            else f"stopped at {step.label}, nothing was committed"
        )
    else:
        kept = (
            "step 1 was committed and stays"
            if committed[-1].number == 1
            else f"steps 1-{committed[-1].number} were committed and stay"
        )
        state = f"stopped at {step.label} of {len(steps)}; {kept} (a rerun resumes after step {committed[-1].number})"
    if result.cleanup:
        state += "; cleaned up: " + "; ".join(result.cleanup)
    result.status = names.FAILED
    result.message = f"{filename} {cause}; {state}"
    raise MigrationFailed(f"{filename}: {cause}; {state}. {fix[0].upper() + fix[1:]}.")
