"""The catalog reader of a release (db.reader): what goes through it, that its statements stay prepared while the
migration's connection rolls back, and reads outside a transaction in one round trip."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg.pq import TransactionStatus

from runbook_lib.batch import tableshape
from runbook_lib.batch.model import TableRef
from runbook_lib.db import catalog, reader
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply


def _reader_of(conn: psycopg.Connection) -> psycopg.Connection:
    with reader.committed(conn):
        return reader.for_catalog(conn)


def test_reads_go_through_the_reader_only_inside_committed(empty_db: str) -> None:
    with psycopg.connect(empty_db) as conn:
        assert reader.for_catalog(conn) is conn
        with reader.alongside(conn, lambda: psycopg.connect(empty_db)):
            assert reader.for_catalog(conn) is conn  # attached, not in a committed scope
            with reader.committed(conn):
                second = reader.for_catalog(conn)
                assert second is not conn and second.autocommit
                assert second.info.backend_pid != conn.info.backend_pid
            assert reader.for_catalog(conn) is conn
        assert second.closed and reader.for_catalog(conn) is conn


def test_its_catalog_queries_stay_prepared_with_generic_plans_across_rollbacks(empty_db: str) -> None:
    """On the migration's connection a savepoint rolled back makes psycopg drop every prepared statement; the
    derived tests roll back one per test, so there the table shapes were planned anew each time."""
    with psycopg.connect(empty_db) as conn:
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL)")
        conn.commit()
        with reader.alongside(conn, lambda: psycopg.connect(empty_db)):
            for _ in range(8):
                with conn.transaction(force_rollback=True):  # as validate runs a migration's tests
                    with conn.transaction(force_rollback=True):
                        conn.execute("INSERT INTO item VALUES (1, 'a')")
                    with reader.committed(conn):
                        shape = tableshape.current(conn, TableRef("item"))
                assert [c.name for c in shape.columns] == ["id", "name"]
            prepared = (
                _reader_of(conn)
                .execute("SELECT count(*), sum(generic_plans), sum(custom_plans) FROM pg_prepared_statements")
                .fetchone()
            )
        assert prepared is not None
        count, generic, custom = prepared
        assert count >= 1 and generic >= 5 and custom == 0  # planned once, used by the later reads


def test_the_reader_sees_committed_state_only(empty_db: str) -> None:
    """What it is for, and its limit: a table the migration's open transaction creates is not there for it."""
    with psycopg.connect(empty_db) as conn, reader.alongside(conn, lambda: psycopg.connect(empty_db)):
        conn.execute("CREATE TABLE item (id int)")
        with reader.committed(conn):
            assert not catalog.snapshot(conn, ["item"], count_rows=False).tables[0].exists
        assert catalog.snapshot(conn, ["item"], count_rows=False).tables[0].exists  # outside: conn's own view
        conn.commit()
        with reader.committed(conn):
            assert catalog.snapshot(conn, ["item"], count_rows=False).tables[0].exists


def test_outside_transaction_leaves_nothing_open_and_keeps_the_connection_as_it_was(empty_db: str) -> None:
    with psycopg.connect(empty_db) as conn:
        with reader.outside_transaction(conn):
            assert conn.autocommit
            conn.execute("SELECT 1")
        assert not conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE
        conn.execute("CREATE TABLE item (id int)")  # a transaction open: the read runs in a savepoint of it
        with reader.outside_transaction(conn):
            assert not conn.autocommit
            conn.execute("SELECT 1")
        assert conn.info.transaction_status == TransactionStatus.INTRANS
        conn.rollback()


def test_a_release_closes_its_reader(empty_db: str, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    for name, text in (
        ("001_item", "CREATE TABLE item (id int PRIMARY KEY);"),
        ("002_n", "ALTER TABLE item ADD n int;"),
    ):
        (migrations / name).mkdir(parents=True)
        (migrations / name / "migration.sql").write_text(text + "\n")
    release = open_session(
        "pending", database_url=empty_db, migrations_dir=migrations, reports_dir=tmp_path / "reports"
    )
    result = apply.run(release, validate_each=True)
    assert [r.status for r in result.results] == ["applied", "applied"]
    with psycopg.connect(empty_db) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runbook deploy (catalog)'"
        ).fetchone()
    assert left == (0,)
