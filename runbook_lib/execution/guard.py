"""The live guard: a pending lock request with an application session queued behind it is cancelled at once.

Looking before requesting (`execution.blockers`) leaves a race: a blocker that starts between the look and
the request, or a young transaction that then stays. The request then waits, and every conflicting request
after it waits behind it, until lock_timeout. While a step's statements run, a thread with a connection of
its own polls: when the migration's backend waits for a lock and another session is blocked by it
(pg_locks, pg_blocking_pids), it cancels the migration's statement in the same query (pg_cancel_backend). The step
rolls back and is retried like a lock timeout, and its next look finds the blocker and waits without queuing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from runbook_lib.db import connection as database

POLL_S = 0.005  # the longest an application session queues behind a pending request, give or take a query

# One statement: the check and the cancel cannot be told apart by a lock granted in between. Only pg_locks
# and pg_blocking_pids, which every role reads whole: pg_stat_activity hides another role's wait events
# from a role without pg_read_all_stats, and the guard must see an application queue all the same.
_CANCEL_SQL = """
WITH me AS (
    SELECT %(pid)s::int AS pid WHERE EXISTS (SELECT FROM pg_locks WHERE pid = %(pid)s AND NOT granted)
), queued AS (
    SELECT l.pid FROM pg_locks l, me
    WHERE NOT l.granted AND l.pid <> me.pid AND me.pid = ANY(pg_blocking_pids(l.pid))
    LIMIT 1
)
SELECT q.pid, coalesce(a.application_name, ''), coalesce(a.usename, ''), pg_cancel_backend(%(pid)s)
FROM queued q LEFT JOIN pg_stat_activity a ON a.pid = q.pid
"""


# (url, backend pid) -> the guard a release shares between its migrations (`shared`)
_SHARED: dict[tuple[str, int], Guard] = {}


@contextmanager
def shared(url: str, pid: int) -> Iterator[Guard]:
    """Within the block, every run on backend `pid` is watched by one guard: a release of hundreds of migrations
    pays for one thread and one connection, not one per migration."""
    watcher = Guard(url, pid)
    _SHARED[(url, pid)] = watcher
    try:
        yield watcher
    finally:
        if _SHARED.get((url, pid)) is watcher:
            del _SHARED[(url, pid)]
        watcher.close()


def shared_for(url: str, pid: int) -> Guard | None:
    """The guard `shared` opened for this backend, if a block of it is open."""
    return _SHARED.get((url, pid))


class Guard:
    """One per run: a thread that watches the migration's backend while a step's statements run."""

    def __init__(self, url: str, pid: int) -> None:
        self.url, self.pid = url, pid
        self._active = threading.Event()
        self._stop = threading.Event()
        self._polling = threading.Lock()  # held for a poll: `watching` ends only once no cancel is in flight
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection | None = None
        self.fired: str = ""  # who queued, when this step's request was cancelled; "" when it was not
        self.cancels = 0

    @contextmanager
    def watching(self) -> Iterator[Guard]:
        """Guard the statements run inside the block; `fired` says whether the guard cancelled one."""
        self.fired = ""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="runbook guard", daemon=True)
            self._thread.start()
        self._active.set()
        try:
            yield self
        finally:
            self._active.clear()
            self.settle()

    def settle(self) -> str:
        """`fired`, once a poll under way has finished: its cancel can reach the statement before its answer
        reaches this thread, so a statement that was cancelled asks here whether the guard did it."""
        with self._polling:
            return self.fired

    def _run(self) -> None:
        try:
            self._conn = database.connect(self.url, autocommit=True, application_name="runbook guard", as_login=True)
            while not self._stop.is_set():
                if not self._active.wait(0.1):
                    continue
                with self._polling:
                    if not self._active.is_set():
                        continue
                    row = self._conn.execute(_CANCEL_SQL, {"pid": self.pid}).fetchone()
                    if row is not None and row[3]:
                        self.fired = f"session {row[0]} ({row[1] or row[2]}) queued behind the lock request"
                        self.cancels += 1
                        self._active.clear()  # one cancel per step attempt
                self._stop.wait(POLL_S)
        except Exception:  # a guard that cannot watch (connection refused, server gone) leaves lock_timeout in charge
            return

    def close(self) -> None:
        self._stop.set()
        self._active.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._conn is not None:
            self._conn.close()
