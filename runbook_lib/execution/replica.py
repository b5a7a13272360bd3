"""Replica lag, read on the primary between a backfill's batches: pause while replicas fall behind.

A backfill writes as fast as the primary commits; a replica replays that WAL on one process and can fall
behind, serving stale reads (and, with synchronous replication, slowing every commit). pg_stat_replication
on the primary has one row per standby with `replay_lag`; a role without pg_monitor sees NULL there, which
counts as unknown (no pause), never as zero lag proven.

`replay_lag` is measured when the standby reports replaying something: a standby that stopped replaying
(replay paused, a conflict, a slow disk) reports nothing new and its last figure stays. So the watch also
follows each standby's `replay_lsn`: while the primary's WAL is ahead of it and it has not moved, the
standby is behind by at least the time since it last moved.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from runbook_lib.execution import live

POLL_S = 1.0  # how often a paused backfill reads the lag again

_STANDBYS_SQL = """
SELECT pid, extract(epoch FROM replay_lag)::float * 1000, replay_lsn::text,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float
FROM pg_stat_replication
"""


@dataclass(frozen=True)
class Standby:
    """One row of pg_stat_replication, as the watch reads it (NULLs without pg_monitor)."""

    pid: int
    replay_lag_ms: float | None
    replay_lsn: str | None
    behind_bytes: float | None


def standbys(conn: psycopg.Connection) -> list[Standby]:
    rows = conn.execute(_STANDBYS_SQL).fetchall()
    conn.commit()  # a paused backfill must not hold a snapshot open (it would hold back vacuum)
    return [Standby(*row) for row in rows]


@dataclass
class LagWatch:
    """Pauses between batches while replay lag is over `threshold_ms` (0: never reads it).

    `read` (tests) replaces the reading of the server; by default `measure`.
    """

    threshold_ms: int
    read: Callable[[psycopg.Connection], float | None] | None = None
    sleep: Callable[[float], None] = time.sleep
    paused_s: float = 0.0
    pauses: int = 0
    _still: dict[int, tuple[str, float]] = field(default_factory=dict)  # pid -> (replay_lsn, since when)

    def measure(self, conn: psycopg.Connection) -> float | None:
        """The worst lag of any standby: its replay_lag, or longer while it has stopped replaying."""
        now, worst = time.monotonic(), None
        for standby in standbys(conn):
            lag = standby.replay_lag_ms
            if standby.replay_lsn is not None and (standby.behind_bytes or 0) > 0:
                seen = self._still.get(standby.pid)
                if seen is None or seen[0] != standby.replay_lsn:
                    self._still[standby.pid] = (standby.replay_lsn, now)
                else:
                    lag = max(lag or 0.0, (now - seen[1]) * 1000)
            else:
                self._still.pop(standby.pid, None)  # caught up
            if lag is not None:
                worst = lag if worst is None else max(worst, lag)
        return worst

    def over(self, reading: float | None) -> bool:
        """Pause on a reading over the threshold; no standby (None) is no reason to wait."""
        return self.threshold_ms > 0 and reading is not None and reading > self.threshold_ms

    def wait(self, conn: psycopg.Connection, what: str) -> float:
        """Return once lag is under the threshold; the seconds waited (also added to `paused_s`)."""
        if self.threshold_ms <= 0:
            return 0.0
        read = self.read or self.measure
        started = time.perf_counter()
        reading = read(conn)
        if not self.over(reading):
            return 0.0
        self.pauses += 1
        while self.over(reading):
            live.emit(
                live.BACKFILL, f"{what}: paused, replica replay lag {reading:,.0f} ms is over {self.threshold_ms:,} ms"
            )
            self.sleep(POLL_S)
            reading = read(conn)
        waited = time.perf_counter() - started
        self.paused_s += waited
        return waited
