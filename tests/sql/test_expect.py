"""What a migration's statements leave, and what later migrations take from it, read as pglast reads the SQL.

No server here: sql.expect is the parser's reading. What the database then says about these expectations is
tested in tests/generated (random histories deployed for real) and tests/batch/test_derived.py.
"""

from __future__ import annotations

from runbook_lib.sql import expect


def _later(*texts: str) -> expect.Touched:
    total = expect.Touched()
    for number, text in enumerate(texts, start=2):
        total = total | expect.touched(expect.read(text), f"{number} (m{number})")
    return total


def test_within_one_migration_the_last_statement_decides() -> None:
    found = expect.read(
        'CREATE EXTENSION IF NOT EXISTS "pgcrypto";\nSELECT 1;\nDROP EXTENSION "pgcrypto";\n'
        "CREATE SCHEMA s;\nDROP SCHEMA s CASCADE;"
    )
    assert found.extensions == {"pgcrypto": (3, False)}
    assert found.dropped_schemas == {"s": 5}


def test_a_foreign_key_to_a_table_dropped_in_the_same_file_is_not_expected() -> None:
    found = expect.read(
        'CREATE TABLE "P" (id int PRIMARY KEY);\nCREATE TABLE "C" (id int, p int);\n'
        'ALTER TABLE "C" ADD CONSTRAINT "C_p_fkey" FOREIGN KEY (p) REFERENCES "P"(id);\n'
        'DROP TABLE "P" CASCADE;'
    )
    assert found.live_constraints() == []


def test_a_type_dropped_with_cascade_takes_its_columns_in_the_same_file() -> None:
    found = expect.read(
        'CREATE TYPE "Mood" AS ENUM (\'a\');\nCREATE TABLE "T" (id int, m "Mood", n int);\n'
        'CREATE INDEX "T_m_idx" ON "T"(m);\nDROP TYPE "Mood" CASCADE;'
    )
    table = found.tables[(None, "T")]
    assert table.columns["m"].dropped and not table.columns["n"].dropped
    assert found.indexes[(None, "T_m_idx")].dropped


def test_an_index_on_a_column_a_later_migration_drops_is_left_to_it_and_named() -> None:
    k = expect.read(
        'CREATE INDEX "Doc_owner_idx" ON "Doc"(owner_id, updated_at);\n'
        'ALTER TABLE "Doc" ADD CONSTRAINT "Doc_owner_fkey" FOREIGN KEY (owner_id) REFERENCES "User"(id);\n'
        'CREATE INDEX "Doc_title_idx" ON "Doc"(title);'
    )
    kept, left = expect.superseded(k, _later('SELECT 1;\nALTER TABLE "Doc" DROP COLUMN owner_id;'))
    assert set(kept.indexes) == {(None, "Doc_title_idx")}
    assert kept.live_constraints() == []
    assert sorted(str(x) for x in left) == [
        "constraint Doc_owner_fkey on Doc: changed again by migration 2 (m2) line 2",
        "index Doc_owner_idx: changed again by migration 2 (m2) line 2",
    ]


def test_the_first_later_migration_that_changes_an_object_is_the_one_named() -> None:
    k = expect.read('CREATE TABLE "T" (id int PRIMARY KEY, a int);\nCREATE TABLE "U" (id int PRIMARY KEY, b int);')
    _, left = expect.superseded(
        k, _later('ALTER TABLE "U" ALTER COLUMN b SET NOT NULL;', 'ALTER TABLE "U" DROP COLUMN b;', 'DROP TABLE "T";')
    )
    assert sorted(str(x) for x in left) == [
        "column U.b: changed again by migration 2 (m2) line 1",
        "constraint T_pkey on T: changed again by migration 4 (m4) line 1",
        "table T: changed again by migration 4 (m4) line 1",
    ]


def test_a_foreign_key_to_a_table_dropped_later_and_a_column_of_a_type_dropped_later_are_left() -> None:
    k = expect.read(
        'CREATE TABLE "C" (id int PRIMARY KEY, p int, m "Mood", v vector(3));\n'
        'ALTER TABLE "C" ADD CONSTRAINT "C_p_fkey" FOREIGN KEY (p) REFERENCES "P"(id);'
    )
    kept, left = expect.superseded(
        k, _later('DROP TABLE "P" CASCADE;', 'DROP TYPE "Mood" CASCADE;', "DROP EXTENSION vector CASCADE;")
    )
    assert kept.live_constraints() == [c for c in kept.constraints if c.kind == "p"]
    assert set(kept.tables[(None, "C")].columns) == {"id", "p"}
    assert {x.what for x in left} == {"constraint C_p_fkey on C", "column C.m", "column C.v"}


def test_a_rename_of_an_index_created_earlier_is_resolved_so_a_later_drop_takes_it() -> None:
    first = expect.read('CREATE INDEX "a" ON "T"(x, y);')
    second = expect.read('ALTER INDEX "a" RENAME TO "b";')
    renamed = expect.read('ALTER INDEX "b" RENAME TO "c";\nALTER TABLE "T" RENAME CONSTRAINT "T_k" TO "T_k2";')
    keyed = expect.read('ALTER TABLE "T" ADD CONSTRAINT "T_k" UNIQUE (z);')
    expect.resolve(renamed, [second, keyed, first])
    index = renamed.indexes[(None, "c")]
    assert (index.table, index.columns) == ((None, "T"), ("x", "y"))
    assert next(c for c in renamed.live_constraints() if c.name == "T_k2").columns == ("z",)
    kept, left = expect.superseded(renamed, _later('ALTER TABLE "T" DROP COLUMN y;', 'ALTER TABLE "T" DROP COLUMN z;'))
    assert (None, "c") not in kept.indexes and not [c for c in kept.live_constraints() if c.name == "T_k2"]
    assert {str(x.by) for x in left} == {"migration 2 (m2) line 1", "migration 3 (m3) line 1"}


def test_a_resolved_rename_follows_the_renames_of_its_table_and_columns_in_between() -> None:
    created = expect.read('CREATE UNIQUE INDEX "a" ON "T"(x);')
    moved = expect.read('ALTER TABLE "T" RENAME TO "U";\nALTER TABLE "U" RENAME COLUMN x TO y;')
    renamed = expect.read('ALTER INDEX "a" RENAME TO "b";\nALTER TABLE "U" RENAME TO "V";')
    expect.resolve(renamed, [moved, created])
    index = renamed.indexes[(None, "b")]
    assert (index.table, index.columns, index.unique) == ((None, "V"), ("y",), True)


def test_a_resolved_index_whose_column_the_same_migration_drops_after_the_rename_is_expected_gone() -> None:
    created = expect.read('CREATE INDEX "a" ON "T"(x, y);')
    renamed = expect.read('ALTER INDEX "a" RENAME TO "b";\nALTER TABLE "T" DROP COLUMN y;')
    expect.resolve(renamed, [created])
    assert renamed.indexes[(None, "b")].dropped


def test_what_a_do_block_touches_is_not_expected_and_supersedes_what_came_before() -> None:
    """Drizzle's pattern: a foreign key dropped, then added again inside DO ... EXCEPTION WHEN duplicate_object."""
    found = expect.read(
        'ALTER TABLE "app" DROP CONSTRAINT "app_reg_fk";\n'
        'DO $$ BEGIN\n ALTER TABLE "app" ADD CONSTRAINT "app_reg_fk" FOREIGN KEY ("reg") '
        'REFERENCES "public"."registry"("id") ON DELETE set null;\n'
        "EXCEPTION\n WHEN duplicate_object THEN null;\nEND $$;\n"
        'CREATE INDEX "app_name_idx" ON "app"(name);'
    )
    assert [c for c in found.constraints if c.name == "app_reg_fk"] == []
    assert (None, "app_name_idx") in found.indexes  # what the block does not touch is still expected
    earlier = expect.read(
        'ALTER TABLE "app" ADD CONSTRAINT "app_reg_fk" FOREIGN KEY ("reg") REFERENCES "registry"("id");'
    )
    kept, left = expect.superseded(earlier, expect.touched(found, "8 (lazy_sage)"))
    assert kept.live_constraints() == [] and [x.what for x in left] == ["constraint app_reg_fk on app"]
    dynamic = expect.read("DO $$ BEGIN EXECUTE 'DROP TABLE x'; END $$;")
    assert [s.kind for s in dynamic.skipped] == ["DoStmt"]


def test_a_temporary_table_and_a_null_default_are_not_expected() -> None:
    found = expect.read(
        'CREATE TEMP TABLE "backfill" (id text PRIMARY KEY);\n'
        'CREATE TABLE "T" (a int DEFAULT NULL, b text DEFAULT NULL::text, c int DEFAULT 0);\n'
        'ALTER TABLE "T" ALTER COLUMN c SET DEFAULT NULL;'
    )
    assert (None, "backfill") not in found.tables and found.live_constraints() == []
    columns = found.tables[(None, "T")].columns
    assert [columns[c].has_default for c in "abc"] == [False, False, False]


def test_a_column_made_earlier_goes_with_its_type_dropped_with_cascade_later_in_the_file() -> None:
    made = expect.read('CREATE TYPE "Mood" AS ENUM (\'a\');\nALTER TABLE "T" ADD COLUMN "m" "Mood" NOT NULL;')
    changed = expect.read('ALTER TABLE "T" ALTER COLUMN "m" DROP NOT NULL;\nDROP TYPE "Mood" CASCADE;')
    assert not changed.tables[(None, "T")].columns["m"].dropped  # this file alone does not say m is a Mood
    expect.resolve(changed, [made])
    assert changed.tables[(None, "T")].columns["m"].dropped
