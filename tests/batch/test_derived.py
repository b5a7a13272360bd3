"""Tests derived from migration.sql: each kind applied on a real database, passing, then broken by hand and failing.

A derived test is worth something only if it passes on what the migration did and fails, by name, when
the database no longer holds what the migration said. Behaviour tests (NULL, duplicate, delete of a
referenced parent) run in the same rolled-back transaction as validate runs them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg
import pytest
from derivations import execute, run_derived, unproven

from runbook_lib.batch import blocks
from runbook_lib.batch.blocks import BlockResult
from runbook_lib.sql import expect

LANGFUSE = Path(os.environ.get("RUNBOOK_LANGFUSE_MIGRATIONS", "/work/shared/corpora/langfuse/migrations"))


def failures(results: dict[str, BlockResult]) -> dict[str, str]:
    return {name: r.observed for name, r in results.items() if unproven(r)}


SCHEMA = """
CREATE TYPE "Status" AS ENUM ('new', 'won');
CREATE TABLE "Customer" (
    "id" SERIAL NOT NULL,
    "email" VARCHAR(80) NOT NULL,
    "tags" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "status" "Status" NOT NULL DEFAULT 'new',
    "score" DECIMAL(10,2),
    CONSTRAINT "Customer_pkey" PRIMARY KEY ("id")
);
CREATE TABLE "public"."Lead" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "customer_id" INTEGER NOT NULL,
    "name" TEXT,
    CONSTRAINT "Lead_pkey" PRIMARY KEY ("id")
);
CREATE TABLE "Audit" (
    "id" BIGSERIAL PRIMARY KEY,
    "amount" INTEGER NOT NULL CHECK (amount > 0)
);
CREATE UNIQUE INDEX "Customer_email_key" ON "Customer"("email");
CREATE INDEX "Lead_name_idx" ON "Lead"("name");
ALTER TABLE "Lead" ADD CONSTRAINT "Lead_customer_id_fkey" FOREIGN KEY ("customer_id")
    REFERENCES "Customer"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
"""


@pytest.fixture
def schema_db(empty_db: str) -> str:
    execute(empty_db, SCHEMA)
    return empty_db


def test_a_created_schema_passes_every_derived_test(schema_db: str):
    results, notes = run_derived(schema_db, SCHEMA)
    # Customer has no row: the reassign test makes up a Lead and two Customers (rolled back) and proves it all
    # the same, never left unproved by an empty table
    assert results["UPDATE of Lead.customer_id to a different existing Customer accepted"].passed
    assert failures(results) == {}
    for name in [
        "Table Customer exists",
        "Customer.id is integer",  # SERIAL: the integer type, NOT NULL, with a default
        "Customer.id is NOT NULL",
        "Customer.id has a default",
        "Customer.email is character varying(80)",
        "Customer.tags is text[]",
        "Customer.tags is nullable",
        "Customer.created_at is timestamp(3) without time zone",
        "Customer.created_at defaults to CURRENT_TIMESTAMP",
        'Customer.status is "Status"',
        "Customer.status defaults to 'new'::\"Status\"",
        "Customer.score is numeric(10,2)",
        "Customer.score has no default",
        "Customer has PRIMARY KEY (id)",
        "Audit.id is bigint",
        "Audit has a CHECK on (amount), validated",
        "Enum Status has the values new, won",
        "Index Customer_email_key is a valid unique index on Customer (email)",
        "Index Lead_name_idx is a valid index on Lead (name)",
        "Lead FOREIGN KEY Lead_customer_id_fkey (customer_id) REFERENCES Customer (id)"
        " ON DELETE RESTRICT ON UPDATE CASCADE",
    ]:
        assert name in results, sorted(results)
    # Behaviour: refused by the constraint under test, accepted otherwise.
    for name in [
        "Customer without email rejected",
        "Lead without customer_id rejected",
        "A valid Customer row accepted",
        "Duplicate Customer (email) rejected",
        "Delete of a Customer referenced by Lead.customer_id rejected",
    ]:
        assert results[name].passed, (name, results[name].observed)
    assert results["Lead without customer_id rejected"].sqlstate == "23502"
    assert results["Duplicate Customer (email) rejected"].constraint == "Customer_email_key"
    assert results["Delete of a Customer referenced by Lead.customer_id rejected"].constraint == "Lead_customer_id_fkey"
    # Audit's CHECK (amount > 0) is read: its made-up amount keeps to it, and its behaviour tests run.
    assert results["Audit without amount rejected"].passed and results["A valid Audit row accepted"].passed
    # Lead needs a Customer to point at and none exists: a new Customer is inserted first, in the same statement.
    accepted = results["A valid Lead row accepted"]
    assert accepted.passed and 'INSERT INTO "Customer"' in accepted.sql
    assert notes == []
    with psycopg.connect(schema_db) as conn:  # everything was rolled back
        assert conn.execute('SELECT count(*) FROM "Customer"').fetchone()[0] == 0


@pytest.mark.parametrize(
    "breakage, failing, outcome",
    [
        (
            'ALTER TABLE "Lead" ALTER COLUMN "customer_id" DROP NOT NULL',
            ["Lead.customer_id is NOT NULL", "Lead without customer_id rejected"],
            "nullable",
        ),
        (
            'ALTER TABLE "Lead" DROP CONSTRAINT "Lead_customer_id_fkey";'
            ' ALTER TABLE "Lead" ADD CONSTRAINT "Lead_customer_id_fkey" FOREIGN KEY ("customer_id")'
            ' REFERENCES "Customer"("id") ON DELETE CASCADE ON UPDATE CASCADE',
            [
                "Lead FOREIGN KEY Lead_customer_id_fkey (customer_id) REFERENCES Customer (id)"
                " ON DELETE RESTRICT ON UPDATE CASCADE",
                "Delete of a Customer referenced by Lead.customer_id rejected",
            ],
            "ON DELETE CASCADE",
        ),
        (
            'DROP INDEX "Customer_email_key"',
            [
                "Index Customer_email_key is a valid unique index on Customer (email)",
                "Duplicate Customer (email) rejected",
            ],
            "missing",
        ),
        ("ALTER TYPE \"Status\" ADD VALUE 'lost'", ["Enum Status has the values new, won"], "new, won, lost"),
        ('ALTER TABLE "Customer" ALTER COLUMN "email" TYPE TEXT', ["Customer.email is character varying(80)"], "text"),
        (
            'ALTER TABLE "Customer" ALTER COLUMN "status" DROP DEFAULT',
            ["Customer.status defaults to 'new'::\"Status\""],
            "no default",
        ),
        (
            'ALTER TABLE "Audit" DROP CONSTRAINT "Audit_amount_check"',
            ["Audit has a CHECK on (amount), validated"],
            "missing",
        ),
        ('DROP TABLE "Audit"', ["Table Audit exists", "Audit.amount is integer"], ""),
    ],
)
def test_a_broken_database_fails_the_derived_test_that_names_it(
    schema_db: str, breakage: str, failing: list[str], outcome: str
):
    execute(schema_db, breakage)
    results, _ = run_derived(schema_db, SCHEMA)
    failed = failures(results)
    for name in failing:
        assert name in failed, (name, failed)
    assert outcome in failed[failing[0]]
    assert all(results[n].passed for n in ["Table Customer exists", "Customer has PRIMARY KEY (id)"])


CHANGES = """
ALTER TABLE "Customer" ADD COLUMN "nickname" TEXT;
ALTER TABLE "Customer" ADD COLUMN "phone" VARCHAR(20) NOT NULL DEFAULT '';
ALTER TABLE "Customer" DROP COLUMN "nickname";
ALTER TABLE "Customer" RENAME COLUMN "score" TO "rating";
ALTER TABLE "Customer" ALTER COLUMN "rating" SET DATA TYPE DOUBLE PRECISION;
ALTER TABLE "Customer" ALTER COLUMN "rating" SET DEFAULT 0;
ALTER TABLE "Customer" ALTER COLUMN "tags" SET NOT NULL;
ALTER TABLE "Customer" ALTER COLUMN "created_at" DROP DEFAULT;
ALTER TABLE "Lead" RENAME TO "Prospect";
ALTER TABLE "Prospect" RENAME CONSTRAINT "Lead_customer_id_fkey" TO "Prospect_customer_id_fkey";
ALTER INDEX "Lead_name_idx" RENAME TO "Prospect_name_idx";
ALTER TABLE "Prospect" ADD CONSTRAINT "Prospect_name_check" CHECK (length(name) > 0) NOT VALID;
ALTER TABLE "Customer" ADD CONSTRAINT "Customer_rating_check" CHECK (rating >= 0) NOT VALID;
ALTER TABLE "Customer" VALIDATE CONSTRAINT "Customer_rating_check";
ALTER TABLE "Customer" ADD CONSTRAINT "Customer_phone_key" UNIQUE ("phone");
ALTER TYPE "Status" ADD VALUE 'lost' BEFORE 'won';
ALTER TYPE "Status" RENAME VALUE 'new' TO 'open';
CREATE TYPE "Tier" AS ENUM ('a', 'b');
DROP TYPE "Tier";
DROP TABLE "Audit";
DROP INDEX "Customer_email_key";
CREATE INDEX CONCURRENTLY "Customer_phone_rating_idx" ON "Customer" ("phone", lower("phone"));
"""


def test_alter_rename_and_drop_keep_the_final_state(schema_db: str):
    execute(schema_db, CHANGES)
    results, _notes = run_derived(schema_db, CHANGES)
    assert failures(results) == {}
    for name in [
        "Customer.nickname is dropped",  # added then dropped in the same file: absence is expected
        "Customer.phone is character varying(20)",
        "Customer.phone is NOT NULL",
        "Customer.phone defaults to ''::character varying",
        "Customer.score is dropped",
        "Customer.rating is double precision",
        "Customer.rating defaults to 0",
        "Customer.tags is NOT NULL",
        "Customer.created_at has no default",
        "Table Lead is dropped",
        # Renamed here, created in another file: only the presence under the new name is known.
        "Constraint Prospect_customer_id_fkey on Prospect exists",
        "Constraint Lead_customer_id_fkey on Prospect is dropped",
        "Index Prospect_name_idx exists",
        "Index Lead_name_idx is dropped",
        "Prospect has CHECK Prospect_name_check, not validated",
        "Customer has CHECK Customer_rating_check, validated",
        "Customer (phone) is UNIQUE",
        "Enum Status has the value lost",
        "Enum Status has the value open",
        "Enum Status no longer has the value new",
        "Type Tier is dropped",
        "Table Audit is dropped",
        "Index Customer_email_key is dropped",
        "Index Customer_phone_rating_idx is a valid index on Customer (phone, expression)",
    ]:
        assert name in results, (name, sorted(results))
    assert not any(name.startswith("Customer.nickname is text") for name in results)
    # Customer now has CHECKs: its behaviour tests still run, on rows that keep to them.
    assert results["Duplicate Customer (phone) rejected"].constraint == "Customer_phone_key"
    assert not any("Audit.amount" in name for name in results)


def test_a_renamed_column_expected_under_its_new_name_fails_when_the_rename_is_undone(schema_db: str):
    execute(schema_db, CHANGES)
    execute(schema_db, 'ALTER TABLE "Customer" RENAME COLUMN "rating" TO "score"')
    failed = failures(run_derived(schema_db, CHANGES)[0])
    assert failed["Customer.rating is double precision"] == "missing"
    assert failed["Customer.score is dropped"] == "present"


def test_nothing_derivable_gives_no_tests_and_notes_what_was_skipped(schema_db: str):
    data = """UPDATE "Customer" SET "score" = 0 WHERE "score" IS NULL;
DO $$ BEGIN PERFORM 1; END $$;
CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';
BEGIN; SET lock_timeout = '1s'; COMMIT;"""
    execute(schema_db, data)
    results, notes = run_derived(schema_db, data)
    assert results == {}
    assert [n.split(": ")[1].split(" ")[0] for n in notes] == ["UpdateStmt", "DoStmt", "CreateFunctionStmt"]


def test_the_reader_reads_names_as_prisma_writes_them():
    found = expect.read(
        'ALTER TABLE "public"."Lead" ADD COLUMN "x" INT; ALTER TABLE "sales"."Lead" ADD COLUMN "y" INT;'
        ' ALTER TABLE public."Lead" DROP COLUMN "x"'
    )
    assert set(found.tables) == {(None, "Lead"), ("sales", "Lead")}
    assert found.tables[(None, "Lead")].columns["x"].dropped
    assert found.tables[("sales", "Lead")].columns["y"].type == "integer"


def langfuse_folders() -> list[Path]:
    if not LANGFUSE.is_dir():
        return []
    return sorted(p for p in LANGFUSE.iterdir() if (p / "migration.sql").is_file())[:60]


@pytest.mark.skipif(not langfuse_folders(), reason=f"no langfuse migrations at {LANGFUSE}")
def test_the_first_langfuse_migrations_pass_every_derived_test(empty_db: str):
    """Real Prisma SQL, one migration after another: the derivation must produce no false failure."""
    total, failed = 0, {}
    for folder in langfuse_folders():
        text = (folder / "migration.sql").read_text(encoding="utf-8")
        execute(empty_db, text)
        results, _ = run_derived(empty_db, text)
        total += len(results)
        failed.update({f"{folder.name}: {name}": outcome for name, outcome in failures(results).items()})
    assert failed == {}, "\n".join(f"{k}: {v}" for k, v in failed.items())
    assert total > 500


# --- in the validate phase -------------------------------------------------------------------------


def write_batch(folder: Path, name: str, text: str) -> None:
    (folder / name).mkdir(parents=True)
    (folder / name / "migration.sql").write_text(text, encoding="utf-8")


def test_a_pure_data_migration_has_no_derived_tests_and_passes(empty_db: str, tmp_path: Path):
    from runbook_lib.execution.session import open_session
    from runbook_lib.phases import apply, validate

    migrations = tmp_path / "migrations"
    write_batch(migrations, "001_init", 'CREATE TABLE "Item" ("id" SERIAL PRIMARY KEY, "price" INTEGER);')
    write_batch(migrations, "002_backfill", 'UPDATE "Item" SET "price" = 0 WHERE "price" IS NULL;')
    for number in (1, 2):
        apply.run(open_session(number, database_url=empty_db, migrations_dir=migrations, reports_dir=tmp_path / "r"))

    result = validate.run(open_session(2, database_url=empty_db, migrations_dir=migrations, reports_dir=tmp_path / "r"))

    assert (result.passed, result.total) == (0, 0)
    assert result.ok and "no derived tests" in result.headline
    assert result.derived_notes == [
        "migration.sql line 1: UpdateStmt skipped, nothing derivable: not a schema change runbook models"
    ]
    result.raise_for_failures()  # does not raise

    first = validate.run(open_session(1, database_url=empty_db, migrations_dir=migrations, reports_dir=tmp_path / "r"))
    assert first.ok and first.total == first.derived > 0


def test_batch_7_keeps_its_declared_names_and_counts_declared_and_derived(after_7: str, tmp_path: Path):
    from runbook_lib.batch import declared
    from runbook_lib.execution.session import open_session
    from runbook_lib.phases import validate

    session = open_session(7, database_url=after_7, reports_dir=tmp_path / "r")
    result = validate.run(session)

    with psycopg.connect(after_7) as conn:
        declared_names = [b.name for b in declared.tests(conn, session.batch.checks)]
    names = [t.name for t in result.tests]
    assert names[: len(declared_names)] == declared_names
    assert result.ok and result.derived > 0
    assert (
        result.total == len(declared_names) + len(blocks.load(session.batch.path / "validation.sql")) + result.derived
    )
    # what migration.sql says that a declared check proves already is merged into it (one behaviour, one test): the
    # derived tests left are the behaviours no check declares
    assert [t.name for t in result.tests if t.derived] == [
        "UPDATE of Lead.customer_id to a different existing Customer accepted (derived: migration.sql line 21)",
        "UPDATE of Job.customer_id to a different existing Customer accepted (derived: migration.sql line 24)",
    ]
    merged = {t.name: t.also_from for t in result.tests if t.also_from}
    assert merged["Lead.customer_id is NOT NULL in the schema"] == ("migration.sql line 15",)
    assert merged["Lead.customer_id references Customer ON DELETE RESTRICT"] == ("migration.sql line 21",)
    # a derived test that a declared check runs already (the same statement and expectation) runs once, under
    # the declared name: X/Y counts tests, not copies
    assert "Delete of a Customer referenced by Lead rejected" in names
    assert "Delete of a Customer referenced by Lead.customer_id rejected (derived: migration.sql line 21)" not in names
    assert "Reject Lead without customer_id" in names and not any(
        n.startswith("Lead without customer_id rejected") for n in names
    )
    # The order: declared [checks], then derived, then validation.sql's blocks.
    derived_part = result.tests[len(declared_names) : len(declared_names) + result.derived]
    assert all(t.source.startswith("derived: migration.sql line ") for t in derived_part)
    assert not any(t.derived for t in result.tests[len(declared_names) + result.derived :])


def test_schema_prisma_is_compared_field_by_field_when_it_describes_the_batch(after_7: str, tmp_path: Path):
    from runbook_lib import config
    from runbook_lib.execution.session import open_session
    from runbook_lib.phases import validate

    project = tmp_path / "crm"
    shutil.copytree(config.example_dir(), project)
    own = project / "migrations" / "007_tighten_constraints" / "schema.prisma"
    # A field no check names: Customer.name made optional in schema.prisma while the column is NOT NULL.
    text = own.read_text(encoding="utf-8")
    assert "  name      String\n  email     String?  @unique" in text
    own.write_text(text.replace("  name      String\n  email", "  name      String?\n  email", 1), encoding="utf-8")

    latest = validate.run(
        open_session(7, database_url=after_7, reports_dir=tmp_path / "r", migrations_dir=project / "migrations")
    )
    assert latest.orm_scope == "every model and field"
    assert [(m.model, m.field, m.aspect) for m in latest.orm_mismatches] == [("Customer", "name", "required")]

    # Batch 6 is not the last one: the schema describes a later state, so only its checked columns are compared.
    middle = validate.run(
        open_session(6, database_url=after_7, reports_dir=tmp_path / "r", migrations_dir=project / "migrations")
    )
    assert middle.orm_scope == (
        "only the columns the checks name: a schema.prisma beside the migrations folder is "
        "taken to describe the state after the latest batch (7), as Prisma keeps it, not "
        "after batch 6"
    )


def test_a_migration_validated_after_later_ones_leaves_their_changes_to_them(empty_db: str, tmp_path: Path):
    """Validated once 2 is applied (a release validates at its end), 1's expectations of what 2 changed again
    (the enum's labels, b's type, the dropped index) are not false failures; the rest of 1 is still checked."""
    from runbook_lib.execution.session import open_session
    from runbook_lib.phases import apply, validate

    migrations = tmp_path / "migrations"
    write_batch(
        migrations,
        "001_init",
        "CREATE TYPE \"Mood\" AS ENUM ('HAPPY', 'SAD');\n"
        'CREATE TABLE "Item" ("id" SERIAL PRIMARY KEY, "a" INTEGER NOT NULL, "b" TEXT, "mood" "Mood");\n'
        'CREATE INDEX "Item_b_idx" ON "Item" ("b");\n',
    )
    write_batch(
        migrations,
        "002_change",
        "ALTER TYPE \"Mood\" ADD VALUE 'OK';\n"
        'ALTER TABLE "Item" ALTER COLUMN "b" TYPE VARCHAR(20);\nDROP INDEX "Item_b_idx";\n',
    )

    def session(n):
        return open_session(n, database_url=empty_db, migrations_dir=migrations, reports_dir=tmp_path / "r")

    apply.run(session(1))
    alone = validate.run(session(1))
    assert alone.ok and any("Item_b_idx" in t.name for t in alone.tests)
    apply.run(session(2))

    after = validate.run(session(1))
    assert after.ok, [(t.name, t.observed) for t in after.tests if not t.passed]
    names = [t.name for t in after.tests]
    assert not any("Item_b_idx" in n or n.startswith(("Enum Mood", "Item.b ")) for n in names), names
    assert any(n.startswith("Item.a is NOT NULL") for n in names), names  # what 2 left alone is still checked
    assert any("left to later applied migrations" in note for note in after.derived_notes)
    assert validate.run(session(2)).ok
