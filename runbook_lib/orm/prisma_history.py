"""Keep Prisma in agreement: record in `_prisma_migrations` exactly as `prisma migrate resolve` would.

`--applied` inserts a row (a new uuid, the sha256 hex of migration.sql, logs '', started_at =
finished_at = now); `--rolled-back` sets rolled_back_at on the migration's rows, so Prisma ignores
them and `prisma migrate deploy` would apply the migration again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg

TABLE = "_prisma_migrations"


@dataclass(frozen=True)
class PrismaRecord:
    action: str  # applied | rolled back | already recorded | no table
    migration_name: str
    rows: int = 0


def has_table(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()[0]


def record_applied(conn: psycopg.Connection, migration_name: str, checksum: str) -> PrismaRecord:
    if not has_table(conn):
        return PrismaRecord("no table", migration_name)
    live = conn.execute(
        f'SELECT count(*) FROM "{TABLE}" WHERE migration_name = %s AND rolled_back_at IS NULL'
        " AND finished_at IS NOT NULL",
        (migration_name,),
    ).fetchone()[0]
    if live:
        return PrismaRecord("already recorded", migration_name, live)
    # A failed attempt Prisma left behind is marked rolled back first, as resolve --applied does.
    conn.execute(
        f'UPDATE "{TABLE}" SET rolled_back_at = now() WHERE migration_name = %s'
        " AND rolled_back_at IS NULL AND finished_at IS NULL",
        (migration_name,),
    )
    conn.execute(
        f'INSERT INTO "{TABLE}" (id, checksum, logs, started_at, finished_at, migration_name)'
        " VALUES (%s, %s, '', now(), now(), %s)",
        (str(uuid.uuid4()), checksum, migration_name),
    )
    return PrismaRecord("applied", migration_name, 1)


def record_rolled_back(conn: psycopg.Connection, migration_name: str) -> PrismaRecord:
    if not has_table(conn):
        return PrismaRecord("no table", migration_name)
    cur = conn.execute(
        f'UPDATE "{TABLE}" SET rolled_back_at = now() WHERE migration_name = %s AND rolled_back_at IS NULL',
        (migration_name,),
    )
    return PrismaRecord("rolled back", migration_name, cur.rowcount)
