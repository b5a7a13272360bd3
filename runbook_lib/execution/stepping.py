"""One step of a plan at a time, as a runbook notebook's step cell runs it: which step comes next, and what
a step run again, or too early, says. The step itself runs through apply's or rollback's own path
(`stop_after`), under the same lock and protections; this module only decides whether it may.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from runbook_lib import names
from runbook_lib.batch import history
from runbook_lib.db import ledger
from runbook_lib.errors import StepRefused
from runbook_lib.execution import resume
from runbook_lib.execution.resume import Numbered
from runbook_lib.execution.session import Session
from runbook_lib.report.records import ExecutionResult
from runbook_lib.sql import plan


def committed(steps: Sequence[Numbered], stopped: ledger.PartialRun | None) -> int:
    """The steps whose effects stand: all of a paused run's; of a failed or killed one, its whole groups only
    (the next run undoes and redoes a group it stopped in, as `execution.resume` says). `steps`: the plan, or a
    runbook notebook's cards of it (each has its number and group)."""
    if stopped is None:
        return 0
    if stopped.paused:
        return stopped.steps_done
    return resume.group_start(steps, stopped.steps_done + 1) - 1


def require_next(session: Session, steps: list[plan.Step], step: int, done: int, phase: str) -> None:
    """Refuse, before anything runs, a step that does not exist or whose step before it is not committed."""
    number, total = session.batch.number, len(steps)
    if not 1 <= step <= total:
        raise StepRefused(
            f"Batch {number}'s {phase} has {total} step(s), so there is no step {step}; write a new notebook "
            f"with `runbook notebook {number}` if the plan changed."
        )
    if step > done + 1:
        raise StepRefused(
            f"Step {step} of batch {number}'s {phase} cannot run yet: {steps[done].label} comes first "
            f"({done} of {total} committed); run its cell first. Nothing was changed."
        )


def done(
    session: Session,
    result: ExecutionResult,
    conn: psycopg.Connection,
    step: int,
    phase: str,
    *,
    applied: history.MigrationState | None = None,
) -> ExecutionResult:
    """A step run again: when and by whom it was done, and nothing run, recorded or changed."""
    by = ledger.step_done_by(conn, session.batch.number, step, phase)
    conn.commit()
    if by is not None:
        when = str(by)
    elif applied is not None:  # applied by another tool, or recorded by `runbook baseline`
        at = f"{applied.applied_at:%Y-%m-%d %H:%M:%S %Z}".strip() if applied.applied_at else "an unknown time"
        when = f"at {at} by {applied.applied_by} (according to {applied.according})"
    else:
        when = "by an earlier run"
    result.status = names.ALREADY_DONE
    result.message = f"step {step} of batch {session.batch.number}'s {phase} was done {when}; nothing changed"
    return result
