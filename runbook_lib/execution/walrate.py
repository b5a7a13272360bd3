"""The WAL a backfill writes, paced to a budget in MB per second (`--batch-wal-mb-per-s`; off by default).

A batched backfill writes WAL as fast as the disk takes it (batch 6 at 5M leads: 3 GB in under two minutes).
Every byte goes to the disk, to each standby and to the WAL archive, and the server requests a checkpoint
each time max_wal_size / (1 + checkpoint_completion_target) of it has been written: with the default 1 GB,
every 8 to 20 seconds, each ending in an fsync of the data files that application commits wait behind.
A budget keeps the WAL to what the disk, the standbys' network and the archive can take.

Between batches the backfill reads the server's WAL position (in each batch's own transaction, no extra
round trip) and sleeps what the WAL since its last reading is worth at the budget. The position is the
server's (`pg_current_wal_insert_lsn()`), so the application's WAL leaves the backfill less room: the disk,
the standbys and the checkpoints are the server's too.

Measured (benchmarks/RESULTS.md §7c): paced to 18.8 MB/s, checkpoints 30 s apart with the default
max_wal_size, batch 6 at 5M leads took twice as long and the application had as many operations over
20 ms as unpaced (53 to 70 per run against 44 to 68). So it is a limit to ask for, not a default.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MB = 1_000_000
CREDIT_S = 1.0  # time a slow stretch may save up for a burst after it

# The server's WAL position in bytes, read inside each batch's transaction.
POSITION_SQL = "pg_current_wal_insert_lsn() - '0/0'::pg_lsn"


@dataclass
class WalPace:
    """Sleeps between batches so that the WAL written stays under `mb_per_s` (0: never sleeps).

    `note(position)` takes the server's WAL position (bytes) read in the batch just committed; `pause()`
    then sleeps what the WAL since the last position is worth beyond the time that passed. Time left unused
    is saved for at most CREDIT_S, so a pause for replica lag is not followed by a burst.
    """

    mb_per_s: float
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    paused_s: float = 0.0
    written: int = 0  # WAL bytes the server wrote between the first and the last position noted
    _position: int | None = None
    _at: float = 0.0
    _owed_s: float = 0.0

    def note(self, position: int) -> int:
        """The WAL bytes since the last position noted (0 for the first)."""
        now = self.clock()
        if self._position is None:  # the first batch: the budget starts counting here
            self._position, self._at = position, now
            return 0
        grown = max(position - self._position, 0)
        self.written += grown
        if self.mb_per_s > 0:
            self._owed_s = max(self._owed_s - (now - self._at), -CREDIT_S) + grown / (self.mb_per_s * MB)
        self._position, self._at = position, now
        return grown

    def pause(self) -> float:
        """Sleep what is still owed (time passed since `note` counts); the seconds slept."""
        now = self.clock()
        owed = self._owed_s - (now - self._at)
        if owed <= 0:
            self._owed_s, self._at = max(owed, -CREDIT_S), now
            return 0.0
        self.sleep(owed)
        self.paused_s += owed
        self._owed_s, self._at = 0.0, self.clock()
        return owed
