"""The migration lock: one runbook apply or rollback per database at a time (a session advisory lock).

A session lock, not a transaction lock: it is held across the many transactions of a plan, and the
server releases it when the connection ends, so a killed runbook never leaves it behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import psycopg

from runbook_lib.db import connection
from runbook_lib.errors import LockBusy

# One advisory lock key per database for every runbook apply/rollback ("RUNBOOK" in ASCII).
ADVISORY_KEY = 0x52554E424F4F4B


def holder(conn: psycopg.Connection) -> tuple[int, str, datetime | None] | None:
    """The session holding this database's migration lock now (an apply or rollback at work), without taking
    it (`runbook status` is read-only): pid, application_name, connected since (None when this role may not
    see it); None when no session holds it."""
    with conn.transaction():
        return conn.execute(
            "SELECT a.pid, coalesce(a.application_name, ''), a.backend_start FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (ADVISORY_KEY >> 32, ADVISORY_KEY & 0xFFFFFFFF),
        ).fetchone()


@contextmanager
def migration_lock(conn: psycopg.Connection) -> Iterator[None]:
    """Hold the per-database advisory lock, or fail at once naming who holds it."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)).fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    got = row[0]
    conn.commit()
    if not got:
        held_by = holder(conn)
        conn.commit()
        who = (
            (
                f"pid {held_by[0]} ({held_by[1] or 'no application_name'}"
                + (f", connected since {held_by[2].isoformat(timespec='seconds')})" if held_by[2] else ")")
            )
            if held_by
            else "another session"
        )
        raise LockBusy(
            f"Another runbook apply or rollback is running on this database: {who}; "
            "wait for it to finish, or stop it with pg_terminate_backend if it is stuck."
        )
    try:
        yield
    finally:
        try:
            if not conn.closed:
                conn.rollback()
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
                conn.commit()
        except psycopg.OperationalError:
            pass  # the connection died (terminated, server restart): the server released the lock with it


def wait_until_free(url: str, timeout_s: float = 30.0) -> None:
    """Wait (bounded) while another session holds this database's migration lock.

    When Dask retries a task whose worker died, that worker's kernel may still hold the lock for a
    moment (a kernel exits within a second of its parent); the retry waits for it instead of failing.
    Past the timeout, apply itself refuses and names the holder.
    """
    deadline = time.monotonic() + timeout_s
    with connection.connect(url, autocommit=True, application_name="runbook fleet") as conn:
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)).fetchone()
            assert row is not None  # a SELECT without FROM returns one row
            if row[0]:
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
                return
            if time.monotonic() > deadline:
                return
            time.sleep(0.25)
