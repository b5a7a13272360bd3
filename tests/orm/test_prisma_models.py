"""Prisma Schema Updates and Application Impact, measured from the catalog snapshots apply takes.

Batch 7 of the example (Lead and Job: customer_id NOT NULL, onDelete SetNull -> Restrict) must give the
reference document's field changes and impact statements; a real migration of trigger.dev's history
(OrganizationIntegration: two columns required, a foreign key re-created with ON DELETE CASCADE) gives
the same kind of result on another project's schema.prisma; without schema.prisma the names are the
database's; each disagreement between schema.prisma and the catalog is named field by field.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import psycopg
import pytest

from runbook_lib import config
from runbook_lib.db import catalog
from runbook_lib.execution.session import open_session
from runbook_lib.orm import prisma_impact, prisma_models, prisma_schema
from runbook_lib.phases import apply
from runbook_lib.sql import parse

AFTER_7 = config.example_migrations_dir() / "007_tighten_constraints" / "schema.prisma"
TRIGGER = Path(__file__).resolve().parents[1] / "corpora" / "trigger.dev"
ORG_INTEGRATION = "20240428150144_org_integration_non_optional_fields"


@pytest.fixture
def batch_7(crm_url: str, tmp_path: Path) -> tuple[catalog.CatalogSnapshot, catalog.CatalogSnapshot]:
    """The catalog snapshots apply took before and after batch 7 (batch 6 applied first)."""
    for number in (6, 7):
        result = apply.run(
            open_session(
                number, database_url=crm_url, reports_dir=tmp_path / "r", migrations_dir=config.example_migrations_dir()
            )
        )
    return result.before, result.after


def lines_of(markdown: str, fence: str = "prisma") -> list[list[str]]:
    """The lines of each ```<fence> block."""
    return [block.splitlines() for block in re.findall(rf"```{fence}\n(.*?)\n```", markdown, re.S)]


# --- batch 7 of the example ----------------------------------------------------------------------


def test_batch_7_gives_the_reference_field_changes(batch_7):
    before, after = batch_7
    result = prisma_models.updates(before, after, prisma_schema.load(AFTER_7))

    assert [m.model for m in result.models] == ["Lead", "Job"]  # Customer was snapshotted, and did not change
    for update in result.models:
        assert [(c.before.text, c.after.text) for c in update.changes] == [
            ('customerId String? @map("customer_id")', 'customerId String @map("customer_id")'),
            (
                "customer Customer? @relation(fields: [customerId], references: [id], onDelete: SetNull)",
                "customer Customer @relation(fields: [customerId], references: [id], onDelete: Restrict)",
            ),
        ]
        assert update.changes[0].what == ("required (was optional)",)
        assert update.changes[1].what == ("required (was optional)", "onDelete: Restrict (was SetNull)")
    assert result.disagreements == []  # 007's schema.prisma describes the state after it

    lead = next(m for m in result.models if m.model == "Lead")
    whole = prisma_models.model_text(lead.model, lead.after, block_attributes=lead.block_attributes)
    assert whole.splitlines() == [
        "model Lead {",
        "  id         String   @id @default(cuid())",  # cuid(): from schema.prisma, the catalog has no default
        '  customerId String   @map("customer_id")',
        "  customer   Customer @relation(fields: [customerId], references: [id], onDelete: Restrict)",
        "  channel    String",
        "  name       String",
        "  email      String?",
        "  phone      String?",
        '  createdAt  DateTime @default(now()) @map("created_at")',
        '  updatedAt  DateTime @updatedAt @map("updated_at")',  # @updatedAt: from schema.prisma
        "  jobs       Job[]",  # a back-relation: from schema.prisma
        "",
        "  @@index([customerId])",
        '  @@map("Lead")',
        "}",
    ]


def test_batch_7_markdown_is_plain_and_marks_the_changed_lines(batch_7):
    before, after = batch_7
    text = prisma_models.updates_markdown(prisma_models.updates(before, after, prisma_schema.load(AFTER_7)))

    assert "<" not in text and "&#" not in text  # no HTML
    assert "### Lead Model" in text and "### Job Model" in text
    blocks = lines_of(text)
    assert len(blocks) == 6  # per model: Before, After, the whole model after
    assert blocks[0] == [
        "model Lead {",
        '  customerId String?   @map("customer_id")',
        "  customer   Customer? @relation(fields: [customerId], references: [id], onDelete: SetNull)",
        "}",
    ]
    assert blocks[1][1] == '  customerId String   @map("customer_id") // changed: required (was optional)'
    assert blocks[1][2].endswith(
        "onDelete: Restrict) // changed: required (was optional); onDelete: Restrict (was SetNull)"
    )
    changed = [line for line in blocks[2] if line.endswith("// changed")]
    assert [line.split()[0] for line in changed] == ["customerId", "customer"]
    assert "Model Lead (after)" in text
    assert "agrees with the database after the batch" in text


def test_batch_7_impact_gives_the_reference_statements(batch_7):
    before, after = batch_7
    impacts = prisma_impact.impact(prisma_models.updates(before, after, prisma_schema.load(AFTER_7)))

    for model in ("Lead", "Job"):
        mine = {i.kind: i for i in impacts if i.model == model}
        assert (mine["type"].before, mine["type"].after) == ("customerId: string | null", "customerId: string")
        assert f"`prisma.{model.lower()}.create()` now needs `customerId`" in mine["create"].statement
        assert "customer: { connect: { id: ... } }" in mine["create"].statement
        assert "Property 'customerId' is missing in type" in mine["create"].statement  # the reference's error
        assert 'null value in column "customer_id" violates not-null constraint' in mine["create"].statement
        assert mine["create"].error_code == "P2011"
        assert mine["relation"].after == "customer: Customer"
        assert mine["onDelete"].error_code == "P2003"
        assert f"deleting a `Customer` that still has `{model}` rows now fails with P2003" in mine["onDelete"].statement
        assert "instead of setting their `customerId` to NULL" in mine["onDelete"].statement

    text = prisma_impact.impact_markdown(impacts)
    assert "<" not in text and "&#" not in text
    assert lines_of(text, "typescript")[0] == [
        "// before",
        "type Lead = {",
        "  customerId: string | null;",
        "}",
        "// after",
        "type Lead = {",
        "  customerId: string;",
        "}",
    ]


def test_without_schema_prisma_the_names_are_the_databases(batch_7):
    before, after = batch_7
    result = prisma_models.updates(before, after, None)

    assert result.schema_path is None and result.disagreements == []
    assert "No schema.prisma" in result.notes[0]
    lead = result.models[0]
    assert not lead.names_from_schema
    assert [(c.before.text, c.after.text) for c in lead.changes] == [
        ("customer_id String?", "customer_id String"),
        (
            "Customer Customer? @relation(fields: [customer_id], references: [id], onDelete: SetNull)",
            "Customer Customer @relation(fields: [customer_id], references: [id], onDelete: Restrict)",
        ),
    ]
    impacts = prisma_impact.impact(result)
    assert any(i.after == "customer_id: string" for i in impacts)
    assert "No schema.prisma" in prisma_models.updates_markdown(result)


def test_a_stale_schema_prisma_is_named_field_by_field(batch_7):
    """The example's starting schema.prisma, against the catalog after batch 7: four disagreements, each named."""
    before, after = batch_7
    result = prisma_models.updates(before, after, prisma_schema.load(config.example_dir() / "schema.prisma"))

    found = [(d.model, d.field, d.aspect) for d in result.disagreements]
    assert found == [
        ("Lead", "customerId", "optional"),
        ("Lead", "customer", "onDelete"),
        ("Lead", "customer", "optional"),
        ("Job", "customerId", "optional"),
        ("Job", "customer", "onDelete"),
        ("Job", "customer", "optional"),
    ]
    on_delete = next(d for d in result.disagreements if d.aspect == "onDelete")
    assert (on_delete.schema_prisma, on_delete.database) == (
        "onDelete: SetNull",
        "Lead_customer_id_fkey: ON DELETE RESTRICT",
    )
    # the changes are still measured from the catalog: the stale file only names the fields
    assert result.models[0].changes[0].after.text == 'customerId String @map("customer_id")'
    assert "disagrees with the database after the batch" in prisma_models.updates_markdown(result)


def test_disagreements_on_types_defaults_indexes_and_missing_fields(batch_7):
    before, after = batch_7
    schema = prisma_schema.parse(
        "\n".join(
            [
                "model Lead {",
                "  id         Int      @id @default(autoincrement())",
                '  customerId String   @map("customer_id")',
                "  customer   Customer @relation(fields: [customerId], references: [id], onDelete: Restrict)",
                '  channel    String   @default("web")',
                "  name       String   @unique",
                "  nickname   String?",
                "  email      String?",
                "  phone      String?",
                '  createdAt  DateTime @default(now()) @map("created_at")',
                '  updatedAt  DateTime @updatedAt @map("updated_at")',
                "",
                "  @@index([name])",
                "}",
                "model Customer {",
                "  id String @id",
                "}",
            ]
        ),
        path="stale.prisma",
    )
    result = prisma_models.updates(before, after, schema)

    lead = {(d.field, d.aspect): d for d in result.disagreements if d.model == "Lead"}
    assert lead["id", "type"].database == "id text (Prisma: String)"
    assert lead["id", "default"].schema_prisma == "@default(autoincrement())"
    assert lead["channel", "default"].database == "no DEFAULT"
    assert lead["name", "unique"].schema_prisma == "@unique"
    assert lead["nickname", "missing column"].database == "no column nickname in Lead"
    assert lead["@@index([name])", "index"].database == "no index on (name)"
    assert lead["@@index([customerId])", "index"].schema_prisma == "no @@index([customerId])"
    assert ("Job", "", "missing model") in {(d.model, d.field, d.aspect) for d in result.disagreements}
    assert "Job" in [m.model for m in result.models]  # the model without a schema.prisma model: database names
    job = next(m for m in result.models if m.model == "Job")
    assert not job.names_from_schema and job.changes[0].after.text == "customer_id String"


# --- pure pieces --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pg", "expected"),
    [
        ("text", ("String", None, False, False)),
        ("character varying(191)", ("String", "@db.VarChar(191)", False, False)),
        ("uuid", ("String", "@db.Uuid", False, False)),
        ("integer", ("Int", None, False, False)),
        ("bigint", ("BigInt", None, False, False)),
        ("double precision", ("Float", None, False, False)),
        ("numeric(65,30)", ("Decimal", None, False, False)),
        ("numeric(10,2)", ("Decimal", "@db.Decimal(10, 2)", False, False)),
        ("timestamp(3) without time zone", ("DateTime", None, False, False)),
        ("timestamp(6) with time zone", ("DateTime", "@db.Timestamptz(6)", False, False)),
        ("jsonb", ("Json", None, False, False)),
        ("bytea", ("Bytes", None, False, False)),
        ("text[]", ("String", None, True, False)),
        ('"Status"', (None, None, False, False)),  # not declared: unknown, not guessed
        ("tsvector", (None, None, False, False)),
    ],
)
def test_postgres_types_map_to_prisma_scalars(pg, expected):
    assert prisma_models.prisma_type(pg) == expected


def test_enums_come_from_schema_prisma_and_defaults_read_as_prisma_writes_them():
    schema = prisma_schema.parse('enum Status {\n  ACTIVE\n  DONE\n  @@map("status")\n}\n')
    assert prisma_models.prisma_type("status", schema) == ("Status", None, False, True)
    assert prisma_models.prisma_default("'ACTIVE'::status", enum=True) == "ACTIVE"
    assert prisma_models.prisma_default("CURRENT_TIMESTAMP") == "now()"
    assert prisma_models.prisma_default("nextval('\"T_id_seq\"'::regclass)") == "autoincrement()"
    assert prisma_models.prisma_default("'scheduled'::text") == '"scheduled"'
    assert prisma_models.prisma_default("ARRAY[]::text[]") == "[]"
    assert prisma_models.prisma_default("0") == "0"
    assert prisma_models.prisma_default("gen_random_uuid()") == 'dbgenerated("gen_random_uuid()")'


def test_impact_says_unknown_types_and_bytes_by_version():
    line = prisma_models.PrismaLine(
        key="column:doc",
        kind="scalar",
        name="doc",
        type='Unsupported("tsvector")?',
        optional=True,
        column="doc",
        pg_type="tsvector",
    )
    bytes_line = dataclasses.replace(
        line, key="column:blob", name="blob", type="Bytes", scalar="Bytes", optional=False, pg_type="bytea"
    )
    update = prisma_models.ModelUpdate(
        "Doc",
        "Doc",
        [
            prisma_models.FieldChange(line.key, None, line, ("added",)),
            prisma_models.FieldChange(bytes_line.key, None, bytes_line, ("added",)),
        ],
        [line, bytes_line],
        [],
        False,
    )
    impacts = prisma_impact.impact(prisma_models.ModelUpdates([update], [], None))

    assert impacts[0].kind == "unknown" and "unknown, not guessed" in impacts[0].statement
    assert impacts[1].after == "blob: Buffer | Uint8Array"
    assert "Buffer in Prisma 5, Uint8Array from Prisma 6" in prisma_impact.TS_TYPES["Bytes"]


# --- a real project: trigger.dev --------------------------------------------------------------------


def _apply_files(url: str, folders: list[Path]) -> None:
    """Each migration.sql as one simple-protocol batch: in a transaction unless it uses CONCURRENTLY."""
    with psycopg.connect(url, autocommit=True) as conn:
        for folder in folders:
            sql = (folder / "migration.sql").read_text(encoding="utf-8")
            if "CONCURRENTLY" in sql.upper():
                for statement in parse.split(sql):  # the one splitter
                    conn.execute(statement.sql)
            else:
                with conn.transaction():
                    conn.execute(sql)


@pytest.mark.slow
def test_a_trigger_dev_migration_that_makes_a_relation_required(make_database):
    """20240428150144: OrganizationIntegration.integrationData and tokenReferenceId NOT NULL, and the
    tokenReference foreign key re-created with ON DELETE CASCADE (was SET NULL)."""
    folders = sorted(
        (p for p in (TRIGGER / "migrations").iterdir() if (p / "migration.sql").is_file()),
        key=lambda p: p.name.encode(),
    )
    at = [p.name for p in folders].index(ORG_INTEGRATION)
    url = make_database()
    _apply_files(url, folders[:at])
    table = ["OrganizationIntegration"]
    with psycopg.connect(url) as conn:
        before = catalog.snapshot(conn, table)
    _apply_files(url, folders[at : at + 1])
    with psycopg.connect(url) as conn:
        after = catalog.snapshot(conn, table)

    schema = prisma_schema.load(TRIGGER / "schema.prisma")  # the state after the last migration, not this one
    result = prisma_models.updates(before, after, schema)

    (update,) = result.models
    assert update.model == "OrganizationIntegration" and update.names_from_schema
    assert [(c.before.text, c.after.text, c.what) for c in update.changes] == [
        ("integrationData Json?", "integrationData Json", ("required (was optional)",)),
        (
            "tokenReference SecretReference? @relation(fields: [tokenReferenceId], references: [id],"
            " onDelete: SetNull, onUpdate: Cascade)",
            "tokenReference SecretReference @relation(fields: [tokenReferenceId], references: [id],"
            " onDelete: Cascade, onUpdate: Cascade)",
            ("required (was optional)", "onDelete: Cascade (was SetNull)"),
        ),
        ("tokenReferenceId String?", "tokenReferenceId String", ("required (was optional)",)),
    ]
    # the corpus's schema.prisma is from 2026: what later migrations added is named, field by field
    named = {(d.field, d.aspect) for d in result.disagreements}
    assert {
        ("externalOrganizationId", "missing column"),
        ("deletedAt", "missing column"),
        ("@@index([externalOrganizationId])", "index"),
    } <= named
    assert not any(d.field in ("integrationData", "tokenReference", "tokenReferenceId") for d in result.disagreements)

    impacts = {(i.field, i.kind): i for i in prisma_impact.impact(result)}
    assert impacts["integrationData", "type"].after == "integrationData: Prisma.JsonValue"
    assert impacts["tokenReferenceId", "type"].after == "tokenReferenceId: string"
    assert "tokenReference: { connect: { id: ... } }" in impacts["tokenReferenceId", "create"].statement
    assert "deletes those OrganizationIntegration rows too" in impacts["tokenReference", "onDelete"].statement
    assert impacts["tokenReference", "onDelete"].error_code is None
    text = prisma_models.updates_markdown(result) + prisma_impact.impact_markdown(list(impacts.values()))
    assert "<" not in text and "&#" not in text


def test_a_prisma_schema_folder_is_read_as_one_schema(tmp_path: Path) -> None:
    """prismaSchemaFolder: prisma/schema/*.prisma beside prisma/migrations, found and read as one schema."""
    from runbook_lib import batch as batch_mod
    from runbook_lib.orm import prisma_schema

    whole = (config.example_dir() / "schema.prisma").read_text(encoding="utf-8")
    head, models = whole.split("\nmodel ", 1)
    project = tmp_path / "prisma"
    (project / "schema").mkdir(parents=True)
    (project / "schema" / "base.prisma").write_text(head)
    for n, model in enumerate(models.split("\nmodel ")):
        (project / "schema" / f"{n}.prisma").write_text("model " + model)
    folder = project / "migrations" / "001_x"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text("SELECT 1;\n")
    found = prisma_schema.find(batch_mod.find(project / "migrations", 1), project / "migrations")
    assert found == project / "schema"
    split, single = prisma_schema.load(found), prisma_schema.parse(whole)
    assert [m.name for m in split.models] == [m.name for m in single.models]
    assert [f.name for f in split.model("Lead").fields] == [f.name for f in single.model("Lead").fields]
