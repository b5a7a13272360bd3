"""Past a checkpoint's worth of WAL, the backfill's session writes the pages it dirties back as it goes.

A backfill that writes more WAL than max_wal_size / (1 + checkpoint_completion_target) makes the server
request checkpoints while it runs (batch 6 at 5M leads: 3 GB, a checkpoint every 8 to 20 s). The pages the
backfill's session and its VACUUM evict from shared buffers reach the kernel dirty (backend_flush_after is 0
by default), and each checkpoint ends with an fsync of the data files that waits for all of them: the
application's commits wait behind it for their own WAL flush (bursts of 5 to 15 operations over 20 ms at each
checkpoint's end; benchmarks/RESULTS.md §7, §7d). From that much WAL on, the session sets backend_flush_after,
so that the kernel writes those pages back as they come instead.

The count survives a stop: each batch's position in the ledger carries it, and a resumed migration goes on
from there (backfill.Context), not from zero. Below it nothing changes: a backfill that brings no checkpoint
leaves its writes to the kernel (within vm.dirty_expire_centisecs) and the next checkpoint. Neither way is
free at 1M leads: the kernel's write-back stalled the application up to 91 ms in the 40 s after the apply
(§7e), flushing as it went 77 ms inside it (§7d). At 5M, writing back from the checkpoint distance on,
nothing was left to stall it after the apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from runbook_lib.execution.walrate import MB

FLUSH_AFTER = "256kB"  # PostgreSQL's own checkpoint_flush_after on Linux

# The WAL after which the server requests a checkpoint (xlog.c: CheckPointSegments), in bytes.
_DISTANCE_SQL = (
    "SELECT setting::numeric * 1048576 / (1 + current_setting('checkpoint_completion_target')::numeric) "
    "FROM pg_settings WHERE name = 'max_wal_size' AND unit = 'MB'"
)


@dataclass
class Writeback:
    """The migration's WAL across its batched steps, and whether its session writes back as it goes.

    `from_mb`: None waits for the server's checkpoint distance; 0 never flushes; else that many MB.
    """

    from_mb: float | None = None
    written: int = 0  # WAL bytes the server wrote while this migration's batches ran
    since_mb: float | None = None  # the WAL (MB) at which the session began to flush, or found it flushing
    setting: str = ""  # backend_flush_after as the server reports it from then on
    kept: bool = False  # the session already flushed (a role's or the server's setting): left as it was
    _threshold: int | None = None  # bytes, once known

    def add(self, conn: psycopg.Connection, grown: int) -> None:
        """Count a batch's WAL; at the threshold, have the session flush (one statement, once per migration)."""
        self.written += grown
        if self.since_mb is not None or self.from_mb == 0:
            return
        if self._threshold is None:
            self._threshold = int(self.from_mb * MB) if self.from_mb is not None else _distance(conn)
            if self._threshold is None:  # a server that does not say: asked once, never flushed
                self.from_mb = 0
                return
        if self.written < self._threshold:
            return
        row = conn.execute("SELECT current_setting('backend_flush_after')").fetchone()
        assert row is not None  # a SELECT without FROM: always one row
        current = row[0]
        self.kept = current != "0"
        if not self.kept:  # session-wide: the VACUUM after the last batch flushes too
            row = conn.execute("SELECT set_config('backend_flush_after', %s, false)", (FLUSH_AFTER,)).fetchone()
            assert row is not None  # a SELECT without FROM: always one row
            current = row[0]
        conn.commit()
        self.since_mb, self.setting = round(self.written / MB, 1), current

    @property
    def threshold_mb(self) -> float | None:
        return round(self._threshold / MB, 1) if self._threshold is not None else None

    @property
    def threshold(self) -> str:
        """Where the threshold came from, for the record."""
        if self.from_mb is not None:
            return f"--batch-flush-from-mb {self.from_mb:g}"
        if self._threshold is None:
            return ""
        return (
            f"the server's checkpoint distance, {self.threshold_mb:,.0f} MB "
            "(max_wal_size / (1 + checkpoint_completion_target))"
        )


def _distance(conn: psycopg.Connection) -> int | None:
    row = conn.execute(_DISTANCE_SQL).fetchone()
    conn.commit()
    return int(row[0]) if row and row[0] is not None else None
