"""A second connection for runbook's own reads of the committed catalog during a release.

On the migration's connection psycopg forgets its prepared statements at every rolled-back savepoint (each
derived test has one) and every ALTER or DROP, so there runbook's catalog queries (the before and after
snapshots, the table shapes the derived tests build rows from) are planned again each time they run: on a long
release, planning them was a third of the server's time. This connection only reads, in autocommit, so its
statements stay prepared with generic plans, and a read costs no BEGIN and COMMIT either.

It sees committed state only: a read goes through it only inside `committed(conn)`, which the caller opens
where the migration's connection has nothing uncommitted that the read needs (between two migrations, or in a
migration's tests, which change rows, not the catalog). Anywhere else `for_catalog` is the connection itself.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg


@dataclass
class _Reader:
    conn: psycopg.Connection
    active: int = 0  # open `committed` scopes


_ATTACHED: weakref.WeakKeyDictionary[psycopg.Connection, _Reader] = weakref.WeakKeyDictionary()


@contextmanager
def alongside(conn: psycopg.Connection, connect: Callable[[], psycopg.Connection]) -> Iterator[None]:
    """While the block runs, `conn` has a reader opened with `connect` (the same server, role and settings)."""
    reader = connect()
    reader.autocommit = True
    reader.prepare_threshold = 2  # the same catalog query runs once or more per migration
    # Its queries read pg_catalog by oid and name: a generic plan is as good as a custom one, and planned once.
    reader.execute("SET plan_cache_mode = force_generic_plan")
    _ATTACHED[conn] = _Reader(reader)
    try:
        yield
    finally:
        _ATTACHED.pop(conn, None)
        reader.close()


@contextmanager
def committed(conn: psycopg.Connection) -> Iterator[None]:
    """Inside the block, catalog reads about `conn`'s database go through its reader, if it has one."""
    found = _ATTACHED.get(conn)
    if found is None:
        yield
        return
    found.active += 1
    try:
        yield
    finally:
        found.active -= 1


def for_catalog(conn: psycopg.Connection) -> psycopg.Connection:
    """The connection to read `conn`'s committed catalog with: its reader inside `committed`, else `conn`."""
    found = _ATTACHED.get(conn)
    return found.conn if found is not None and found.active else conn


@contextmanager
def outside_transaction(conn: psycopg.Connection) -> Iterator[None]:
    """For reads that need no transaction of their own: on an idle connection they run in autocommit, one round
    trip each instead of three (psycopg sends BEGIN and COMMIT as round trips of their own); inside a transaction,
    in a savepoint of it, as before."""
    if conn.autocommit or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        with conn.transaction():
            yield
        return
    conn.autocommit = True
    try:
        yield
    finally:
        if not conn.closed:  # a connection lost meanwhile: its own error says so
            conn.autocommit = False
