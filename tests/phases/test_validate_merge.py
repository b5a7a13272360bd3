"""One behaviour, one test; and the reassign a foreign key allows (issue 34), on a real server.

A derived test that proves what a declared [checks] test proves (same table, columns, kind and expected outcome) is
merged into the declared one, which records its second source and fails if either half would; a foreign key derives
"UPDATE to a different existing parent accepted", not run (never failed) when there is no other parent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg

from runbook_lib import config, names
from runbook_lib.batch import blocks
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, validate
from runbook_lib.report.records import RunFolder, ValidationResult

# Batch 7 before issue 34: 20/20, four of them twice (a declared NOT NULL and foreign key, then the same derived).
BEFORE_DUPLICATES = [
    "Lead.customer_id is NOT NULL (derived: migration.sql line 15)",
    "Job.customer_id is NOT NULL (derived: migration.sql line 18)",
    "Lead FOREIGN KEY Lead_customer_id_fkey (customer_id) REFERENCES Customer (id) ON DELETE RESTRICT ON UPDATE CASCADE"
    " (derived: migration.sql line 21)",
    "Job FOREIGN KEY Job_customer_id_fkey (customer_id) REFERENCES Customer (id) ON DELETE RESTRICT ON UPDATE CASCADE"
    " (derived: migration.sql line 24)",
]
BATCH_7 = [
    "Lead.customer_id is NOT NULL in the schema",
    "Job.customer_id is NOT NULL in the schema",
    "Lead.customer_id references Customer ON DELETE RESTRICT",
    "Job.customer_id references Customer ON DELETE RESTRICT",
    "Reject Lead without customer_id",
    "Reject Job without customer_id",
    "Allow Lead with customer_id",
    "Allow Job with customer_id",
    "UPDATE of Lead.customer_id to NULL rejected",
    "UPDATE of Job.customer_id to NULL rejected",
    "Delete of a Customer referenced by Lead rejected",
    "Delete of a Customer referenced by Job rejected",
    "No existing Lead row has NULL customer_id",
    "No existing Job row has NULL customer_id",
    "No Lead.customer_id without its Customer",
    "No Job.customer_id without its Customer",
    "UPDATE of Lead.customer_id to a different existing Customer accepted (derived: migration.sql line 21)",
    "UPDATE of Job.customer_id to a different existing Customer accepted (derived: migration.sql line 24)",
]
ALSO_FROM = {
    "Lead.customer_id is NOT NULL in the schema": ("migration.sql line 15",),
    "Job.customer_id is NOT NULL in the schema": ("migration.sql line 18",),
    "Lead.customer_id references Customer ON DELETE RESTRICT": ("migration.sql line 21",),
    "Job.customer_id references Customer ON DELETE RESTRICT": ("migration.sql line 24",),
    "Reject Lead without customer_id": ("migration.sql line 15",),
    "Reject Job without customer_id": ("migration.sql line 18",),
    "Allow Lead with customer_id": ("migration.sql line 15",),
    "Allow Job with customer_id": ("migration.sql line 18",),
    "Delete of a Customer referenced by Lead rejected": ("migration.sql line 21",),
    "Delete of a Customer referenced by Job rejected": ("migration.sql line 24",),
}


def session(url: str, tmp_path: Path, number: int = 7, migrations: Path | None = None):
    return open_session(
        number,
        database_url=url,
        reports_dir=tmp_path / "r",
        migrations_dir=migrations or config.example_migrations_dir(),
    )


def test_batch_7_counts_each_behaviour_once_and_records_the_second_source(after_7: str, tmp_path: Path):
    run = session(after_7, tmp_path)
    result = validate.run(run)

    assert [t.name for t in result.tests] == BATCH_7
    assert not set(BEFORE_DUPLICATES) & {t.name for t in result.tests}
    # 20 before, four of them twice: 16 behaviours, and the two reassigns the reference's "still ALLOWED" lists
    assert result.headline == "18/18 tests passed (100%; 16 declared, 2 derived)"
    assert {t.name: t.also_from for t in result.tests if t.also_from} == ALSO_FROM
    # where the two SQL differ both ran (the derived foreign-key test checks ON UPDATE too): the half is recorded
    fk = next(t for t in result.tests if t.name == "Lead.customer_id references Customer ON DELETE RESTRICT")
    assert [(h.name, h.outcome) for h in fk.also] == [(BEFORE_DUPLICATES[2], names.PASSED)]
    assert fk.sources == "batch.toml, also derived from migration.sql line 21"
    # an identical statement ran once
    assert next(t for t in result.tests if t.name == "Reject Lead without customer_id").also == ()

    # the record carries it, and reads back
    read = RunFolder(run.run.path).read("validate", ValidationResult)
    assert [t.also_from for t in read.tests] == [t.also_from for t in result.tests]
    assert read.tests[2].also[0].name == BEFORE_DUPLICATES[2]
    data = RunFolder(run.run.path).read_data("validate")
    assert data["tests"][0]["also_from"] == ["migration.sql line 15"]


def test_a_record_without_the_field_still_loads(after_7: str, tmp_path: Path):
    run = session(after_7, tmp_path)
    validate.run(run)
    path = RunFolder(run.run.path).record_path("validate")
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    for test in data["tests"]:
        test.pop("also_from"), test.pop("also")
    path.write_text(json.dumps(data), encoding="utf-8")
    read = RunFolder(run.run.path).read("validate", ValidationResult)
    assert [t.also_from for t in read.tests] == [()] * len(BATCH_7) and read.ok


def test_reassign_to_a_different_customer_is_allowed_for_lead_and_job(after_7: str, tmp_path: Path):
    result = validate.run(session(after_7, tmp_path))
    for table in ("Lead", "Job"):
        [test] = [t for t in result.tests if t.name.startswith(f"UPDATE of {table}.customer_id to a different")]
        assert test.outcome == names.PASSED, test.observed
        assert test.observed == "ok (1 row affected)" and test.expectation == "ok"
        assert test.sql.startswith("WITH runbook_child") and f'UPDATE "{table}" SET "customer_id"' in test.sql
    with psycopg.connect(after_7) as conn:  # rolled back: every row still has the customer it had
        assert (
            conn.execute('SELECT count(*) FROM "Lead" l JOIN "Customer" c ON c.id = l.customer_id').fetchone()[0]
            == conn.execute('SELECT count(*) FROM "Lead"').fetchone()[0]
        )


def test_reassign_is_proved_when_the_parent_table_has_a_single_row(after_7: str, tmp_path: Path):
    """A deploy from empty, or one customer only: the second parent is made up inside the test, as test rows are,
    so the foreign key's "reassign allowed" is proved, never left unproved by the data there is."""
    with psycopg.connect(after_7) as conn:
        keep = conn.execute('SELECT min(id) FROM "Customer"').fetchone()[0]
        conn.execute('ALTER TABLE "Lead" DROP CONSTRAINT "Lead_customer_id_fkey"')  # to leave one customer only
        conn.execute('ALTER TABLE "Job" DROP CONSTRAINT "Job_customer_id_fkey"')
        conn.execute('UPDATE "Lead" SET customer_id = %s', (keep,))
        conn.execute('UPDATE "Job" SET customer_id = %s', (keep,))
        conn.execute('DELETE FROM "Customer" WHERE id <> %s', (keep,))
        conn.execute(
            'ALTER TABLE "Lead" ADD CONSTRAINT "Lead_customer_id_fkey" FOREIGN KEY ("customer_id")'
            ' REFERENCES "Customer"("id") ON DELETE RESTRICT ON UPDATE CASCADE'
        )
        conn.execute(
            'ALTER TABLE "Job" ADD CONSTRAINT "Job_customer_id_fkey" FOREIGN KEY ("customer_id")'
            ' REFERENCES "Customer"("id") ON DELETE RESTRICT ON UPDATE CASCADE'
        )
        assert conn.execute('SELECT count(*) FROM "Customer"').fetchone()[0] == 1

    result = validate.run(session(after_7, tmp_path))

    reassigns = [t for t in result.tests if "to a different existing Customer" in t.name]
    assert len(reassigns) == 2 and all(t.passed for t in reassigns), reassigns
    assert result.ok and result.headline.startswith("18/18 tests passed")
    with psycopg.connect(after_7) as conn:  # every test rolled back: still one customer
        assert conn.execute('SELECT count(*) FROM "Customer"').fetchone()[0] == 1


def test_a_merged_test_fails_when_its_derived_half_fails(after_7: str, tmp_path: Path):
    """The declared check reads ON DELETE only; migration.sql said ON UPDATE CASCADE too. A foreign key re-created
    with ON UPDATE NO ACTION passes the declared half and fails the derived one: the merged test fails."""
    with psycopg.connect(after_7) as conn:
        conn.execute('ALTER TABLE "Job" DROP CONSTRAINT "Job_customer_id_fkey"')
        conn.execute(
            'ALTER TABLE "Job" ADD CONSTRAINT "Job_customer_id_fkey" FOREIGN KEY ("customer_id")'
            ' REFERENCES "Customer"("id") ON DELETE RESTRICT ON UPDATE NO ACTION'
        )

    result = validate.run(session(after_7, tmp_path))

    assert not result.ok
    assert [t.name for t in result.tests] == BATCH_7  # still one test per behaviour
    [failed] = result.failures
    assert failed.name == "Job.customer_id references Customer ON DELETE RESTRICT"
    assert failed.also_from == ("migration.sql line 24",)
    [half] = failed.also
    assert half.outcome == names.TEST_FAILED and half.observed.endswith("ON UPDATE NO ACTION")
    assert failed.observed == (
        "restrict; the test derived from migration.sql line 24 expected (customer_id) REFERENCES Customer (id) "
        "ON DELETE RESTRICT ON UPDATE CASCADE, got (customer_id) REFERENCES Customer (id) ON DELETE RESTRICT "
        "ON UPDATE NO ACTION"
    )
    assert result.headline.startswith("17/18 tests passed")


def test_a_derived_test_of_another_column_stays_a_test_of_its_own(crm_url: str, tmp_path: Path):
    """A migration that also makes Job.window_start NOT NULL, which no check declares: its derived test stays."""
    migrations = tmp_path / "migrations"
    shutil.copytree(config.example_migrations_dir(), migrations)
    sql = migrations / "007_tighten_constraints" / "migration.sql"
    sql.write_text(
        sql.read_text(encoding="utf-8")
        + '\n\n-- AlterTable\nALTER TABLE "Job" ALTER COLUMN "window_start" SET NOT NULL;\n',
        encoding="utf-8",
    )
    for number in (6, 7):
        apply.run(session(crm_url, tmp_path, number, migrations))

    result = validate.run(session(crm_url, tmp_path, 7, migrations))

    assert result.ok, [(t.name, t.observed) for t in result.failures]
    derived = [t.name for t in result.tests if t.derived]
    assert "Job.window_start is NOT NULL (derived: migration.sql line 28)" in derived
    assert "Job without window_start rejected (derived: migration.sql line 28)" in derived
    assert "Job.customer_id is NOT NULL (derived: migration.sql line 18)" not in derived


def test_combined_outcomes():
    """failed if either failed; not run only if both were not run."""

    def result(outcome: str, source: str = "batch.toml") -> blocks.BlockResult:
        return blocks.BlockResult(
            "t", "SELECT 1", "1", outcome, outcome, source=source, reason="why" if outcome == names.NOT_RUN else ""
        )

    block = blocks.SqlBlock(
        "t", "SELECT 1", blocks.Expectation("value", "1"), "batch.toml", also_from=("migration.sql line 3",)
    )
    half = "derived: migration.sql line 3"
    cases = [
        ((names.PASSED, names.PASSED), names.PASSED),
        ((names.PASSED, names.TEST_FAILED), names.TEST_FAILED),
        ((names.TEST_FAILED, names.PASSED), names.TEST_FAILED),
        ((names.NOT_RUN, names.PASSED), names.PASSED),
        ((names.PASSED, names.NOT_RUN), names.PASSED),
        ((names.NOT_RUN, names.TEST_FAILED), names.TEST_FAILED),
        ((names.NOT_RUN, names.NOT_RUN), names.NOT_RUN),
    ]
    for (own, other), wanted in cases:
        found = blocks.combined(block, result(own), [result(other, half)])
        assert found.outcome == wanted, (own, other)
        assert found.also_from == ("migration.sql line 3",)
