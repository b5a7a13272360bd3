"""Replica lag, read on the primary between a backfill's batches: pause while replicas fall behind.

A backfill writes as fast as the primary commits; a replica replays that WAL on one process and can fall
behind, serving stale reads (and, with synchronous replication, slowing every commit). pg_stat_replication
on the primary has one row per standby with `replay_lag`; a role without pg_monitor sees NULL there, which
counts as unknown (no pause), never as zero lag proven.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from runbook_lib.execution import live

POLL_S = 1.0  # how often a paused backfill reads the lag again

_LAG_SQL = "SELECT max(extract(epoch FROM replay_lag)) * 1000 FROM pg_stat_replication"


def lag_ms(conn: psycopg.Connection) -> float | None:
    """The largest replay lag of the primary's standbys in ms; None without a standby (or without the right)."""
    value = conn.execute(_LAG_SQL).fetchone()[0]
    conn.commit()  # a paused backfill must not hold a snapshot open (it would hold back vacuum)
    return None if value is None else float(value)


@dataclass
class LagWatch:
    """Pauses between batches while replay lag is over `threshold_ms` (0: never reads it)."""

    threshold_ms: int
    read: Callable[[psycopg.Connection], float | None] = lag_ms
    sleep: Callable[[float], None] = time.sleep
    paused_s: float = 0.0
    pauses: int = 0

    def over(self, reading: float | None) -> bool:
        """Pause on a reading over the threshold; no standby (None) is no reason to wait."""
        return self.threshold_ms > 0 and reading is not None and reading > self.threshold_ms

    def wait(self, conn: psycopg.Connection, what: str) -> float:
        """Return once lag is under the threshold; the seconds waited (also added to `paused_s`)."""
        if self.threshold_ms <= 0:
            return 0.0
        started = time.perf_counter()
        reading = self.read(conn)
        if not self.over(reading):
            return 0.0
        self.pauses += 1
        while self.over(reading):
            live.emit(live.BACKFILL, f"{what}: paused, replica replay lag {reading:,.0f} ms is over "
                                     f"{self.threshold_ms:,} ms")
            self.sleep(POLL_S)
            reading = self.read(conn)
        waited = time.perf_counter() - started
        self.paused_s += waited
        return waited
