"""Prisma's own history, `_prisma_migrations`: read as Prisma reads it, written as Prisma writes it.

Prisma's rules (its schema engine, postgres flavour):

- a row per attempt: `started_at`, then `applied_steps_count` and `finished_at` when it succeeded,
  `logs` when it failed; `migrate resolve --rolled-back` sets `rolled_back_at`, after which the row
  counts for nothing;
- a migration is applied when it has a finished row that is not rolled back;
- a row started but neither finished nor rolled back is a failed migration: `prisma migrate deploy`
  applies nothing more until `prisma migrate resolve` settles it (error P3009);
- the checksum is the sha256 of migration.sql as a hex string; Prisma accepts the file with its line
  endings as they are, or turned CRLF -> LF or LF -> CRLF (git changes them), and early versions wrote
  the hex without zero-padding each byte.

runbook writes a row the way `prisma migrate deploy` finishes a successful migration (applied_steps_count
1, logs NULL) and a baseline the way `prisma migrate resolve --applied` does (applied_steps_count 0), so
either tool can take over from the other.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

import psycopg

TABLE = "_prisma_migrations"

#: Prisma's own DDL for the table (schema engine, postgres flavour), so `prisma migrate` accepts it as its own.
DDL = """CREATE TABLE _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
);"""


@dataclass(frozen=True)
class PrismaRecord:
    action: str  # applied | rolled back | already recorded | no table
    migration_name: str
    rows: int = 0


@dataclass(frozen=True)
class PrismaRow:
    """One row of `_prisma_migrations`, as Prisma reads it."""

    migration_name: str
    checksum: str
    started_at: datetime
    finished_at: datetime | None
    rolled_back_at: datetime | None
    logs: str | None = None

    @property
    def applied(self) -> bool:
        return self.finished_at is not None and self.rolled_back_at is None

    @property
    def failed(self) -> bool:
        """Started, not finished, not rolled back: what stops `prisma migrate deploy`."""
        return self.finished_at is None and self.rolled_back_at is None


def has_table(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    return row[0]


def rows(conn: psycopg.Connection) -> list[PrismaRow]:
    """Every row in the order Prisma reads them (started_at); empty when there is no table."""
    if not has_table(conn):
        return []
    return [
        PrismaRow(*r)
        for r in conn.execute(
            f'SELECT migration_name, checksum, started_at, finished_at, rolled_back_at, logs FROM "{TABLE}"'
            " ORDER BY started_at, migration_name"
        )
    ]


def _hex_forms(data: bytes) -> set[str]:
    digest = hashlib.sha256(data).digest()
    return {digest.hex(), "".join(f"{byte:x}" for byte in digest)}  # the second: early Prisma, no zero-padding


def checksum_matches(script: bytes, checksum: str) -> bool:
    """Whether a migration.sql's bytes match a checksum Prisma stored, as Prisma itself decides it."""
    forms = _hex_forms(script)
    forms |= _hex_forms(script.replace(b"\r\n", b"\n"))
    forms |= _hex_forms(script.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return checksum in forms


def create_table(conn: psycopg.Connection) -> bool:
    """Create `_prisma_migrations` with Prisma's DDL when it is missing; True when it was created."""
    if has_table(conn):
        return False
    conn.execute(DDL)
    return True


def record_applied(
    conn: psycopg.Connection, migration_name: str, checksum: str, *, create: bool = False, ran: bool = True
) -> PrismaRecord:
    """A finished row for the migration, unless one is there; `create` makes the table first if missing.

    `ran`: the migration was executed (a row as `migrate deploy` leaves it, applied_steps_count 1);
    otherwise it is recorded as `migrate resolve --applied` does (applied_steps_count 0).
    """
    if create:
        create_table(conn)
    elif not has_table(conn):
        return PrismaRecord("no table", migration_name)
    # One statement (a release records hundreds): a finished row already there is kept, else a failed attempt
    # Prisma left behind is marked rolled back first, as resolve --applied does, and the row added.
    row = conn.execute(
        f"""WITH live AS (
              SELECT count(*) AS n FROM "{TABLE}" WHERE migration_name = %(name)s AND rolled_back_at IS NULL
                AND finished_at IS NOT NULL
            ), failed AS (
              UPDATE "{TABLE}" SET rolled_back_at = now() WHERE migration_name = %(name)s
                AND rolled_back_at IS NULL AND finished_at IS NULL AND (SELECT n FROM live) = 0
            ), added AS (
              INSERT INTO "{TABLE}" (id, checksum, logs, started_at, finished_at, migration_name, applied_steps_count)
              SELECT %(id)s, %(checksum)s, NULL, now(), now(), %(name)s, %(steps)s WHERE (SELECT n FROM live) = 0
            )
            SELECT n FROM live""",
        {"name": migration_name, "id": str(uuid.uuid4()), "checksum": checksum, "steps": 1 if ran else 0},
    ).fetchone()
    assert row is not None  # count(*) returns one row
    live = row[0]
    if live:
        return PrismaRecord("already recorded", migration_name, live)
    return PrismaRecord("applied", migration_name, 1)


def record_rolled_back(conn: psycopg.Connection, migration_name: str) -> PrismaRecord:
    if not has_table(conn):
        return PrismaRecord("no table", migration_name)
    cur = conn.execute(
        f'UPDATE "{TABLE}" SET rolled_back_at = now() WHERE migration_name = %s AND rolled_back_at IS NULL',
        (migration_name,),
    )
    return PrismaRecord("rolled back", migration_name, cur.rowcount)
