"""PostgreSQL's table-level lock modes and which of them conflict.

The conflict table is the one in the PostgreSQL manual, "Explicit Locking", table 13.2
(https://www.postgresql.org/docs/current/explicit-locking.html). Mode names are spelled as
the manual and `LOCK TABLE` spell them ("SHARE UPDATE EXCLUSIVE"); `pg_locks.mode` spells
them in CamelCase ("ShareUpdateExclusiveLock"), which `from_pg_locks` translates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

LOCK_MODES: tuple[str, ...] = (
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)
"""Table lock modes, weakest first; position + 1 is PostgreSQL's LOCKMODE number."""

# Table 13.2, one row per requested mode: the modes it conflicts with. The relation is
# symmetric; the test suite checks that this table says so.
_CONFLICTS: dict[str, frozenset[str]] = {
    "ACCESS SHARE": frozenset({"ACCESS EXCLUSIVE"}),
    "ROW SHARE": frozenset({"EXCLUSIVE", "ACCESS EXCLUSIVE"}),
    "ROW EXCLUSIVE": frozenset({"SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"}),
    "SHARE UPDATE EXCLUSIVE": frozenset(
        {"SHARE UPDATE EXCLUSIVE", "SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"}
    ),
    "SHARE": frozenset(
        {"ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"}
    ),
    "SHARE ROW EXCLUSIVE": frozenset(
        {
            "ROW EXCLUSIVE",
            "SHARE UPDATE EXCLUSIVE",
            "SHARE",
            "SHARE ROW EXCLUSIVE",
            "EXCLUSIVE",
            "ACCESS EXCLUSIVE",
        }
    ),
    "EXCLUSIVE": frozenset(set(LOCK_MODES) - {"ACCESS SHARE"}),
    "ACCESS EXCLUSIVE": frozenset(LOCK_MODES),
}

# What each mode is taken for in everyday SQL, used to say what a lock blocks.
_TAKEN_BY_READS = "ACCESS SHARE"  # SELECT
_TAKEN_BY_WRITES = "ROW EXCLUSIVE"  # INSERT, UPDATE, DELETE, MERGE


def _mode(mode: str) -> str:
    normal = " ".join(mode.replace("_", " ").split()).upper()
    if normal.endswith(" MODE"):
        normal = normal[: -len(" MODE")]
    if normal not in _CONFLICTS:
        raise ValueError(f"unknown lock mode {mode!r}; expected one of {', '.join(LOCK_MODES)}")
    return normal


def conflicts(a: str, b: str) -> bool:
    """Whether a lock in mode `a` and a lock in mode `b` on the same table conflict."""
    return _mode(b) in _CONFLICTS[_mode(a)]


def blocks_writes(mode: str) -> bool:
    """Whether holding `mode` makes INSERT/UPDATE/DELETE on the table wait (conflicts with ROW EXCLUSIVE)."""
    return conflicts(mode, _TAKEN_BY_WRITES)


def blocks_reads(mode: str) -> bool:
    """Whether holding `mode` makes a plain SELECT on the table wait (conflicts with ACCESS SHARE)."""
    return conflicts(mode, _TAKEN_BY_READS)


def strongest(modes: Iterable[str]) -> str:
    """The strongest of `modes` (the one latest in LOCK_MODES); ValueError when there are none."""
    normal = [_mode(m) for m in modes]
    if not normal:
        raise ValueError("strongest() of no lock modes")
    return max(normal, key=LOCK_MODES.index)


def from_pg_locks(mode: str) -> str:
    """Translate a `pg_locks.mode` value ("AccessExclusiveLock") to its LOCK_MODES name."""
    if not mode.endswith("Lock"):
        raise ValueError(f"{mode!r} is not a pg_locks table lock mode")
    words = re.findall(r"[A-Z][a-z]*", mode[: -len("Lock")])
    name = " ".join(words).upper()
    if name not in _CONFLICTS:
        # pg_locks also shows SIReadLock (predicate locks), which are not table lock modes.
        raise ValueError(f"{mode!r} is not a pg_locks table lock mode")
    return name


def to_pg_locks(mode: str) -> str:
    """Translate a LOCK_MODES name to the spelling `pg_locks.mode` uses ("AccessExclusiveLock")."""
    return "".join(word.capitalize() for word in _mode(mode).split()) + "Lock"


def from_number(lockmode: int) -> str:
    """The mode for PostgreSQL's LOCKMODE number (1 = ACCESS SHARE ... 8 = ACCESS EXCLUSIVE)."""
    if not 1 <= lockmode <= len(LOCK_MODES):
        raise ValueError(f"lock mode number {lockmode} is outside 1..{len(LOCK_MODES)}")
    return LOCK_MODES[lockmode - 1]


def blocked_operations(mode: str) -> tuple[str, ...]:
    """Everyday operations that wait while `mode` is held: 'reads', 'writes', 'DDL', as applicable."""
    blocked = []
    if blocks_reads(mode):
        blocked.append("reads")
    if blocks_writes(mode):
        blocked.append("writes")
    # VACUUM, ANALYZE, CREATE INDEX CONCURRENTLY and most DDL take at least SHARE UPDATE EXCLUSIVE.
    if conflicts(mode, "SHARE UPDATE EXCLUSIVE"):
        blocked.append("DDL")
    return tuple(blocked)
