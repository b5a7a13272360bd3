"""Approvals: a pause in a runbook notebook, and who let the migration go on past it, in the ledger.

A pause is a ledger row (phase `approval`) for one step of one notebook's run: 'waiting' from the moment the
pause cell ran, 'approved' once someone approved it (`os_user` is the approver, `finished_at` the moment).
It lives in the database, beside the runs it gates, so a restarted kernel, a second engineer or
`runbook status` sees the same thing; the step cell behind it refuses until the row says 'approved'.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from runbook_lib.db import connection as database
from runbook_lib.db import ledger

PHASE = "approval"
_VIA = "; how: "  # the ledger message of an approval: "step 5 approved by alice; how: approve() in the notebook"
WAITING, APPROVED = "waiting", "approved"


@dataclass(frozen=True)
class Approval:
    """One pause of one notebook run: waiting since `since`, or approved by `by` at `at`."""

    batch: int
    step: int
    run_id: str
    status: str
    since: datetime
    by: str = ""
    at: datetime | None = None
    message: str = ""

    @property
    def approved(self) -> bool:
        return self.status == APPROVED

    @property
    def how(self) -> str:
        return self.message.rsplit(_VIA, 1)[1] if _VIA in self.message else ""


def _row(r: dict) -> Approval:
    return Approval(
        r["batch"],
        r["steps_done"],
        r["run_id"],
        r["status"],
        r["started_at"],
        r["os_user"] or "" if r["status"] == APPROVED else "",
        r["finished_at"],
        r["message"] or "",
    )


_SELECT = (
    "SELECT batch, steps_done, run_id, status, started_at, finished_at, os_user, message FROM {ledger}"
    " WHERE phase = 'approval'"
)


def find(conn: psycopg.Connection, run_id: str, batch: int, step: int) -> Approval | None:
    """The pause of this notebook run before `step`, as the ledger has it (None: never reached)."""
    if not ledger.exists(conn):
        return None
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        r = cur.execute(
            _SELECT.format(ledger=ledger.table()) + " AND run_id = %s AND batch = %s AND steps_done = %s"
            " ORDER BY id DESC LIMIT 1",
            (run_id, batch, step),
        ).fetchone()
    return _row(r) if r else None


def waiting(conn: psycopg.Connection) -> dict[int, Approval]:
    """Per batch, the newest pause still waiting for an approval (what `runbook status` shows as PAUSED)."""
    if not ledger.exists(conn):
        return {}
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _SELECT.format(ledger=ledger.table()) + " AND status = %s ORDER BY id", (WAITING,)
        ).fetchall()
    return {r["batch"]: _row(r) for r in rows}


def _write(url: str, statement: str, params: tuple) -> None:
    with database.connect(url, autocommit=True, application_name="runbook-ledger") as conn:
        ledger.ensure(conn)
        conn.execute(statement.format(ledger=ledger.table()), params)


def wait(url: str, *, run_id: str, batch: int, batch_name: str, checksum: str, step: int, reason: str) -> Approval:
    """Record that the notebook run reached the pause before `step` (once: a pause cell run again keeps its row)."""
    with database.connect(url, autocommit=True, application_name="runbook-ledger") as conn:
        found = find(conn, run_id, batch, step)
        if found is not None:
            return found
    _write(
        url,
        "INSERT INTO {ledger} (run_id, batch, batch_name, phase, status, checksum, os_user, host, steps_done,"
        " message) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            run_id,
            batch,
            batch_name,
            PHASE,
            WAITING,
            checksum,
            ledger.os_user(),
            ledger.hostname(),
            step,
            f"waiting for an approval before step {step}: {reason}",
        ),
    )
    with database.connect(url) as conn:
        made = find(conn, run_id, batch, step)
    assert made is not None
    return made


def approve(
    url: str, *, run_id: str, batch: int, batch_name: str, checksum: str, step: int, by: str, how: str
) -> Approval:
    """Record the approval (who, when, how); approving twice keeps the first approval."""
    with database.connect(url) as conn:
        found = find(conn, run_id, batch, step)
    if found is not None and found.approved:
        return found
    message = f"step {step} approved by {by}{_VIA}{how}"
    if found is None:
        _write(
            url,
            "INSERT INTO {ledger} (run_id, batch, batch_name, phase, status, checksum, os_user, host,"
            " steps_done, message, finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " clock_timestamp())",
            (run_id, batch, batch_name, PHASE, APPROVED, checksum, by, ledger.hostname(), step, message),
        )
    else:
        _write(
            url,
            "UPDATE {ledger} SET status = %s, os_user = %s, message = %s, finished_at = clock_timestamp()"
            " WHERE phase = 'approval' AND run_id = %s AND batch = %s AND steps_done = %s AND status = %s",
            (APPROVED, by, message, run_id, batch, step, WAITING),
        )
    with database.connect(url) as conn:
        made = find(conn, run_id, batch, step)
    assert made is not None
    return made
