"""Fixtures: roles as production has them, on a database of their own.

An owner role that owns the database (not a superuser, no predefined roles), an application role with DML
grants only, a person who logs in as themselves and may act as the owner (--role), and a reader with
pg_read_all_data. Roles are the cluster's: each set gets a fresh suffix and is dropped with its database.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import conninfo, sql

from runbook_lib.db import example


@dataclass
class Roles:
    """Login URLs of each role, on one database the owner role owns."""

    server: str
    database: str
    owner: str  # owns the database and, loaded by it, the tables
    app: str  # DML on the tables
    person: str  # logs in as itself, member of owner: --role owner
    reader: str  # pg_read_all_data only
    names: dict[str, str] = field(default_factory=dict)


def _url(base: str, user: str, database: str) -> str:
    return conninfo.make_conninfo(base, user=user, dbname=database)


@contextmanager
def owned_database(server_url: str) -> Iterator[Roles]:
    suffix = uuid.uuid4().hex[:8]
    names = {k: f"rb_{k}_{suffix}" for k in ("owner", "app", "person", "reader")}
    database = f"owned_{suffix}"
    ident = {k: sql.Identifier(v) for k, v in names.items()}
    with psycopg.connect(server_url, autocommit=True) as conn:
        for key in names:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(ident[key]))
        conn.execute(sql.SQL("GRANT {} TO {}").format(ident["owner"], ident["person"]))
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(ident["reader"]))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), ident["owner"]))
    with psycopg.connect(conninfo.make_conninfo(server_url, dbname=database), autocommit=True) as conn:
        # PostgreSQL 15+: public belongs to pg_database_owner, so the owner may create in it; older servers let
        # everyone. Either way, nothing more than what a managed server's database owner gets.
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(sql.SQL("GRANT CREATE, USAGE ON SCHEMA public TO {}").format(ident["owner"]))
    roles = Roles(
        server_url,
        database,
        *(_url(server_url, names[k], database) for k in ("owner", "app", "person", "reader")),
        names=names,
    )
    try:
        yield roles
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            for key in ("person", "reader", "app", "owner"):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident[key]))


@pytest.fixture
def owned(server_url: str) -> Iterator[Callable[..., Roles]]:
    """Factory: a database the owner role owns, with the example loaded as the owner (`load=True`) and DML
    granted to the application role; dropped, with its roles, after the test."""
    with contextlib.ExitStack() as stack:

        def make(*, load: bool = True) -> Roles:
            roles = stack.enter_context(owned_database(server_url))
            if load:
                with psycopg.connect(roles.owner) as conn:
                    example.load(conn)
                    conn.execute(
                        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(
                            sql.Identifier(roles.names["app"])
                        )
                    )
            return roles

        yield make
