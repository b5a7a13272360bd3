"""A drop that removes a foreign key locks the table at its other end: predicted from the catalog, and
checked against what the server takes (pg_locks) for each statement, run and rolled back."""

from __future__ import annotations

import psycopg
import pytest

from runbook_lib.sql import analysis, linked_locks, locks

TABLES = """
CREATE TABLE parent (id int PRIMARY KEY, code int UNIQUE);
CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent, code int REFERENCES parent (code),
                    note text);
CREATE TABLE other (id int PRIMARY KEY);
"""


def _taken(conn: psycopg.Connection, statement: str) -> dict[str, str]:
    """The strongest lock the statement takes on each of the three tables, as pg_locks shows it (by oid,
    read before: a table the statement drops has no pg_class row left to name it)."""
    names = dict(
        conn.execute(
            "SELECT oid, relname FROM pg_class WHERE relname IN ('parent', 'child', 'other')"
            " AND relnamespace = current_schema()::regnamespace"
        ).fetchall()
    )
    with conn.transaction(force_rollback=True):
        conn.execute(statement)
        rows = conn.execute(
            "SELECT relation, mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'"
        ).fetchall()
    taken: dict[str, list[str]] = {}
    for oid, mode in rows:
        if oid in names:
            taken.setdefault(names[oid], []).append(locks.from_pg_locks(mode))
    return {table: locks.strongest(modes) for table, modes in taken.items()}


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE child DROP CONSTRAINT child_parent_id_fkey",
        "ALTER TABLE child DROP COLUMN code",
        "ALTER TABLE parent DROP COLUMN code CASCADE",
        "DROP TABLE child",
        "DROP TABLE parent CASCADE",
        "ALTER TABLE child DROP COLUMN note",  # no foreign key: nothing added
        "ALTER TABLE other DROP CONSTRAINT other_pkey",
    ],
)
def test_the_locks_predicted_for_a_drop_are_the_ones_the_server_takes(empty_db: str, statement: str) -> None:
    with psycopg.connect(empty_db) as conn:
        conn.execute(TABLES)
        conn.commit()
        [parsed] = analysis.analyze(statement + ";")
        [refined] = linked_locks.refine(conn, [parsed])
        conn.commit()
        predicted = {lock.table: lock.mode for lock in refined.locks}
        assert predicted == _taken(conn, statement)
        if len(predicted) > len(parsed.locks):  # the table it does not name is said, and why
            [other] = set(predicted) - {lock.table for lock in parsed.locks}
            assert any(
                note.startswith(f'locks "{other}" ACCESS EXCLUSIVE too (reads wait): the foreign key')
                for note in refined.notes
            ), refined.notes


def test_a_constraint_the_file_creates_first_keeps_the_parsers_note(empty_db: str) -> None:
    """Not in the catalog yet: nothing to read, so the statement is left as the parser saw it."""
    with psycopg.connect(empty_db) as conn:
        [parsed] = analysis.analyze("ALTER TABLE later DROP CONSTRAINT later_fkey;")
        assert linked_locks.refine(conn, [parsed]) == [parsed]
