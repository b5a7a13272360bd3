"""Watching a statement that runs long, from a connection of its own: how long, waiting on what, how far.

A VALIDATE CONSTRAINT or CREATE INDEX on a large table runs for minutes inside one `execute`; nothing in the
migration's own connection can speak meanwhile. After `DELAY_S` a thread opens a second connection and reads
pg_stat_activity (and pg_stat_progress_create_index, the one progress view for DDL) for the migration's pid,
turning what it sees into live events. A statement shorter than the delay costs an entry in the one timer
thread's agenda and nothing else (a thread per statement cost a release of thousands of statements its time).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from runbook_lib.db import connection as database
from runbook_lib.execution import live

DELAY_S = 1.0  # statements shorter than this are not watched at all
POLL_S = 0.5

_SQL = """
SELECT extract(epoch FROM clock_timestamp() - a.query_start) AS running_s, a.state, a.wait_event_type,
       a.wait_event, p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total
FROM pg_stat_activity a LEFT JOIN pg_stat_progress_create_index p ON p.pid = a.pid
WHERE a.pid = %s
"""


def describe(what: str, row: tuple) -> tuple[str, float | None, float | None, str]:
    """The line a person reads for one poll, and the figures for a bar when the server reports them."""
    running_s, _state, wait_type, wait_event, phase, blocks_done, blocks_total, tuples_done, tuples_total = row
    text = f"{what}: running {float(running_s or 0):.0f} s"
    if wait_type == "Lock":
        text += f", waiting for a {wait_event} lock"
    done = total = None
    unit = ""
    if phase:
        text += f", {phase}"
        if blocks_total:
            done, total, unit = float(blocks_done), float(blocks_total), "blocks"
        elif tuples_total:
            done, total, unit = float(tuples_done), float(tuples_total), "rows"
        if done is not None and total:  # set together
            text += f" ({100 * done / total:.0f}% of {int(total):,} {unit})"
    return text, done, total, unit


class _Watcher:
    def __init__(self, url: str, pid: int, what: str) -> None:
        self.url, self.pid, self.what = url, pid, what
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None  # started once the statement outlasted DELAY_S
        self.seen = False

    def start_watching(self) -> None:
        self.thread = threading.Thread(target=self._run, name="runbook watch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with database.connect(self.url, autocommit=True, application_name="runbook watch", as_login=True) as conn:
                while not self.stop.is_set():
                    row = conn.execute(_SQL, (self.pid,)).fetchone()
                    if row is None or row[1] != "active":
                        break
                    text, done, total, unit = describe(self.what, row)
                    live.emit(live.STATEMENT, text, done=done, total=total, unit=unit)
                    self.seen = True
                    self.stop.wait(POLL_S)
        except Exception:  # a watcher that cannot watch (connection refused, a server gone) must not fail the migration
            return

    def close(self) -> None:
        _AGENDA.cancel(self)
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=2)
        if self.seen:
            live.emit(live.STATEMENT, f"{self.what}: finished", final=True)


class _Agenda:
    """One daemon thread for every statement being run: it starts a statement's watcher once DELAY_S has passed
    and the statement has not ended (most end long before)."""

    def __init__(self) -> None:
        self._due: dict[_Watcher, float] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, watcher: _Watcher) -> None:
        with self._changed:
            self._due[watcher] = time.monotonic() + DELAY_S
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="runbook watch agenda", daemon=True)
                self._thread.start()
            self._changed.notify()

    def cancel(self, watcher: _Watcher) -> None:
        with self._changed:
            self._due.pop(watcher, None)

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for watcher in [w for w, due in self._due.items() if due <= now]:
                    del self._due[watcher]
                    watcher.start_watching()
                self._changed.wait(min(self._due.values(), default=now + 60) - now)


_AGENDA = _Agenda()


@contextmanager
def statement(url: str | None, conn: psycopg.Connection, what: str) -> Iterator[None]:
    """Watch the statement `conn` runs inside the block, when it outlasts DELAY_S."""
    if url is None:
        yield
        return
    watcher = _Watcher(url, conn.info.backend_pid, what)
    _AGENDA.add(watcher)
    try:
        yield
    finally:
        watcher.close()
