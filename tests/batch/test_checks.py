"""Declarative checks expanded into tests, run for real: each kind passing, and failing for the right reason.

A small schema of its own (every type the row builder knows, a CHECK that a careless row would break)
for the kinds, and the example CRM for batch 7, whose tests now come from batch.toml alone.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from runbook_lib import batch as batch_mod
from runbook_lib import config, names
from runbook_lib.batch import blocks as sqlblocks
from runbook_lib.batch import declared as checks
from runbook_lib.errors import BatchError
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, validate

SCHEMA = """
CREATE TYPE mood AS ENUM ('calm', 'busy');
CREATE TABLE parent (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code varchar(8) NOT NULL UNIQUE
);
CREATE TABLE thing (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    parent_id bigint NOT NULL REFERENCES parent ON DELETE RESTRICT,
    owner_id bigint REFERENCES parent ON DELETE SET NULL,
    label text NOT NULL,
    short char(4) NOT NULL,
    amount numeric(10, 2) NOT NULL,
    seq int NOT NULL UNIQUE,
    flag boolean NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    day date NOT NULL,
    token uuid NOT NULL,
    doc jsonb NOT NULL,
    tags text[] NOT NULL,
    mood mood NOT NULL,
    note text,
    total numeric GENERATED ALWAYS AS (amount * 2) STORED,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT thing_window_check CHECK (ends_at > starts_at)
);
CREATE INDEX thing_label_day_idx ON thing (label, day);
CREATE TABLE other_child (
    id serial PRIMARY KEY,
    parent_id bigint NOT NULL REFERENCES parent ON DELETE RESTRICT
);
INSERT INTO parent (code) VALUES ('p1'), ('p2');
INSERT INTO thing (parent_id, label, short, amount, seq, flag, starts_at, ends_at, day, token, doc, tags, mood)
SELECT 1, 'first', 'abcd', 1.5, 1, true, now(), now() + interval '1 hour', current_date, gen_random_uuid(),
       '{}', '{a}', 'calm';
INSERT INTO other_child (parent_id) VALUES (1);
"""
TABLES = ["parent", "thing", "other_child"]


@pytest.fixture
def db(empty_db: str) -> str:
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(SCHEMA)
    return empty_db


def execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def digest(url: str, tables: list[str]) -> dict[str, tuple[int, str]]:
    """Row count and an md5 of every row, all columns, per table: what a test could have left behind."""
    with psycopg.connect(url) as conn:
        return {
            t: conn.execute(
                sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) FROM {} AS x"
                ).format(sql.Identifier(t))
            ).fetchone()
            for t in tables
        }


def load_checks(tmp_path: Path, body: str) -> batch_mod.Checks:
    folder = tmp_path / "migrations" / "001_x"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "migration.sql").write_text("SELECT 1;\n", encoding="utf-8")
    (folder / "batch.toml").write_text(f'batch = 1\ntitle = "x"\n[checks]\n{body}\n', encoding="utf-8")
    return batch_mod.find(tmp_path / "migrations", 1).checks


def run(url: str, found: batch_mod.Checks, *, read_only: bool = False) -> dict[str, sqlblocks.BlockResult]:
    """The expanded tests, run as validate runs them: each in a savepoint, all rolled back."""
    with psycopg.connect(url) as conn, conn.transaction(force_rollback=True):
        blocks = checks.read_only_tests(conn, found) if read_only else checks.tests(conn, found)
        results = [sqlblocks.run(conn, block) for block in blocks]
    by_name = {r.name: r for r in results}
    assert len(by_name) == len(results), "test names must be unique"
    return by_name


def failing(results: dict[str, sqlblocks.BlockResult]) -> dict[str, str]:
    return {name: r.observed for name, r in results.items() if not r.passed}


# --- batch 7 from its batch.toml alone -------------------------------------------------------------


def test_batch_7_gets_the_reference_documents_seven_tests_from_batch_toml(crm_url: str, tmp_path: Path):
    reports = tmp_path / "reports"
    apply.run(
        open_session(6, database_url=crm_url, reports_dir=reports, migrations_dir=config.example_migrations_dir())
    )
    apply.run(
        open_session(7, database_url=crm_url, reports_dir=reports, migrations_dir=config.example_migrations_dir())
    )
    seven = batch_mod.find(config.example_migrations_dir(), 7)
    assert sqlblocks.load(seven.path / "validation.sql") == []  # nothing hand-written left
    before = digest(crm_url, ["Customer", "Lead", "Job"])

    result = validate.run(
        open_session(7, database_url=crm_url, reports_dir=reports, migrations_dir=config.example_migrations_dir())
    )

    assert result.ok, [(t.name, t.observed) for t in result.tests if not t.passed]
    tests = {t.name: t for t in result.tests}
    # The reference document's tests 1-7, in its order, then the foreign keys'.
    reference = [
        "Lead.customer_id is NOT NULL in the schema",
        "Job.customer_id is NOT NULL in the schema",
        "Reject Lead without customer_id",
        "Reject Job without customer_id",
        "Allow Lead with customer_id",
        "Allow Job with customer_id",
        "UPDATE of Lead.customer_id to NULL rejected",
        "UPDATE of Job.customer_id to NULL rejected",
        "No existing Lead row has NULL customer_id",
        "No existing Job row has NULL customer_id",
    ]
    names = [t.name for t in result.tests]
    assert set(reference) <= set(names)
    assert [n for n in names if n in reference] == reference
    assert {
        "Delete of a Customer referenced by Lead rejected",
        "Delete of a Customer referenced by Job rejected",
        "No Lead.customer_id without its Customer",
        "No Job.customer_id without its Customer",
    } <= set(names)
    reject = tests["Reject Job without customer_id"]
    assert reject.sqlstate == "23502" and reject.column == "customer_id"
    assert reject.message == 'null value in column "customer_id" of relation "Job" violates not-null constraint'
    # The row is built from the catalog: Job's required lead_id from an existing Lead, no hand-written SQL.
    assert '(SELECT "id" FROM "Lead" ORDER BY "id" LIMIT 1)' in reject.sql
    assert tests["Allow Job with customer_id"].observed == "ok (1 row affected)"
    # Each delete test is refused by the foreign key it is about, not by the other table's.
    for table in ("Lead", "Job"):
        delete = tests[f"Delete of a Customer referenced by {table} rejected"]
        assert delete.constraint == f"{table}_customer_id_fkey", delete.observed
    # Nothing left behind: every row of the three tables as it was.
    assert result.leftover_rows == 0
    assert digest(crm_url, ["Customer", "Lead", "Job"]) == before


# --- not_null --------------------------------------------------------------------------------------


def test_not_null_passes_with_a_row_built_from_the_catalog(db: str, tmp_path: Path):
    before = digest(db, TABLES)

    results = run(db, load_checks(tmp_path, 'not_null = ["thing.label", "thing.parent_id"]'))

    assert failing(results) == {}
    allow = results["Allow thing with label"].sql
    # Required columns are filled, by type; defaults, identities, generated and nullable columns are left out.
    for column in (
        "parent_id",
        "label",
        "short",
        "amount",
        "seq",
        "flag",
        "starts_at",
        "ends_at",
        "day",
        "token",
        "doc",
        "tags",
        "mood",
    ):
        assert f'"{column}"' in allow, column
    for column in ('"id"', "owner_id", "note", "total", "created_at"):
        assert column not in allow.split("VALUES")[0], column
    assert '(SELECT "id" FROM "parent" ORDER BY "id" LIMIT 1)' in allow
    assert '(SELECT coalesce(max("seq"), 0) + 1 FROM "thing")' in allow
    assert "'calm'" in allow and "gen_random_uuid()" in allow and "'runbook-test-" in allow
    # Later timestamps for later columns: the CHECK (ends_at > starts_at) holds.
    assert results["Allow thing with parent_id"].passed
    reject = results["Reject thing without parent_id"]
    assert (reject.sqlstate, reject.column, reject.expectation) == (
        "23502",
        "parent_id",
        'error 23502 column "parent_id"',
    )
    assert digest(db, TABLES) == before


def test_not_null_fails_when_the_constraint_is_dropped_and_when_a_row_is_null(db: str, tmp_path: Path):
    found = load_checks(tmp_path, 'not_null = ["thing.label"]')
    execute(db, "ALTER TABLE thing ALTER COLUMN label DROP NOT NULL")

    results = run(db, found)

    assert failing(results) == {
        "thing.label is NOT NULL in the schema": "nullable",
        "Reject thing without label": "succeeded, but an error 23502 was expected (ok (1 row affected))",
        "UPDATE of thing.label to NULL rejected": "succeeded, but an error 23502 was expected (ok (1 row affected))",
    }
    assert results["Allow thing with label"].passed

    execute(db, "UPDATE thing SET label = NULL")
    results = run(db, found)
    assert failing(results)["No existing thing row has NULL label"] == "1"


def test_update_to_null_on_an_empty_table_inserts_its_own_row(db: str, tmp_path: Path):
    execute(db, "CREATE TABLE empty_one (id serial PRIMARY KEY, name text NOT NULL)")

    results = run(db, load_checks(tmp_path, 'not_null = ["empty_one.name"]'))

    assert failing(results) == {}
    update = results["UPDATE of empty_one.name to NULL rejected"]
    assert update.sql.startswith("DO $runbook$") and update.column == "name"


def test_a_row_that_cannot_be_built_is_not_run_and_says_why(db: str, tmp_path: Path):
    execute(db, "CREATE TABLE shape (id serial PRIMARY KEY, name text NOT NULL, pos point NOT NULL)")
    execute(db, "CREATE TABLE lonely_parent (id int PRIMARY KEY)")
    execute(
        db,
        "CREATE TABLE orphan_child (id serial PRIMARY KEY, name text NOT NULL,"
        " parent_id int NOT NULL REFERENCES lonely_parent)",
    )

    results = run(db, load_checks(tmp_path, 'not_null = ["shape.name", "orphan_child.name", "nowhere.name"]'))

    reject = results["Reject shape without name"]
    assert reject.outcome == names.NOT_RUN
    assert reject.reason.startswith("cannot build the row: shape.pos is required and of type point")
    assert results["Allow shape with name"].outcome == names.NOT_RUN
    assert results["Reject nowhere without name"].observed == "not run: cannot build the row: there is no table nowhere"
    # A parent table without rows no longer stops a test: a new parent row is inserted first, in the same statement.
    allow = results["Allow orphan_child with name"]
    assert allow.passed, allow.observed
    assert allow.sql.startswith('WITH "runbook_parent_1" AS (INSERT INTO "lonely_parent" ("id") VALUES (')
    # The tests that need no row still ran.
    assert results["shape.name is NOT NULL in the schema"].passed
    assert results["No existing shape row has NULL name"].passed


# --- foreign_keys ----------------------------------------------------------------------------------


def test_foreign_key_passes_and_each_delete_test_proves_its_own_key(db: str, tmp_path: Path):
    before = digest(db, TABLES)
    found = load_checks(
        tmp_path,
        "\n".join(
            [
                "foreign_keys = [",
                '  { column = "thing.parent_id", references = "parent.id", on_delete = "restrict" },',
                '  { column = "other_child.parent_id", references = "parent.id", on_delete = "restrict" },',
                '  { column = "thing.owner_id", references = "parent.id", on_delete = "set null" },',
                "]",
            ]
        ),
    )

    results = run(db, found)

    assert failing(results) == {}
    for table in ("thing", "other_child"):
        delete = results[f"Delete of a parent referenced by {table} rejected"]
        assert delete.constraint == f"{table}_parent_id_fkey"
        assert delete.expectation == f'error 23001|23503 constraint "{table}_parent_id_fkey"'
    # Parent 1 is referenced by both tables: an existing parent would not tell the two keys apart.
    assert 'INSERT INTO "parent"' in results["Delete of a parent referenced by other_child rejected"].sql
    assert results["thing.owner_id references parent ON DELETE SET NULL"].value == "set null"
    assert "Delete of a parent referenced by thing rejected" in results  # only restrict / no action get one
    assert sum(1 for name in results if name.startswith("Delete of")) == 2
    assert digest(db, TABLES) == before


def test_foreign_key_with_the_wrong_action_fails_twice(db: str, tmp_path: Path):
    found = load_checks(
        tmp_path, 'foreign_keys = [{ column = "thing.parent_id", references = "parent.id", on_delete = "restrict" }]'
    )
    execute(
        db,
        "ALTER TABLE thing DROP CONSTRAINT thing_parent_id_fkey,"
        " ADD CONSTRAINT thing_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES parent ON DELETE CASCADE",
    )

    results = run(db, found)

    assert failing(results) == {
        "thing.parent_id references parent ON DELETE RESTRICT": "cascade",
        "Delete of a parent referenced by thing rejected": "succeeded, but an error 23001|23503 was expected (ok)",
    }


def test_a_delete_refused_by_another_key_does_not_pass(db: str):
    # other_child's key refuses the delete; the test is about thing's: the constraint name tells them apart.
    block = sqlblocks.SqlBlock(
        "Delete of a parent referenced by thing rejected",
        "DELETE FROM parent WHERE id = 1",
        sqlblocks.Expectation.parse('error 23001|23503 constraint "thing_parent_id_fkey"', "test"),
        "test",
    )
    execute(db, "DELETE FROM thing")
    with psycopg.connect(db) as conn, conn.transaction(force_rollback=True):
        result = sqlblocks.run(conn, block)
    # It proves nothing about thing's key either way: not run, with what refused it.
    assert (result.passed, result.outcome) == (False, names.NOT_RUN)
    assert result.constraint == "other_child_parent_id_fkey"
    assert 'raised by constraint "other_child_parent_id_fkey", not "thing_parent_id_fkey"' in result.reason


def test_orphans_are_found_once_the_key_is_gone(db: str, tmp_path: Path):
    found = load_checks(
        tmp_path, 'foreign_keys = [{ column = "thing.parent_id", references = "parent.id", on_delete = "restrict" }]'
    )
    execute(db, "ALTER TABLE thing DROP CONSTRAINT thing_parent_id_fkey")
    execute(db, "UPDATE thing SET parent_id = 999")

    results = run(db, found, read_only=True)

    assert failing(results) == {
        "thing.parent_id references parent ON DELETE RESTRICT": "missing",
        "No thing.parent_id without its parent": "1",
    }


# --- unique, check, column_type, index ---------------------------------------------------------------


def test_unique_passes_with_a_constraint_and_fails_with_a_plain_index(db: str, tmp_path: Path):
    found = load_checks(tmp_path, 'unique = ["parent.code", { table = "thing", columns = ["seq"] }]')
    before = digest(db, TABLES)

    results = run(db, found)

    assert failing(results) == {}
    duplicate = results["Duplicate parent.code rejected"]
    assert (duplicate.sqlstate, duplicate.constraint) == ("23505", "parent_code_key")
    assert digest(db, TABLES) == before

    execute(db, "ALTER TABLE parent DROP CONSTRAINT parent_code_key; CREATE INDEX parent_code_idx ON parent (code)")
    results = run(db, found)
    assert failing(results) == {
        "parent.code has a unique constraint or index": "missing",
        "Duplicate parent.code rejected": "succeeded, but an error 23505 was expected (ok (2 rows affected))",
    }


def test_unique_on_two_columns_is_any_order_and_exact(db: str, tmp_path: Path):
    execute(db, "CREATE UNIQUE INDEX thing_label_short_key ON thing (short, label)")
    results = run(db, load_checks(tmp_path, 'unique = [{ table = "thing", columns = ["label", "short"] }]'))
    assert failing(results) == {}
    assert results["Duplicate thing(label, short) rejected"].constraint == "thing_label_short_key"

    results = run(db, load_checks(tmp_path, 'unique = [{ table = "thing", columns = ["label"] }]'))
    assert failing(results)["thing.label has a unique constraint or index"] == "missing"


def test_check_constraint_validated_not_valid_and_missing(db: str, tmp_path: Path):
    found = load_checks(
        tmp_path,
        "\n".join(
            [
                "check = [",
                '  { table = "thing", name = "thing_window_check" },',
                '  { table = "thing", name = "thing_amount_check" },',
                '  { table = "thing", name = "thing_gone_check" },',
                "]",
            ]
        ),
    )
    execute(db, "ALTER TABLE thing ADD CONSTRAINT thing_amount_check CHECK (amount > 0) NOT VALID")

    results = run(db, found)

    assert results["thing has CHECK thing_window_check, validated"].passed
    assert failing(results) == {
        "thing has CHECK thing_amount_check, validated": "not validated",
        "thing has CHECK thing_gone_check, validated": "missing",
    }


def test_column_type_compares_the_servers_spelling(db: str, tmp_path: Path):
    found = load_checks(
        tmp_path,
        "\n".join(
            [
                "column_type = [",
                '  { column = "parent.code", type = "varchar(8)" },',
                '  { column = "thing.amount", type = "numeric(10,2)" },',
                '  { column = "thing.starts_at", type = "timestamptz" },',
                '  { column = "thing.mood", type = "mood" },',
                '  { column = "thing.label", type = "varchar(80)" },',
                '  { column = "thing.note", type = "no_such_type" },',
                "]",
            ]
        ),
    )

    results = run(db, found)

    assert results["parent.code is varchar(8)"].expectation == "character varying(8)"
    assert results["thing.starts_at is timestamptz"].value == "timestamp with time zone"
    assert failing(results) == {
        "thing.label is varchar(80)": "text",
        "thing.note is no_such_type": "not run: type 'no_such_type': type \"no_such_type\" does not exist",
    }


def test_index_exists_valid_and_in_column_order(db: str, tmp_path: Path):
    found = load_checks(
        tmp_path,
        "\n".join(
            [
                "index = [",
                '  { table = "thing", columns = ["label", "day"] },',
                '  { table = "thing", columns = ["day", "label"] },',
                '  { table = "thing", columns = ["seq"] },',
                "]",
            ]
        ),
    )

    results = run(db, found)

    assert results["thing(label, day) has a valid index"].passed
    assert results["thing(seq) has a valid index"].passed  # the unique constraint's index counts
    assert failing(results) == {"thing(day, label) has a valid index": "missing"}


def test_read_only_tests_only_read(db: str, tmp_path: Path):
    found = load_checks(
        tmp_path,
        "\n".join(
            [
                'not_null = ["thing.label"]',
                'foreign_keys = [{ column = "thing.parent_id", references = "parent.id", on_delete = "restrict" }]',
                'unique = ["parent.code"]',
                'check = [{ table = "thing", name = "thing_window_check" }]',
                'column_type = [{ column = "thing.label", type = "text" }]',
                'index = [{ table = "thing", columns = ["label", "day"] }]',
            ]
        ),
    )
    with psycopg.connect(db) as conn:
        conn.read_only = True
        with conn.transaction(force_rollback=True):
            results = [sqlblocks.run(conn, b) for b in checks.read_only_tests(conn, found)]
    assert [r.name for r in results if not r.passed] == []
    assert len(results) == 8
    assert not any(r.sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "DO", "WITH")) for r in results)


# --- batch.toml: the new kinds, with file and line in every error ------------------------------------


def batch_error(tmp_path: Path, body: str) -> str:
    with pytest.raises(BatchError) as info:
        load_checks(tmp_path, body)
    return str(info.value)


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ('unique = "Customer.email"', 4, ["unique must be a list", '["Customer.email"]']),
        ('unique = ["Customer"]', 4, ["'Customer' is not a column"]),
        ('check = [{ table = "Job" }]', 4, ["needs 'name'", "Job_window_check"]),
        ('check = [{ table = "Job", name = "x", valid = true }]', 4, ["unknown field 'valid'", "table, name"]),
        ('index = [{ table = "Lead", columns = [] }]', 4, ["non-empty list of column names"]),
        ('index = [{ table = "Lead", columns = ["a", "a"] }]', 4, ["names a column twice"]),
        ('index = [{ table = "a.b.c", columns = ["x"] }]', 4, ["'a.b.c' is not a table"]),
        (
            'column_type = [\n  { column = "Lead.name", type = "text" },\n'
            '  { column = "Lead.x", type = "int; DROP TABLE x" },\n]',
            6,
            ["is not a type name"],
        ),
        ("column_typ = []", 4, ["unknown check 'column_typ'", "did you mean 'column_type'?"]),
    ],
)
def test_malformed_checks_name_the_file_and_line(tmp_path: Path, body: str, line: int, words: list[str]):
    message = batch_error(tmp_path, body)
    assert f"batch.toml line {line}:" in message, message
    for word in words:
        assert word in message, message


def test_checks_of_every_kind_parse(tmp_path: Path):
    found = load_checks(
        tmp_path,
        "\n".join(
            [
                'unique = ["Customer.email", { table = "crm.Customer", columns = ["name", "phone"] }]',
                'check = [{ table = "Job", name = "Job_window_check" }]',
                'column_type = [{ column = "Lead.name", type = "varchar(80)" }]',
                'index = [{ table = "Lead", columns = ["customer_id"] }]',
            ]
        ),
    )
    assert found.unique == (
        batch_mod.UniqueCheck(batch_mod.TableRef("Customer"), ("email",)),
        batch_mod.UniqueCheck(batch_mod.TableRef("Customer", "crm"), ("name", "phone")),
    )
    assert found.check == (batch_mod.CheckConstraintCheck(batch_mod.TableRef("Job"), "Job_window_check"),)
    assert found.column_type == (batch_mod.ColumnTypeCheck(batch_mod.ColumnRef("Lead", "name"), "varchar(80)"),)
    assert found.index == (batch_mod.IndexCheck(batch_mod.TableRef("Lead"), ("customer_id",)),)
    assert found.tables == ["Customer", "crm.Customer", "Job", "Lead"]
    assert bool(found)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'error 23001|23503 constraint "Job_customer_id_fkey"',
            sqlblocks.Expectation("error", "23001|23503", constraint="Job_customer_id_fkey"),
        ),
        ("error not_null_violation column customer_id", sqlblocks.Expectation("error", "23502", column="customer_id")),
        ('error 23505 constraint "odd ""name"""', sqlblocks.Expectation("error", "23505", constraint='odd "name"')),
        ("error undefined_column", sqlblocks.Expectation("error", "42703")),
    ],
)
def test_error_expectations_can_name_the_constraint_or_column(text: str, expected: sqlblocks.Expectation):
    # validation.sql can say it too; what the report shows reads back the same.
    parsed = sqlblocks.Expectation.parse(text, "validation.sql line 1")
    assert parsed == expected
    assert sqlblocks.Expectation.parse(str(parsed), "x") == parsed
