"""What a failed or killed run leaves behind, and how the next one goes on.

Steps are grouped (an online change is several steps that only make sense together): a failure undoes
its group's half-made objects with their IF EXISTS clean-ups, earlier groups stay committed, and a
rerun resumes at the first step of the group it stopped in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import psycopg

from runbook_lib.errors import DriftError
from runbook_lib.execution.failure import run_cleanups
from runbook_lib.report.records import ExecutionResult
from runbook_lib.sql import plan


class Numbered(Protocol):
    """A step as far as the order goes: a plan.Step, or a runbook notebook's card of one."""

    @property
    def number(self) -> int: ...

    @property
    def group(self) -> int: ...


def require_unchanged(
    steps: list[plan.Step], done: int, committed: tuple[str, ...], *, in_step: bool, filename: str, phase: str
) -> None:
    """Refuse to resume when a step an earlier run committed now reads otherwise in the file.

    `committed`: that run's step fingerprints; `in_step`: it stopped inside step `done + 1` (a backfill's
    batches committed), whose position only means something for the same statement. The steps after
    those may change: the fix for the statement that failed is what a rerun is for.
    """
    through = done + 1 if in_step else done
    for step in steps[:through]:
        was = committed[step.number - 1] if step.number <= len(committed) else None
        if was != step.fingerprint:
            what = (
                f"the step it stopped in, {step.label}, whose backfill had committed batches"
                if step.number == done + 1
                else f"{step.label}, which it committed"
            )
            raise DriftError(
                f"{filename} changed since an earlier {phase} stopped after step {done} of {len(committed)}: "
                f"{what}, now reads otherwise; restore the statements of steps 1 to {through} as they were "
                f"to resume it (the statements after them may change)."
            )


def group_start(steps: Sequence[Numbered], number: int) -> int:
    """The first step of the group that step `number` belongs to."""
    if number > len(steps):
        return number
    group = steps[number - 1].group
    return min(s.number for s in steps if s.group == group)


def kept(steps: list[plan.Step], done_through: int) -> int:
    """Steps that stay if the run stops now: complete groups only (a half group is cleaned up or redone)."""
    return group_start(steps, done_through + 1) - 1


def clean_leftovers(
    conn: psycopg.Connection, steps: list[plan.Step], first: int, result: ExecutionResult, url: str
) -> None:
    """Before resuming in a group, remove what a killed run may have left of it (each clean-up is IF EXISTS)."""
    group = [s for s in steps if s.group == steps[first - 1].group] if first <= len(steps) else []
    run_cleanups(conn, [sql for s in reversed(group) for sql in s.cleanup], result, url, prefix="leftover: ")


def skip_done(conn: psycopg.Connection, steps: list[plan.Step], done_through: int, result: ExecutionResult) -> int:
    """Past the steps outside a transaction whose effect a killed run completed: how far the run really got.

    Such a step cannot commit with its ledger progress, so a run killed between the two leaves it done
    but unrecorded: its `done_check` (an index that exists and is valid) says so, and it is not redone.
    An invalid index is not done: the group's clean-up drops it and the step builds it again.
    """
    while done_through < len(steps):
        step = steps[done_through]
        if step.transactional or not step.done_check:
            break
        checked = conn.execute(step.done_check).fetchone()
        assert checked is not None  # a done_check is one SELECT of one boolean (sql.plan)
        if not checked[0]:
            break
        conn.commit()
        result.cleanup.append(f"resume: {step.label} was complete already, not redone")
        done_through += 1
    conn.commit()
    return done_through
