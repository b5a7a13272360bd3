"""The catalog snapshots apply takes: a statement that names an index (DROP INDEX, ALTER INDEX) snapshots its table."""

from __future__ import annotations

from pathlib import Path

import psycopg

from runbook_lib.db import catalog
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply


def test_an_index_name_is_its_tables(empty_db: str) -> None:
    with psycopg.connect(empty_db) as conn:
        conn.execute(
            "CREATE SCHEMA other; CREATE TABLE item (id int, n int); CREATE INDEX item_n_idx ON item (n);"
            " CREATE TABLE other.thing (id int); CREATE INDEX thing_id_idx ON other.thing (id)"
        )
        assert catalog.tables_of(conn, ["item_n_idx", "item", "gone", "other.thing_id_idx"]) == [
            "item",
            "gone",
            "other.thing",
        ]


def test_a_dropped_index_shows_in_its_tables_before_and_after(empty_db: str, tmp_path: Path) -> None:
    """Without it, a release's view of the table after its last migration kept an index a later one dropped."""
    with psycopg.connect(empty_db) as conn:
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, n int); CREATE INDEX item_n_idx ON item (n)")
    folder = tmp_path / "migrations" / "001_drop"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text('DROP INDEX "item_n_idx";\n')
    result = apply.run(
        open_session(1, database_url=empty_db, migrations_dir=tmp_path / "migrations", reports_dir=tmp_path / "reports")
    )
    assert [t.name for t in result.before.tables] == ["item"] == [t.name for t in result.after.tables]
    assert sorted(i.name for i in result.before.table("item").indexes) == ["item_n_idx", "item_pkey"]
    assert [i.name for i in result.after.table("item").indexes] == ["item_pkey"]
    assert [(c.table, c.object, c.change) for c in result.changes] == [("item", 'index "item_n_idx"', "removed")]
