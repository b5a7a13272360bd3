"""How long a migration would block writes, measured on this database before it runs.

A statement that scans or rewrites a table while holding a lock that blocks writes (SET NOT NULL,
ADD FOREIGN KEY, ADD CHECK, CREATE INDEX, ALTER COLUMN TYPE ...) stalls every writer for about as
long as PostgreSQL takes to read that table. Preflight times a read-only scan of each such table
(a sample, extrapolated, when the table is large) and compares it with a threshold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from runbook_lib.db import catalog
from runbook_lib.sql.analysis import StatementAnalysis

SAMPLE_ABOVE_BYTES = 64 * 1024 * 1024  # tables larger than this are timed on a sample
SAMPLE_PERCENT = 2.0
REWRITE_FACTOR = 3.0  # a rewrite reads the table, writes it again and rebuilds its indexes


@dataclass(frozen=True)
class LockCost:
    """One statement's write-blocking time, estimated from a measured scan."""

    statement_index: int
    kind: str
    table: str
    mode: str
    rows_estimate: int
    bytes: int
    estimate_ms: float
    method: str
    over_threshold: bool
    alternative: str


def alternative(kind: str) -> str:
    """The online way to make the same change, for the WARN that names it."""
    if "SET NOT NULL" in kind:
        return (
            "add CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT (writes continue), "
            "then SET NOT NULL skips its scan and DROP the CHECK (apply --strategy online does this)"
        )
    if "ADD FOREIGN KEY" in kind:
        return (
            "ADD the foreign key NOT VALID, then VALIDATE CONSTRAINT in its own transaction (writes continue; "
            "apply --strategy online does this)"
        )
    if "ADD CHECK" in kind:
        return (
            "ADD the CHECK NOT VALID, then VALIDATE CONSTRAINT in its own transaction (writes continue; "
            "apply --strategy online does this)"
        )
    if kind.startswith("CREATE INDEX") or kind.startswith("CREATE UNIQUE INDEX"):
        return "CREATE INDEX CONCURRENTLY, in a batch of its own (it cannot run in a transaction)"
    if "ALTER COLUMN TYPE" in kind:
        return "add a new column, backfill it in small batches, then swap names in a short transaction"
    if kind in ("UPDATE", "DELETE"):
        return "backfill in small batches (by id range), each its own short transaction"
    return "split the change so the table is read without a lock that blocks writes"


def scan_ms(conn: psycopg.Connection, table: str, table_bytes: int) -> tuple[float, str]:
    """Time a read of the whole table (or a sample of its pages, extrapolated), in milliseconds."""
    if table_bytes > SAMPLE_ABOVE_BYTES:
        stmt = sql.SQL("SELECT count(*) FROM {} TABLESAMPLE SYSTEM ({})").format(
            sql.SQL(catalog.regclass_text(table)), sql.Literal(SAMPLE_PERCENT)
        )
        factor, method = 100.0 / SAMPLE_PERCENT, f"{SAMPLE_PERCENT:g}% page sample, extrapolated"
    else:
        stmt = sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(catalog.regclass_text(table)))
        factor, method = 1.0, "full scan timed"
    started = time.perf_counter()
    with conn.transaction():  # a savepoint: a failure here never spoils the preflight transaction
        conn.execute(stmt)
    return (time.perf_counter() - started) * 1000 * factor, method


def estimate(
    conn: psycopg.Connection,
    statements: list[StatementAnalysis],
    sizes: dict[str, tuple[int, int]],
    *,
    threshold_ms: float,
) -> list[LockCost]:
    """Costs for the statements that block writes while they scan or rewrite; `sizes` maps table -> (rows, bytes)."""
    measured: dict[str, tuple[float, str]] = {}
    costs = []
    for stmt in statements:
        if not (stmt.blocks_writes and (stmt.scans or stmt.rewrites)) or not stmt.locks:
            continue
        target = stmt.locks[0]
        if target.table not in sizes:
            continue  # created by the batch itself, or does not exist yet
        rows, size = sizes[target.table]
        if target.table not in measured:
            measured[target.table] = scan_ms(conn, target.table, size)
        ms, method = measured[target.table]
        if stmt.rewrites:
            ms, method = ms * REWRITE_FACTOR, f"{method}, x{REWRITE_FACTOR:g} for the rewrite"
        costs.append(
            LockCost(
                stmt.index,
                stmt.kind,
                target.table,
                target.mode,
                rows,
                size,
                round(ms, 3),
                method,
                ms > threshold_ms,
                alternative(stmt.kind),
            )
        )
    return costs
