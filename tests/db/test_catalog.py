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


def test_a_snapshot_of_several_tables_counts_small_ones_and_estimates_large_ones(empty_db: str, monkeypatch) -> None:
    """Every table in two round trips: a missing one says so, a small one is counted exactly (rows and, per
    column, the rows with a value), one past EXACT_COUNT_MAX_BYTES is estimated from the planner's statistics."""
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE small (id int PRIMARY KEY, note text); INSERT INTO small VALUES (1, 'a'), (2, NULL);"
            " CREATE SCHEMA other; CREATE TABLE other.big (id int, v int);"
            " INSERT INTO other.big SELECT g, CASE WHEN g % 4 = 0 THEN NULL ELSE g END FROM generate_series(1, 4000) g;"
            " ANALYZE other.big"
        )
        big_bytes = conn.execute("SELECT pg_total_relation_size('other.big')").fetchone()[0]
        small_bytes = conn.execute("SELECT pg_total_relation_size('small')").fetchone()[0]
        monkeypatch.setattr(catalog, "EXACT_COUNT_MAX_BYTES", (big_bytes + small_bytes) // 2)
        assert small_bytes < big_bytes
        shot = catalog.snapshot(conn, ["small", "missing", "other.big"])
    small, missing, big = shot.tables
    assert (small.name, small.exists, small.rows, small.rows_exact) == ("small", True, 2, True)
    assert [(c.name, c.non_null) for c in small.columns] == [("id", 2), ("note", 1)]
    assert [c.name for c in small.constraints] == ["small_pkey"] and [i.name for i in small.indexes] == ["small_pkey"]
    assert (missing.name, missing.exists) == ("missing", False)
    assert big.exists and not big.rows_exact and 3000 <= big.rows <= 5000
    assert dict((c.name, c.non_null) for c in big.columns)["v"] in range(2500, 3500)
