"""ORM alignment: schema.prisma read by the small parser and compared with the database's catalog.

The example ships schema.prisma twice: examples/crm/schema.prisma (before batch 7) and
007_tighten_constraints/schema.prisma (after it). Each must agree with the database in its state;
the one from before, used after batch 7, is stale and shows two mismatches per model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from runbook_lib import batch as batch_mod
from runbook_lib import config
from runbook_lib.errors import BatchError, ValidationFailed
from runbook_lib.execution.session import open_session
from runbook_lib.orm import prisma_schema
from runbook_lib.phases import validate

BEFORE = config.example_dir() / "schema.prisma"
AFTER = config.example_migrations_dir() / "007_tighten_constraints" / "schema.prisma"
SEVEN = batch_mod.find(config.example_migrations_dir(), 7)


def compare(url: str, path: Path) -> list[prisma_schema.OrmMismatch]:
    with psycopg.connect(url) as conn:
        return prisma_schema.compare(conn, prisma_schema.load(path), SEVEN.checks.columns)


# --- parsing ---------------------------------------------------------------------------------------


def test_parse_reads_models_maps_optionality_and_relations():
    schema = prisma_schema.load(BEFORE)

    assert [m.name for m in schema.models] == ["Customer", "Lead", "Job"]
    job = schema.model("Job")
    assert job.db_name == "Job"
    customer_id = job.field_for_column("customer_id")
    assert (customer_id.name, customer_id.type, customer_id.optional, customer_id.line) == (
        "customerId",
        "String",
        True,
        45,
    )
    assert customer_id.text == 'customerId  String?   @map("customer_id")'  # the comment is gone
    relation = job.field("customer").relation
    assert relation == prisma_schema.Relation(("customerId",), ("id",), "SetNull")
    assert job.field("lead").relation.on_delete == "Restrict"
    assert schema.model("Customer").field("leads").list
    assert schema.model("Lead").field("createdAt").db_name == "created_at"


def test_parse_respects_strings_comments_and_map_spellings():
    schema = prisma_schema.parse(
        "\n".join(
            [
                "// model Ghost { }",
                "model Site {",
                '  id    Int    @id @default(autoincrement()) // "a comment"',
                '  url   String @default("https://example.com/a//b") @map("site_url")',
                '  meta  Json   @default("{\\"a\\": \\"}\\"}")',
                '  owner User?  @relation("SiteOwner", fields: [ownerId], references: [id])',
                '  ownerId Int? @map(name: "owner_id")',
                '  blob  Unsupported("point")?',
                '  @@map(name: "sites")',
                '  @@schema("web")',
                "}",
                "enum Role {",
                "  ADMIN",
                "}",
            ]
        ),
        path="x.prisma",
    )

    (site,) = schema.models
    assert (site.name, site.db_name, site.schema) == ("Site", "sites", "web")
    assert site.field("url").db_name == "site_url"
    assert site.field("url").text.endswith('@map("site_url")')
    assert site.field("ownerId").db_name == "owner_id"
    assert site.field("owner").relation == prisma_schema.Relation(("ownerId",), ("id",), None)
    assert site.field("blob").optional and site.field("blob").type == 'Unsupported("point")'
    assert schema.model_for_table(batch_mod.TableRef("sites", "web")) is site
    assert schema.model_for_table(batch_mod.TableRef("sites", "other")) is None


def test_a_line_it_cannot_read_names_the_file_and_line():
    with pytest.raises(BatchError, match=r"^x\.prisma line 3: cannot read '= 1' in model A as a field"):
        prisma_schema.parse("model A {\n  id Int @id\n  = 1\n}\n", path="x.prisma")
    with pytest.raises(BatchError, match=r"^x\.prisma line 1: model A has no closing brace"):
        prisma_schema.parse("model A {\n  id Int @id\n", path="x.prisma")


def test_find_prefers_the_batch_folder_then_the_migrations_parent(tmp_path: Path):
    assert prisma_schema.find(SEVEN) == AFTER
    six = batch_mod.find(config.example_migrations_dir(), 6)
    assert prisma_schema.find(six) == BEFORE
    shutil.copytree(config.example_migrations_dir(), tmp_path / "migrations")
    assert prisma_schema.find(batch_mod.find(tmp_path / "migrations", 6)) is None


# --- comparing with the database -------------------------------------------------------------------


def test_before_file_matches_the_database_before_batch_7(crm_url: str):
    assert compare(crm_url, BEFORE) == []
    # ... and the file after batch 7 does not, yet.
    assert {(m.model, m.field) for m in compare(crm_url, AFTER)} == {
        ("Lead", "customerId"),
        ("Lead", "customer"),
        ("Job", "customerId"),
        ("Job", "customer"),
    }


def test_after_file_matches_after_batch_7_and_the_stale_one_shows_two_mismatches_per_model(after_7: str):
    assert compare(after_7, AFTER) == []

    stale = compare(after_7, BEFORE)

    assert [(m.model, m.field, m.aspect) for m in stale] == [
        ("Lead", "customerId", "required"),
        ("Lead", "customer", "onDelete"),
        ("Job", "customerId", "required"),
        ("Job", "customer", "onDelete"),
    ]
    lead_id, lead_relation = stale[0], stale[1]
    assert lead_id.schema_prisma == 'customerId  String?   @map("customer_id")'
    assert lead_id.database == "customer_id text NOT NULL"
    assert "onDelete: SetNull" in lead_relation.schema_prisma
    assert "ON DELETE RESTRICT" in lead_relation.database and "Lead_customer_id_fkey" in lead_relation.database
    # The fix is the line batch 7's schema.prisma has, to the character.
    after_lines = {line.split("//")[0].strip() for line in AFTER.read_text(encoding="utf-8").splitlines()}
    assert all(m.fix in after_lines for m in stale), [m.fix for m in stale]
    section = prisma_schema.section(stale, str(BEFORE)).markdown
    assert section.startswith("## Prisma Schema Updates")
    assert "### Lead Model" in section and "### Job Model" in section
    assert section.count("onDelete: Restrict)") == 2 and "npx prisma generate" in section


def test_an_unwritten_on_delete_is_prismas_default(after_7: str, tmp_path: Path):
    # Required relation without onDelete: Prisma's default is Restrict, which is what the database has.
    text = AFTER.read_text(encoding="utf-8").replace(", onDelete: Restrict)", ")")
    implicit = tmp_path / "schema.prisma"
    implicit.write_text(text, encoding="utf-8")
    assert compare(after_7, implicit) == []
    # Optional one without onDelete: the default is SetNull; the database says RESTRICT.
    implicit.write_text(
        text.replace("customer    Customer  @relation", "customer    Customer? @relation"), encoding="utf-8"
    )
    found = compare(after_7, implicit)
    assert [(m.model, m.field) for m in found] == [("Lead", "customer"), ("Job", "customer")]
    assert found[0].schema_prisma.endswith("// onDelete: SetNull, Prisma's default")
    assert found[0].fix.endswith("onDelete: Restrict)")


# --- in the validate phase -------------------------------------------------------------------------


def test_validate_reports_a_stale_schema_and_fails_only_when_strict(after_7: str, tmp_path: Path):
    reports = tmp_path / "reports"

    agreed = validate.run(
        open_session(7, database_url=after_7, reports_dir=reports, migrations_dir=config.example_migrations_dir())
    )
    assert agreed.ok and agreed.prisma_schema == str(AFTER) and agreed.orm_mismatches == []

    lenient = validate.run(
        open_session(7, database_url=after_7, reports_dir=reports, migrations_dir=config.example_migrations_dir()),
        prisma_schema_path=BEFORE,
    )
    assert lenient.ok and len(lenient.orm_mismatches) == 4
    assert list(lenient.orm_frame()["model"]) == ["Lead", "Lead", "Job", "Job"]

    strict = validate.run(
        open_session(7, database_url=after_7, reports_dir=reports, migrations_dir=config.example_migrations_dir()),
        prisma_schema_path=BEFORE,
        orm_strict=True,
    )
    assert not strict.ok
    assert strict.passed == strict.total  # every test passed: the schema file alone fails it
    with pytest.raises(ValidationFailed) as info:
        strict.raise_for_failures()
    message = str(info.value)
    assert f"{BEFORE} disagrees with the database" in message
    assert "Lead.customerId reads 'customerId  String?   @map(\"customer_id\")'" in message
    with psycopg.connect(after_7) as conn:
        status, text = conn.execute(
            "SELECT status, message FROM runbook.phase_run WHERE phase = 'validate' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert status == "failed" and "4 field(s)" in text


def test_validate_falls_back_to_the_schema_next_to_the_migrations(after_7: str, tmp_path: Path):
    project = tmp_path / "crm"
    shutil.copytree(config.example_dir(), project)
    (project / "migrations" / "007_tighten_constraints" / "schema.prisma").unlink()

    result = validate.run(
        open_session(7, database_url=after_7, reports_dir=tmp_path / "reports", migrations_dir=project / "migrations")
    )

    assert result.prisma_schema == str(project / "schema.prisma")
    assert len(result.orm_mismatches) == 4 and result.ok


def test_block_comments_are_not_fields_and_lines_keep_their_numbers():
    """Real schemas (trigger.dev's) document fields with /** ... */ blocks; a /* inside a string is text."""
    text = (
        "model Thing {\n  id Int @id /* inline */\n  /**\n   * what the field means\n   */\n"
        '  name String // a /* in a line comment\n  note String @default("/* not a comment */")\n'
        "  oops\n}\n"
    )
    with pytest.raises(BatchError, match=r"line 8: cannot read 'oops'"):
        prisma_schema.parse(text)
    schema = prisma_schema.parse(text.replace("  oops\n", ""))
    assert [(f.name, f.type) for f in schema.models[0].fields] == [
        ("id", "Int"),
        ("name", "String"),
        ("note", "String"),
    ]
    for corpus in ("langfuse", "trigger.dev"):
        path = Path(__file__).resolve().parents[1] / "corpora" / corpus / "schema.prisma"
        assert len(prisma_schema.load(path).models) > 50
