"""Batch folders: discovery of the example, and one clear sentence for every malformed input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runbook_lib import batch as batch_mod
from runbook_lib import config
from runbook_lib.batch.model import ColumnRef, ForeignKeyCheck
from runbook_lib.errors import BatchError

MIGRATION_SQL = 'ALTER TABLE "Lead" ALTER COLUMN "customer_id" SET NOT NULL;\n'


def make_batch(root: Path, folder: str, toml: str | None, *, migration: str | None = MIGRATION_SQL) -> Path:
    path = root / folder
    path.mkdir(parents=True)
    if toml is not None:
        (path / "batch.toml").write_text(toml, encoding="utf-8")
    if migration is not None:
        (path / "migration.sql").write_text(migration, encoding="utf-8")
    return path


def manifest(number: int, *extra: str, depends_on: str = "[]") -> str:
    return "\n".join([f"batch = {number}", f'title = "Batch {number}"', f"depends_on = {depends_on}", *extra]) + "\n"


def discover_error(root: Path) -> str:
    with pytest.raises(BatchError) as info:
        batch_mod.discover(root)
    return str(info.value)


# --- the example -----------------------------------------------------------------------------


def test_discover_example_finds_batches_6_and_7_with_their_checks():
    batches = batch_mod.discover(config.example_migrations_dir())

    assert [b.number for b in batches] == [6, 7]
    six, seven = batches
    assert six.name == "006_backfill_customers"
    assert six.type == "Data backfill"
    assert six.depends_on == ()
    assert not six.checks

    assert seven.name == "007_tighten_constraints"
    assert seven.title == "Require a customer on every Lead and Job"
    assert seven.depends_on == (6,)
    assert seven.checks.not_null == (ColumnRef("Lead", "customer_id"), ColumnRef("Job", "customer_id"))
    assert seven.checks.foreign_keys == (
        ForeignKeyCheck(ColumnRef("Lead", "customer_id"), ColumnRef("Customer", "id"), "restrict"),
        ForeignKeyCheck(ColumnRef("Job", "customer_id"), ColumnRef("Customer", "id"), "restrict"),
    )
    assert seven.checks.tables == ["Lead", "Job", "Customer"]
    # The checksum is the sha256 of migration.sql, as Prisma records it.
    assert re.fullmatch(r"[0-9a-f]{64}", seven.checksum)
    assert seven.checksum != six.checksum
    assert {"batch.toml", "migration.sql", "rollback.sql", "preflight.sql", "validation.sql"} <= {
        f.name for f in seven.files
    }


def test_find_returns_the_numbered_batch():
    found = batch_mod.find(config.example_migrations_dir(), 7)
    assert found.path == config.example_migrations_dir() / "007_tighten_constraints"


def test_find_unknown_batch_lists_the_known_ones():
    with pytest.raises(BatchError) as info:
        batch_mod.find(config.example_migrations_dir(), 8)
    message = str(info.value)
    assert "Batch 8 is not in" in message
    assert "6, 7" in message
    assert "--migrations-dir" in message


def test_checksum_follows_the_file(tmp_path):
    folder = make_batch(tmp_path, "001_a", manifest(1))
    before = batch_mod.find(tmp_path, 1).checksum
    (folder / "migration.sql").write_text(MIGRATION_SQL + "-- edited\n", encoding="utf-8")
    assert batch_mod.find(tmp_path, 1).checksum != before


def test_quoted_and_schema_qualified_column_refs(tmp_path):
    make_batch(tmp_path, "001_a", manifest(1, "[checks]", 'not_null = ["crm.\\"Odd.Table\\".\\"a\\"\\"b\\""]'))
    (ref,) = batch_mod.find(tmp_path, 1).checks.not_null
    assert ref == ColumnRef(table="Odd.Table", column='a"b', schema="crm")


def test_on_delete_spellings_are_normalised(tmp_path):
    make_batch(
        tmp_path,
        "001_a",
        manifest(
            1,
            "[checks]",
            'foreign_keys = [{ column = "Lead.customer_id", references = "Customer.id", on_delete = "SET_NULL" }]',
        ),
    )
    (fk,) = batch_mod.find(tmp_path, 1).checks.foreign_keys
    assert fk.on_delete == "set null"


# --- malformed input: the message names the file, the line and the fix ---------------------------


def test_bad_toml(tmp_path):
    make_batch(tmp_path, "001_a", 'batch = 1\ntitle = "unterminated\n')
    message = discover_error(tmp_path)
    assert str(tmp_path / "001_a" / "batch.toml") in message
    assert "not valid TOML" in message
    assert "line 2" in message
    assert "fix" in message


def test_unknown_top_level_key(tmp_path):
    make_batch(tmp_path, "001_a", manifest(1, 'titel = "typo"'))
    message = discover_error(tmp_path)
    assert str(tmp_path / "001_a" / "batch.toml") in message
    assert "line 4" in message
    assert "'titel'" in message
    assert "the known keys are" in message and "title" in message


def test_unknown_check_kind(tmp_path):
    make_batch(tmp_path, "001_a", manifest(1, "[checks]", 'not_nul = ["Lead.customer_id"]'))
    message = discover_error(tmp_path)
    assert str(tmp_path / "001_a" / "batch.toml") in message
    assert "line 5" in message
    assert "'not_nul'" in message
    assert "foreign_keys, not_null" in message


def test_column_ref_without_table(tmp_path):
    make_batch(tmp_path, "001_a", manifest(1, "[checks]", 'not_null = ["Lead"]'))
    message = discover_error(tmp_path)
    assert str(tmp_path / "001_a" / "batch.toml") in message
    assert "line 5" in message
    assert "'Lead' is not a column" in message
    assert '"Table.column"' in message


def test_bad_on_delete(tmp_path):
    make_batch(
        tmp_path,
        "001_a",
        manifest(
            1,
            "[checks]",
            'not_null = ["Lead.customer_id"]',
            'foreign_keys = [{ column = "Lead.customer_id", references = "Customer.id", on_delete = "explode" }]',
        ),
    )
    message = discover_error(tmp_path)
    assert str(tmp_path / "001_a" / "batch.toml") in message
    assert "line 6" in message
    assert "'explode'" in message
    assert "restrict" in message and "set null" in message


def test_batch_number_must_be_a_whole_number(tmp_path):
    make_batch(tmp_path, "001_a", 'title = "x"\nbatch = "seven"\n')
    message = discover_error(tmp_path)
    assert "batch.toml line 2" in message
    assert "batch = 7" in message


def test_depends_on_a_missing_batch(tmp_path):
    make_batch(tmp_path, "001_a", manifest(1))
    make_batch(tmp_path, "002_b", manifest(2, depends_on="[5]"))
    message = discover_error(tmp_path)
    assert str(tmp_path / "002_b" / "batch.toml") in message
    assert "line 3" in message
    assert "batch 5" in message
    assert "fix depends_on" in message


def test_duplicate_batch_numbers(tmp_path):
    make_batch(tmp_path, "001_a", manifest(3))
    make_batch(tmp_path, "002_b", manifest(3))
    message = discover_error(tmp_path)
    assert "Batch number 3" in message
    assert str(tmp_path / "001_a" / "batch.toml") in message
    assert str(tmp_path / "002_b" / "batch.toml") in message
    assert "line 1" in message
    assert "give each batch its own number" in message


def test_dependency_cycle(tmp_path):
    make_batch(tmp_path, "001_a", manifest(1, depends_on="[2]"))
    make_batch(tmp_path, "002_b", manifest(2, depends_on="[1]"))
    message = discover_error(tmp_path)
    assert "cycle" in message
    assert re.search(r"1 -> 2 -> 1|2 -> 1 -> 2", message)
    assert re.search(re.escape(str(tmp_path)) + r"/00[12]_[ab]/batch\.toml line 3", message)
    assert "remove one of these depends_on" in message


def test_folder_without_migration_sql(tmp_path):
    make_batch(tmp_path, "001_a", manifest(1), migration=None)
    message = discover_error(tmp_path)
    assert str(tmp_path / "001_a") in message
    assert "has no migration.sql" in message
    assert "every batch folder needs one" in message


def test_missing_migrations_folder(tmp_path):
    message = discover_error(tmp_path / "nope")
    assert str(tmp_path / "nope") in message and "does not exist" in message
    assert "--migrations-dir" in message
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    assert f"{tmp_path / 'a-file'} is a file, not a folder;" in discover_error(tmp_path / "a-file")


# --- Prisma's layout -----------------------------------------------------------------------------


def test_prisma_layout_is_numbered_in_order_with_each_depending_on_the_previous(tmp_path):
    make_batch(tmp_path, "20240301000000_add_jobs", None, migration='CREATE TABLE "Job" (id text);\n')
    make_batch(tmp_path, "20240101000000_init", None, migration='CREATE TABLE "Lead" (id text);\n')
    make_batch(tmp_path, "20240201000000_customers", None, migration='CREATE TABLE "Customer" (id text);\n')
    (tmp_path / "migration_lock.toml").write_text('provider = "postgresql"\n', encoding="utf-8")

    batches = batch_mod.discover(tmp_path)

    assert [(b.number, b.name, b.depends_on) for b in batches] == [
        (1, "20240101000000_init", ()),
        (2, "20240201000000_customers", (1,)),
        (3, "20240301000000_add_jobs", (2,)),
    ]
    assert all(b.type == "Prisma migration" and not b.checks for b in batches)
    assert batch_mod.find(tmp_path, 2).migration_sql == 'CREATE TABLE "Customer" (id text);\n'


def test_prisma_folder_without_migration_sql_is_refused(tmp_path):
    make_batch(tmp_path, "20240101000000_init", None)
    broken = tmp_path / "20240201000000_next"
    broken.mkdir()
    (broken / "batch.toml").write_text(manifest(2), encoding="utf-8")
    message = discover_error(tmp_path)
    assert str(broken) in message and "has no migration.sql" in message


def test_a_folder_without_batch_toml_among_numbered_batches_is_refused(tmp_path):
    """Numbered by its position it would be batch 2 here, not the 7 its name says: refused, naming it."""
    make_batch(tmp_path, "006_backfill", manifest(6))
    lost = make_batch(tmp_path, "007_tighten", None)
    message = discover_error(tmp_path)
    assert message == (
        f"{lost} has no batch.toml, unlike the other batches of {tmp_path} (e.g. 006_backfill); "
        "add one with `batch = 7` and a title, or remove every batch.toml to number the folders by "
        "their order (Prisma's layout)."
    )
    (lost / "batch.toml").write_text(manifest(7, depends_on="[6]"), encoding="utf-8")
    assert [b.number for b in batch_mod.discover(tmp_path)] == [6, 7]
