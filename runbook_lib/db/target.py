"""The database a command works on: --database-url, else DATABASE_URL, else the embedded server."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from runbook_lib import config
from runbook_lib.db import connection, embedded


@dataclass(frozen=True)
class Target:
    """A database to run against, and how to show it (never with its password)."""

    url: str = field(repr=False)
    embedded: bool = False

    @property
    def shown(self) -> str:
        return connection.redact(self.url)

    @property
    def name(self) -> str:
        return connection.database_name(self.url)


def resolve(database_url: str | None = None, *, create: bool = True) -> Target:
    """The target of a command; the embedded server is started here, in the parent process, never in a kernel.

    A URL given is tried at once, so a bad one fails with one sentence before any notebook starts.
    """
    url = config.environment_url(database_url)
    if url:
        connection.connect(url).close()
        return Target(url, embedded=False)
    server = embedded.start()
    if create:
        ensure_database(server.url, embedded.DEMO_DATABASE)
    return Target(server.database_url(embedded.DEMO_DATABASE), embedded=True)


def ensure_database(server_url: str, name: str) -> None:
    with connection.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
