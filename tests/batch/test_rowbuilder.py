"""Rows built for behaviour tests, on the schemas that gave false failures deploying real Prisma histories (issue 32).

Each schema is created in the test database as a migration would create it; its derived (and declared) tests are
built and run as validate runs them, in one transaction that is rolled back. A behaviour test must pass where the
constraint it names holds, fail where that constraint was removed by hand, and be reported not run, with the
reason, when something else refuses its row (a trigger) or no row can be built (a cycle of required keys).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from derivations import execute, run_derived, unproven

from runbook_lib import batch as batch_mod
from runbook_lib import names
from runbook_lib.batch import blocks, declared, derived, tableshape
from runbook_lib.batch.blocks import BlockResult
from runbook_lib.batch.model import TableRef
from runbook_lib.batch.rowbuilder import RowBuilder


def run_declared(url: str, tmp_path: Path, body: str) -> dict[str, BlockResult]:
    folder = tmp_path / "migrations" / "001_x"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "migration.sql").write_text("SELECT 1;\n", encoding="utf-8")
    (folder / "batch.toml").write_text(f'batch = 1\ntitle = "x"\n[checks]\n{body}\n', encoding="utf-8")
    checks = batch_mod.find(tmp_path / "migrations", 1).checks
    with psycopg.connect(url) as conn, conn.transaction(force_rollback=True):
        return {r.name: r for r in (blocks.run(conn, b) for b in declared.tests(conn, checks))}


def not_passed(results: dict[str, BlockResult]) -> dict[str, str]:
    return {name: f"{r.outcome}: {r.observed}" for name, r in results.items() if unproven(r)}


def behaviour(results: dict[str, BlockResult]) -> dict[str, BlockResult]:
    words = ("rejected", "accepted")
    return {name: r for name, r in results.items() if name.endswith(words)}


def row_counts(url: str, tables: list[str]) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


# --- more than one unique key, parents with rows --------------------------------------------------------

SUBSCRIPTION = """
CREATE TABLE "Plan" ("id" SERIAL NOT NULL, "name" TEXT NOT NULL, CONSTRAINT "Plan_pkey" PRIMARY KEY ("id"));
CREATE TABLE "Organisation" (
    "id" TEXT NOT NULL, "name" TEXT NOT NULL, CONSTRAINT "Organisation_pkey" PRIMARY KEY ("id")
);
CREATE TABLE "Subscription" (
    "id" TEXT NOT NULL,
    "planId" INTEGER NOT NULL,
    "organisationId" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "startsAt" TIMESTAMP(3) NOT NULL,
    "endsAt" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "Subscription_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "Subscription_planId_key" ON "Subscription"("planId");
CREATE UNIQUE INDEX "Subscription_organisationId_key" ON "Subscription"("organisationId");
ALTER TABLE "Subscription" ADD CONSTRAINT "Subscription_planId_fkey" FOREIGN KEY ("planId")
    REFERENCES "Plan"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "Subscription" ADD CONSTRAINT "Subscription_organisationId_fkey" FOREIGN KEY ("organisationId")
    REFERENCES "Organisation"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
"""
SUBSCRIPTION_ROWS = """
INSERT INTO "Plan" ("name") VALUES ('basic'), ('pro');
INSERT INTO "Organisation" ("id", "name") VALUES ('o1', 'Acme'), ('o2', 'Globex');
INSERT INTO "Subscription" VALUES ('s1', 1, 'o1', 'active', now(), now() + interval '1 month');
"""


@pytest.fixture
def subscription_db(empty_db: str) -> str:
    execute(empty_db, SUBSCRIPTION + SUBSCRIPTION_ROWS)
    return empty_db


def test_two_unique_foreign_keys_each_duplicate_is_refused_by_its_own_key(subscription_db: str):
    results, notes = run_derived(subscription_db, SUBSCRIPTION)

    assert not_passed(results) == {}
    for column in ("planId", "organisationId"):
        duplicate = results[f"Duplicate Subscription ({column}) rejected"]
        assert duplicate.constraint == f"Subscription_{column}_key", duplicate.observed
        # keyed foreign keys get made-up values, not the first parent's key (refused as the row goes in, the
        # duplicate never reaches the foreign-key checks at the statement's end)
        assert (
            '(SELECT "id" FROM "Plan"' not in duplicate.sql and '(SELECT "id" FROM "Organisation"' not in duplicate.sql
        )
    # the valid row really goes in, so its keyed foreign keys take new parent rows
    assert results["A valid Subscription row accepted"].sql.startswith('WITH "runbook_parent_1" AS (INSERT INTO ')
    delete = results["Delete of a Plan referenced by Subscription.planId rejected"]
    assert delete.constraint == "Subscription_planId_fkey"
    assert results["A valid Subscription row accepted"].passed
    assert notes == []
    assert row_counts(subscription_db, ["Plan", "Organisation", "Subscription"]) == {
        "Plan": 2,
        "Organisation": 2,
        "Subscription": 1,
    }


def test_the_same_schema_from_batch_toml_passes(subscription_db: str, tmp_path: Path):
    results = run_declared(
        subscription_db,
        tmp_path,
        "\n".join(
            [
                'not_null = ["Subscription.status"]',
                'unique = ["Subscription.planId", "Subscription.organisationId"]',
                "foreign_keys = [",
                '  { column = "Subscription.planId", references = "Plan.id", on_delete = "restrict" },',
                '  { column = "Subscription.organisationId", references = "Organisation.id", on_delete = "restrict" },',
                "]",
            ]
        ),
    )
    assert not_passed(results) == {}
    assert results["Duplicate Subscription.organisationId rejected"].constraint == "Subscription_organisationId_key"
    assert results["UPDATE of Subscription.status to NULL rejected"].column == "status"
    assert all(r.sql.startswith(("WITH", "INSERT", "UPDATE", "DO", "DELETE", "SELECT")) for r in results.values())


@pytest.mark.parametrize(
    "breakage, test, observed",
    [
        # the row goes in; only a foreign key whose value runbook made up refuses it, at the end of the statement
        (
            'ALTER TABLE "Subscription" ALTER COLUMN "status" DROP NOT NULL',
            "Subscription without status rejected",
            "accepted: the rows went in, and only foreign key",
        ),
        (
            'DROP INDEX "Subscription_planId_key"',
            "Duplicate Subscription (planId) rejected",
            "accepted: the rows went in, and only foreign key",
        ),
        (
            'ALTER TABLE "Subscription" DROP CONSTRAINT "Subscription_planId_fkey"',
            "Delete of a Plan referenced by Subscription.planId rejected",
            "succeeded, but an error 23001|23503 was expected",
        ),
    ],
)
def test_a_constraint_removed_by_hand_fails_its_behaviour_test(
    subscription_db: str, breakage: str, test: str, observed: str
):
    execute(subscription_db, breakage)
    results, _ = run_derived(subscription_db, SUBSCRIPTION)
    assert results[test].outcome == names.TEST_FAILED, results[test].observed
    assert results[test].observed.startswith(observed)
    # the other behaviour tests are not disturbed
    others = {n: r.outcome for n, r in behaviour(results).items() if n != test}
    assert set(others.values()) == {names.PASSED}, others


ORGANISATION = """
CREATE TABLE "User" ("id" TEXT NOT NULL PRIMARY KEY, "email" TEXT NOT NULL);
CREATE UNIQUE INDEX "User_email_key" ON "User"("email");
CREATE TABLE "Address" ("id" SERIAL PRIMARY KEY, "line" TEXT NOT NULL);
CREATE TABLE "Settings" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY, "theme" TEXT NOT NULL DEFAULT 'light'
);
CREATE TABLE "Org" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "name" TEXT NOT NULL,
    "ownerId" TEXT NOT NULL,
    "billingUserId" TEXT NOT NULL,
    "addressId" INTEGER NOT NULL,
    "settingsId" UUID NOT NULL
);
CREATE UNIQUE INDEX "Org_ownerId_key" ON "Org"("ownerId");
CREATE UNIQUE INDEX "Org_billingUserId_key" ON "Org"("billingUserId");
CREATE UNIQUE INDEX "Org_addressId_key" ON "Org"("addressId");
CREATE UNIQUE INDEX "Org_settingsId_key" ON "Org"("settingsId");
ALTER TABLE "Org" ADD CONSTRAINT "Org_ownerId_fkey" FOREIGN KEY ("ownerId") REFERENCES "User"("id") ON DELETE RESTRICT;
ALTER TABLE "Org" ADD CONSTRAINT "Org_billingUserId_fkey" FOREIGN KEY ("billingUserId")
    REFERENCES "User"("id") ON DELETE RESTRICT;
ALTER TABLE "Org" ADD CONSTRAINT "Org_addressId_fkey" FOREIGN KEY ("addressId")
    REFERENCES "Address"("id") ON DELETE RESTRICT;
ALTER TABLE "Org" ADD CONSTRAINT "Org_settingsId_fkey" FOREIGN KEY ("settingsId")
    REFERENCES "Settings"("id") ON DELETE RESTRICT;
"""


def test_four_unique_foreign_keys_take_four_new_parents_per_row(empty_db: str):
    execute(
        empty_db,
        ORGANISATION
        + """
        INSERT INTO "User" VALUES ('u1', 'a@example.com'), ('u2', 'b@example.com');
        INSERT INTO "Address" ("line") VALUES ('1 Main St');
        INSERT INTO "Settings" DEFAULT VALUES;
        INSERT INTO "Org" SELECT 'org1', 'Acme', 'u1', 'u2', 1, (SELECT "id" FROM "Settings");""",
    )

    results, _ = run_derived(empty_db, ORGANISATION)

    assert not_passed(results) == {}
    assert len([n for n in results if n.startswith("Duplicate Org (")]) == 4
    assert len([n for n in results if n.startswith("Delete of a ")]) == 4
    # Two new users in one statement (owner and billing user): their ids and emails differ.
    assert results["Duplicate Org (addressId) rejected"].constraint == "Org_addressId_key"


def test_a_unique_email_inside_a_composite_primary_key(empty_db: str):
    schema = """
    CREATE TABLE "Team" ("id" SERIAL PRIMARY KEY, "name" TEXT NOT NULL);
    CREATE TABLE "Member" ("teamId" INTEGER NOT NULL REFERENCES "Team"("id") ON DELETE RESTRICT,
                           "email" TEXT NOT NULL, "role" TEXT NOT NULL, PRIMARY KEY ("teamId", "email"));
    CREATE UNIQUE INDEX "Member_email_key" ON "Member"("email");"""
    execute(
        empty_db,
        schema
        + """
        INSERT INTO "Team" ("name") VALUES ('a');
        INSERT INTO "Member" VALUES (1, 'a@example.com', 'admin');""",
    )

    results, _ = run_derived(empty_db, schema)

    assert not_passed(results) == {}
    assert results["Duplicate Member (email) rejected"].constraint == "Member_email_key"


def test_composite_keys_that_share_a_column_take_parents_that_agree(empty_db: str):
    """langfuse's pattern: every key carries project_id; a row's two composite keys must name the same project."""
    schema = """
    CREATE TABLE "projects" ("id" TEXT PRIMARY KEY, "name" TEXT NOT NULL);
    CREATE TABLE "dataset_runs" ("id" TEXT NOT NULL, "project_id" TEXT NOT NULL REFERENCES "projects"("id"),
        PRIMARY KEY ("id", "project_id"));
    CREATE TABLE "dataset_items" ("id" TEXT NOT NULL, "project_id" TEXT NOT NULL REFERENCES "projects"("id"),
        PRIMARY KEY ("id", "project_id"));
    CREATE TABLE "dataset_run_items" ("id" TEXT NOT NULL, "project_id" TEXT NOT NULL,
        "dataset_run_id" TEXT NOT NULL, "dataset_item_id" TEXT NOT NULL, PRIMARY KEY ("id", "project_id"));
    ALTER TABLE "dataset_run_items" ADD CONSTRAINT "dataset_run_items_project_id_fkey" FOREIGN KEY ("project_id")
        REFERENCES "projects"("id");
    ALTER TABLE "dataset_run_items" ADD CONSTRAINT "dataset_run_items_run_fkey"
        FOREIGN KEY ("dataset_run_id", "project_id") REFERENCES "dataset_runs"("id", "project_id");
    ALTER TABLE "dataset_run_items" ADD CONSTRAINT "dataset_run_items_item_fkey"
        FOREIGN KEY ("dataset_item_id", "project_id") REFERENCES "dataset_items"("id", "project_id");"""
    execute(
        empty_db,
        schema
        + """
        INSERT INTO "projects" VALUES ('p1', 'one'), ('p2', 'two');
        INSERT INTO "dataset_runs" VALUES ('r1', 'p1');
        INSERT INTO "dataset_items" VALUES ('a-first-item', 'p2');""",
    )  # no existing pair of parents agrees

    results, _ = run_derived(empty_db, schema)

    assert not any(r.failed for r in results.values())
    assert results["A valid dataset_run_items row accepted"].passed
    assert results["dataset_run_items without dataset_item_id rejected"].passed
    # Deleting the new project is refused first by the new dataset run that the new item needs: the test cannot
    # reach the item's own key, so it is not run, with the key that refused it.
    delete = results["Delete of a projects referenced by dataset_run_items.project_id rejected"]
    assert delete.outcome == names.NOT_RUN and "dataset_runs_project_id_fkey" in delete.reason


def test_a_duplicate_over_part_of_a_composite_foreign_key_shares_the_whole_key(empty_db: str):
    """A tier unique per (router, position) whose router is named by (workspace, router): both rows of the duplicate
    must point at the same router row, so they share the workspace too; a new router with the same id is no way."""
    schema = """
    CREATE TABLE "Workspace" ("id" TEXT PRIMARY KEY, "name" TEXT NOT NULL);
    CREATE TABLE "Router" ("id" TEXT PRIMARY KEY, "workspaceId" TEXT NOT NULL REFERENCES "Workspace"("id"),
        "name" TEXT NOT NULL);
    CREATE UNIQUE INDEX "Router_workspaceId_id_key" ON "Router"("workspaceId", "id");
    CREATE TABLE "Tier" ("id" TEXT PRIMARY KEY, "workspaceId" TEXT NOT NULL, "routerId" TEXT NOT NULL,
        "position" INTEGER NOT NULL);
    CREATE UNIQUE INDEX "Tier_routerId_position_key" ON "Tier"("routerId", "position");
    CREATE UNIQUE INDEX "Tier_workspaceId_id_key" ON "Tier"("workspaceId", "id");
    ALTER TABLE "Tier" ADD CONSTRAINT "Tier_workspaceId_fkey" FOREIGN KEY ("workspaceId") REFERENCES "Workspace"("id");
    ALTER TABLE "Tier" ADD CONSTRAINT "Tier_workspaceId_routerId_fkey" FOREIGN KEY ("workspaceId", "routerId")
        REFERENCES "Router"("workspaceId", "id");"""
    execute(empty_db, schema)

    results, _ = run_derived(empty_db, schema)

    duplicate = results["Duplicate Tier (routerId, position) rejected"]
    assert duplicate.passed, duplicate.observed
    assert duplicate.constraint == "Tier_routerId_position_key"
    assert not any(r.failed for r in results.values()), [(n, r.observed) for n, r in results.items() if r.failed]
    # the new tier's new router points at the new workspace too, and may refuse its delete first: not run, not failed
    delete = results["Delete of a Workspace referenced by Tier.workspaceId rejected"]
    assert delete.passed or (not delete.ran and "Router_workspaceId_fkey" in delete.reason)


def test_a_keyed_identity_behind_rows_inserted_with_their_own_ids_gets_a_new_value(empty_db: str):
    """Rows imported with explicit ids leave the identity's sequence behind them: a new parent left to the sequence
    would take id 1, which a row already has, and the test would meet the parent's primary key instead."""
    schema = """
    CREATE TABLE "Plan" ("id" INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "name" TEXT NOT NULL);
    CREATE TABLE "Seat" ("id" SERIAL PRIMARY KEY, "planId" INTEGER NOT NULL REFERENCES "Plan"("id"));
    CREATE UNIQUE INDEX "Seat_planId_key" ON "Seat"("planId");"""
    execute(
        empty_db,
        schema
        + """
        INSERT INTO "Plan" ("id", "name") VALUES (1, 'a'), (2, 'b'), (3, 'c');
        INSERT INTO "Seat" ("id", "planId") VALUES (1, 1), (2, 2);""",
    )

    results, _ = run_derived(empty_db, schema)

    assert results["Duplicate Seat (planId) rejected"].passed, results["Duplicate Seat (planId) rejected"].observed
    assert results["A valid Seat row accepted"].passed, results["A valid Seat row accepted"].observed
    assert all(r.passed for r in results.values()), [(n, r.observed) for n, r in results.items() if not r.passed]


# --- deploy from empty: no parent rows anywhere -----------------------------------------------------------

FROM_EMPTY = """
CREATE TABLE "Workspace" ("id" TEXT NOT NULL, "name" TEXT NOT NULL, "slug" TEXT NOT NULL DEFAULT '',
    CONSTRAINT "Workspace_pkey" PRIMARY KEY ("id"));
CREATE UNIQUE INDEX "Workspace_name_key" ON "Workspace"("name");
CREATE UNIQUE INDEX "Workspace_slug_key" ON "Workspace"("slug");
CREATE TABLE "Project" ("id" SERIAL NOT NULL, "workspaceId" TEXT NOT NULL, "name" TEXT NOT NULL,
    CONSTRAINT "Project_pkey" PRIMARY KEY ("id"));
CREATE TABLE "Task" ("id" UUID NOT NULL DEFAULT gen_random_uuid(), "projectId" INTEGER NOT NULL,
    "title" TEXT NOT NULL, "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "Task_pkey" PRIMARY KEY ("id"));
CREATE TABLE "Label" ("id" SERIAL NOT NULL, "workspaceId" TEXT NOT NULL, "name" TEXT NOT NULL, "color" TEXT NOT NULL,
    CONSTRAINT "Label_pkey" PRIMARY KEY ("id"));
CREATE UNIQUE INDEX "Label_workspaceId_name_key" ON "Label"("workspaceId", "name");
ALTER TABLE "Project" ADD CONSTRAINT "Project_workspaceId_fkey" FOREIGN KEY ("workspaceId")
    REFERENCES "Workspace"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "Task" ADD CONSTRAINT "Task_projectId_fkey" FOREIGN KEY ("projectId")
    REFERENCES "Project"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "Label" ADD CONSTRAINT "Label_workspaceId_fkey" FOREIGN KEY ("workspaceId")
    REFERENCES "Workspace"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
"""


def test_from_empty_parents_are_inserted_first_two_levels_deep(empty_db: str, tmp_path: Path):
    execute(empty_db, FROM_EMPTY)

    results, notes = run_derived(empty_db, FROM_EMPTY)

    assert not_passed(results) == {}
    for name in [
        "Task without projectId rejected",
        "A valid Task row accepted",
        "Delete of a Project referenced by Task.projectId rejected",
        "Duplicate Workspace (name) rejected",  # the DEFAULT '' slug gets a value of its own per row
        "Duplicate Label (workspaceId, name) rejected",
    ]:
        assert results[name].passed, name
    accepted = results["A valid Task row accepted"].sql
    # A new Workspace, then a new Project that uses it, then the Task: one statement.
    assert (
        accepted.index('INSERT INTO "Workspace"')
        < accepted.index('INSERT INTO "Project"')
        < accepted.index('INSERT INTO "Task"')
    )
    assert results["Duplicate Label (workspaceId, name) rejected"].constraint == "Label_workspaceId_name_key"
    assert notes == []

    found = run_declared(
        empty_db,
        tmp_path,
        "\n".join(
            [
                'not_null = ["Task.projectId"]',
                'unique = ["Workspace.slug", { table = "Label", columns = ["workspaceId", "name"] }]',
                'foreign_keys = [{ column = "Task.projectId", references = "Project.id", on_delete = "restrict" }]',
            ]
        ),
    )
    assert not_passed(found) == {}
    assert found["UPDATE of Task.projectId to NULL rejected"].sql.startswith("DO ")  # its own row first
    assert row_counts(empty_db, ["Workspace", "Project", "Task", "Label"]) == dict.fromkeys(
        ["Workspace", "Project", "Task", "Label"], 0
    )


# --- CHECK constraints, identity, generated columns ---------------------------------------------------------

CHECKED = """
CREATE TABLE "Order" (
    "id" SERIAL PRIMARY KEY,
    "status" TEXT NOT NULL CHECK ("status" IN ('open', 'closed')),
    "kind" VARCHAR(20) NOT NULL CHECK ("kind" IN ('retail', 'trade')),
    "qty" INTEGER NOT NULL CHECK ("qty" > 0),
    "price" NUMERIC(10, 2) NOT NULL CHECK ("price" BETWEEN 5 AND 10),
    "note" TEXT NOT NULL CHECK (char_length("note") <= 8),
    "slot" INTEGER NOT NULL CHECK ("slot" >= 1 AND "slot" <= 10),
    "code" VARCHAR(12) NOT NULL,
    "total" NUMERIC GENERATED ALWAYS AS ("qty" * "price") STORED,
    "startsAt" TIMESTAMPTZ NOT NULL,
    "endsAt" TIMESTAMPTZ NOT NULL,
    CONSTRAINT "Order_window_check" CHECK ("endsAt" > "startsAt")
);
CREATE UNIQUE INDEX "Order_code_key" ON "Order"("code");
CREATE UNIQUE INDEX "Order_slot_key" ON "Order"("slot");
CREATE TABLE "Ticket" (
    "code" TEXT NOT NULL PRIMARY KEY,
    "tenant" TEXT NOT NULL,
    "number" INTEGER GENERATED ALWAYS AS IDENTITY,
    "subject" TEXT NOT NULL,
    "doubled" INTEGER GENERATED ALWAYS AS ("seq" * 2) STORED,
    "seq" INTEGER NOT NULL
);
CREATE UNIQUE INDEX "Ticket_tenant_number_key" ON "Ticket"("tenant", "number");
CREATE UNIQUE INDEX "Ticket_doubled_key" ON "Ticket"("doubled");
"""


def test_check_constraints_identity_and_generated_columns_are_respected(empty_db: str):
    execute(
        empty_db,
        CHECKED
        + """
        INSERT INTO "Order" ("status", "kind", "qty", "price", "note", "slot", "code", "startsAt", "endsAt")
        VALUES ('open', 'retail', 1, 5, 'n', 1, 'c1', now(), now() + interval '1 day');
        INSERT INTO "Ticket" ("code", "tenant", "subject", "seq") VALUES ('t1', 'acme', 'hello', 1);""",
    )

    results, notes = run_derived(empty_db, CHECKED)

    assert not_passed(results) == {}
    for name in [
        "Order without status rejected",
        "Order without qty rejected",
        "A valid Order row accepted",
        "Duplicate Ticket (tenant, number) rejected",
        "A valid Ticket row accepted",
        "Duplicate Ticket (doubled) rejected",
    ]:  # the generated key: two rows share its source, seq
        assert results[name].passed, name
    duplicate = results["Duplicate Ticket (tenant, number) rejected"]
    assert "OVERRIDING SYSTEM VALUE" in duplicate.sql and duplicate.constraint == "Ticket_tenant_number_key"
    # the generated column is never given a value; the column it is computed from is new per row
    assert '"total"' not in results["A valid Order row accepted"].sql
    assert '"doubled"' not in duplicate.sql.split("VALUES")[0]
    # the keyed slot takes a free value of its CHECK's range 1..10 per row (1 is taken)
    assert "generate_series(1, 10)" in results["A valid Order row accepted"].sql
    assert notes == []


def test_exclusion_partial_and_nulls_not_distinct_keys_get_new_values_too(empty_db: str):
    schema = """
    CREATE TABLE "Booking" ("id" SERIAL PRIMARY KEY, "code" TEXT NOT NULL, "room" INTEGER NOT NULL,
        "seat" INTEGER NOT NULL, "active" BOOLEAN NOT NULL DEFAULT true, "nick" TEXT,
        CONSTRAINT "Booking_room_excl" EXCLUDE USING btree ("room" WITH =));
    CREATE UNIQUE INDEX "Booking_code_key" ON "Booking"("code");
    CREATE UNIQUE INDEX "Booking_seat_active_key" ON "Booking"("seat") WHERE "active";
    CREATE UNIQUE INDEX "Booking_nick_key" ON "Booking"("nick") NULLS NOT DISTINCT;"""
    execute(empty_db, schema + """INSERT INTO "Booking" ("code", "room", "seat") VALUES ('b1', 1, 1);""")

    results, _ = run_derived(empty_db, schema)

    assert not_passed(results) == {}
    duplicate = results["Duplicate Booking (code) rejected"]
    assert duplicate.constraint == "Booking_code_key"
    # room (exclusion), seat (partial unique) and nick (NULL repeats under NULLS NOT DISTINCT): new per row
    for column in ("room", "seat", "nick"):
        assert f'"{column}"' in duplicate.sql.split("VALUES")[0], column


def test_the_check_forms_read_and_those_left_alone():
    from runbook_lib.batch import checkrules

    rules = checkrules.read(
        [
            "CHECK (((kind)::text = ANY ((ARRAY['retail'::character varying, 'trade'::character varying])::text[])))",
            "CHECK ((qty > 0))",
            "CHECK (((slot >= 1) AND (slot <= 3)))",
            "CHECK ((char_length(note) <= 8))",
            "CHECK ((10 >= price))",
            "CHECK ((a > b))",
            "CHECK (((x > 1) OR (x < 0)))",
        ]
    )
    assert rules["kind"].allowed == ("retail", "trade")
    assert rules["qty"].integer_range() == (1, None)
    assert rules["slot"].integer_range() == (1, 3)
    assert rules["note"].max_length == 8
    assert rules["price"].integer_range() == (None, 10)
    assert "a" not in rules and "x" not in rules


# --- foreign keys that point back ---------------------------------------------------------------------------


def test_a_self_reference_broken_by_a_nullable_key_is_built(empty_db: str):
    schema = """
    CREATE TABLE "Employee" ("id" SERIAL PRIMARY KEY, "name" TEXT NOT NULL,
        "managerId" INTEGER REFERENCES "Employee"("id") ON DELETE RESTRICT);"""
    execute(empty_db, schema)

    results, _ = run_derived(empty_db, schema)

    assert not_passed(results) == {}
    assert (
        results["Delete of a Employee referenced by Employee.managerId rejected"].constraint
        == "Employee_managerId_fkey"
    )
    assert results["A valid Employee row accepted"].passed


def test_a_required_cycle_is_not_run_and_names_the_cycle(empty_db: str):
    schema = """
    CREATE TABLE "A" ("id" SERIAL PRIMARY KEY, "name" TEXT NOT NULL, "bId" INTEGER NOT NULL);
    CREATE TABLE "B" ("id" SERIAL PRIMARY KEY, "aId" INTEGER NOT NULL REFERENCES "A"("id"));
    ALTER TABLE "A" ADD CONSTRAINT "A_bId_fkey" FOREIGN KEY ("bId") REFERENCES "B"("id");"""
    execute(empty_db, schema)

    results, _ = run_derived(empty_db, schema)

    # refused as the row goes in, a NOT NULL test needs no B row: its bId is made up
    assert results["A without name rejected"].passed
    rejected = results["A valid A row accepted"]  # the whole row must go in: a new B, which needs a new A, ...
    assert rejected.outcome == names.NOT_RUN and not rejected.failed
    assert "cannot build the row" in rejected.reason
    assert "A.bId -> B.aId -> A" in rejected.reason, rejected.reason
    accepted = results["A valid B row accepted"]
    assert accepted.outcome == names.NOT_RUN and "B.aId -> A.bId -> B" in accepted.reason
    assert results["B without aId rejected"].passed  # NULL given: no A row needed
    assert results["A.name is NOT NULL"].passed  # the catalog tests still run


def test_a_trigger_that_refuses_the_row_makes_the_test_not_run_with_its_message(empty_db: str):
    schema = """
    CREATE TABLE "Locked" ("id" SERIAL PRIMARY KEY, "name" TEXT NOT NULL);
    CREATE FUNCTION locked_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'Locked rows are written by the importer only'; END $$;
    CREATE TRIGGER "Locked_refuse" BEFORE INSERT ON "Locked" FOR EACH ROW EXECUTE FUNCTION locked_refuse();"""
    execute(empty_db, schema)

    results, _ = run_derived(empty_db, schema)

    for name in ["Locked without name rejected", "A valid Locked row accepted"]:
        result = results[name]
        assert result.outcome == names.NOT_RUN, (name, result.observed)
        assert "Locked rows are written by the importer only" in result.reason
    assert results["Table Locked exists"].passed


def test_a_shape_read_again_reflects_every_change_to_the_table_and_its_parents(empty_db: str):
    """Shapes are kept between builders (a release asks for the same tables after every migration): each change
    that a shape holds must give a fresh one, and a table that did not change gives the one kept."""
    execute(
        empty_db,
        """
    CREATE TYPE "Mood" AS ENUM ('calm');
    CREATE TABLE "P" ("id" INT PRIMARY KEY);
    CREATE TABLE "T" ("id" INT PRIMARY KEY, "p" INT NOT NULL REFERENCES "P"("id"), "m" "Mood");""",
    )

    def shape() -> tableshape.TableShape:
        with psycopg.connect(empty_db) as conn:
            return RowBuilder(conn).shape(TableRef("T"))

    first = shape()
    assert shape() is first  # nothing changed: the same shape, without reading it again
    changes = [
        ('ALTER TABLE "T" ADD COLUMN "n" TEXT NOT NULL', lambda s: s.column("n") is not None),
        ('ALTER TABLE "T" ALTER COLUMN "n" SET DEFAULT \'x\'', lambda s: s.column("n").has_default),
        ('CREATE UNIQUE INDEX "T_n_key" ON "T"("n")', lambda s: "n" in s.keyed),
        ('ALTER TABLE "T" ADD CONSTRAINT "T_id_check" CHECK ("id" > 0)', lambda s: "id" in s.rules),
        ('ALTER TABLE "P" RENAME TO "Parent"', lambda s: s.foreign_keys[0].parent.table == "Parent"),
        ('ALTER TABLE "Parent" RENAME COLUMN "id" TO "key"', lambda s: s.foreign_keys[0].parent_columns == ("key",)),
        ("ALTER TYPE \"Mood\" ADD VALUE 'angry' BEFORE 'calm'", lambda s: s.column("m").first_label == "angry"),
    ]
    for statement, holds in changes:
        before = shape()
        execute(empty_db, statement)
        after = shape()
        assert after is not before and holds(after), statement


def test_run_all_gives_what_running_each_test_alone_gives(subscription_db: str, monkeypatch):
    """run_all asks the catalog tests in one query and the built INSERTs in one DO block: the same outcome,
    observation, SQLSTATE and constraint as each run alone, broken constraints included."""
    execute(subscription_db, 'ALTER TABLE "Subscription" ALTER COLUMN "status" DROP NOT NULL')
    execute(subscription_db, 'DROP INDEX "Subscription_planId_key"')
    alone_runs = []
    run_one = blocks.run
    monkeypatch.setattr(blocks, "run", lambda conn, block: alone_runs.append(block) or run_one(conn, block))
    with psycopg.connect(subscription_db) as conn, conn.transaction(force_rollback=True):
        found = derived.derive(conn, SUBSCRIPTION).blocks
        together = blocks.run_all(conn, found)
        inserts = [b for b in found if b.built and b.sql.startswith(("INSERT", "WITH"))]
        assert not [b for b in alone_runs if b.batchable] and len(inserts) > 10
        assert len([b for b in alone_runs if b in inserts]) <= 2, "built INSERTs ran one by one"
        alone = [run_one(conn, b) for b in found]
    assert sum(b.batchable for b in found) > 5 and sum(b.built for b in found) > 3
    shown = lambda r: (r.name, r.outcome, r.observed, r.sqlstate, r.constraint, r.column, r.reason)  # noqa: E731
    assert [shown(r) for r in together] == [shown(r) for r in alone]
    assert {r.outcome for r in together} == {names.PASSED, names.TEST_FAILED}
