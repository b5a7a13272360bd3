"""Validation's "no rows left behind" counts the rows runbook's own tests wrote and kept, never the
rows the application writes while validate runs (issue 16, point 3)."""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path

import psycopg

from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, validate


def _batch(root: Path, validation_sql: str = "") -> Path:
    folder = root / "migrations" / "001_label"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text("ALTER TABLE thing ALTER COLUMN label SET NOT NULL;\n")
    (folder / "batch.toml").write_text('batch = 1\ntitle = "label"\n[checks]\nnot_null = ["thing.label"]\n')
    if validation_sql:
        (folder / "validation.sql").write_text(textwrap.dedent(validation_sql))
    return root / "migrations"


def _applied(url: str, tmp_path: Path, validation_sql: str = "") -> Path:
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE thing (id bigserial PRIMARY KEY, label text, n int)")
        conn.execute("INSERT INTO thing (label, n) SELECT 'row ' || g, g FROM generate_series(1, 50) g")
    migrations = _batch(tmp_path, validation_sql)
    apply.run(open_session(1, database_url=url, migrations_dir=migrations, reports_dir=tmp_path / "r"))
    return migrations


def _count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM thing").fetchone()[0]


def test_rows_the_application_inserts_during_validation_are_not_left_behind(empty_db: str, tmp_path: Path) -> None:
    migrations = _applied(empty_db, tmp_path)
    stop, first_write = threading.Event(), threading.Event()

    def application() -> None:
        with psycopg.connect(empty_db, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO thing (label, n) VALUES ('from the application', 1)")
                first_write.set()

    writer = threading.Thread(target=application)
    writer.start()
    try:
        assert first_write.wait(30)
        before = _count(empty_db)
        result = validate.run(
            open_session(1, database_url=empty_db, migrations_dir=migrations, reports_dir=tmp_path / "r")
        )
        after = _count(empty_db)
    finally:
        stop.set()
        writer.join()
    assert after > before  # the application wrote while validate ran (the old count comparison saw these)
    assert result.ok and result.total > 0
    assert result.leftover_rows == 0


def test_rows_committed_by_the_tests_own_transactions_are_counted_and_no_others(empty_db: str) -> None:
    """What a block that ends the tests' transaction (a COMMIT) would leave: its rows, not the application's."""
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE thing (id bigserial PRIMARY KEY, label text, n int)")
        conn.execute("INSERT INTO thing (label, n) VALUES ('from the application', 0)")
    with psycopg.connect(empty_db) as conn, psycopg.connect(empty_db, autocommit=True) as application:
        first = validate._xid(conn)
        with conn.transaction():  # a savepoint, as every block runs in
            conn.execute("INSERT INTO thing (label, n) VALUES ('kept', 1), ('kept', 2)")
        conn.commit()  # the escape
        conn.execute("INSERT INTO thing (label, n) VALUES ('kept', 3)")
        last = validate._xid(conn)
        conn.commit()
        application.execute("INSERT INTO thing (label, n) VALUES ('from the application', 9)")
        assert validate._left_behind(conn, ["thing"], first, first) == 0  # one transaction: its rollback took all
        assert validate._left_behind(conn, ["thing"], first, last) == 3
