"""The health check: applied batches' declarative checks re-run read-only, drift named with its batch."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import papermill
import psycopg
import pytest
from papermill.exceptions import PapermillExecutionError
from psycopg import conninfo

from runbook_lib import batch as batch_mod
from runbook_lib import config
from runbook_lib.batch.model import Batch, Checks, ColumnRef, ForeignKeyCheck
from runbook_lib.db import ledger
from runbook_lib.errors import HealthDrift, RunbookError
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, health

MIGRATIONS = config.example_migrations_dir()


def execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def ledger_and_catalog(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        ledger = conn.execute("SELECT count(*), max(id) FROM runbook.phase_run").fetchone()
        columns = conn.execute(
            "SELECT table_name, column_name, is_nullable FROM information_schema.columns"
            " WHERE table_name IN ('Lead', 'Job') ORDER BY 1, 2"
        ).fetchall()
    return ledger, columns


def test_clean_after_6_and_7_is_ok_and_writes_nothing(after_7: str):
    before = ledger_and_catalog(after_7)
    url = conninfo.make_conninfo(after_7, password="health-s3cret")  # trust auth: any password is accepted

    result = health.run(url, MIGRATIONS)

    assert result.ok and result.drifts == []
    assert result.applied == [6, 7]
    # every applied batch's migration.sql is the file that was applied; batch 6 declares no checks of its own
    files = [c for c in result.checks if c.name == health.FILE_CHECK]
    assert [c.batch for c in files] == [6, 7] and all(c.expectation == c.observed for c in files)
    assert [c.name for c in result.checks if c.name != health.FILE_CHECK and c.batch == 7] == [
        "Lead.customer_id is NOT NULL in the schema",
        "Job.customer_id is NOT NULL in the schema",
        "Lead.customer_id references Customer ON DELETE RESTRICT",
        "Job.customer_id references Customer ON DELETE RESTRICT",
        "No existing Lead row has NULL customer_id",
        "No existing Job row has NULL customer_id",
        "No Lead.customer_id without its Customer",
        "No Job.customer_id without its Customer",
    ]
    assert not any(re.match(r"\s*(INSERT|UPDATE|DELETE|DO|WITH)\b", c.sql, re.I) for c in result.checks)
    assert {c.batch for c in result.checks if c.name != health.FILE_CHECK} == {7}
    assert result.headline.startswith("No drift: 10 checks of batches 6, 7 hold on ")
    assert list(result.frame()["status"]) == ["OK"] * 10
    shown = result.target_frame().to_string()
    assert "health-s3cret" not in shown and ":***@" in shown
    result.raise_for_drift()  # does not raise
    assert ledger_and_catalog(after_7) == before


def test_not_null_dropped_by_hand_is_drift_of_batch_7(after_7: str):
    execute(after_7, 'ALTER TABLE "Job" ALTER COLUMN customer_id DROP NOT NULL')

    result = health.run(after_7, MIGRATIONS)

    assert not result.ok
    (drift,) = result.drifts
    assert (drift.batch, drift.batch_name, drift.name, drift.expectation, drift.observed) == (
        7,
        "007_tighten_constraints",
        "Job.customer_id is NOT NULL in the schema",
        "NOT NULL",
        "nullable",
    )
    assert drift.status == "DRIFT"
    with pytest.raises(HealthDrift) as info:
        result.raise_for_drift()
    assert isinstance(info.value, RunbookError) and info.value.drifts == [drift]
    message = str(info.value)
    assert (
        "batch 7 (007_tighten_constraints): 'Job.customer_id is NOT NULL in the schema' expected NOT NULL, got nullable"
    ) in message
    assert "\n" not in message


def test_foreign_key_recreated_with_another_action_is_drift(after_7: str):
    execute(
        after_7,
        'ALTER TABLE "Lead" DROP CONSTRAINT "Lead_customer_id_fkey", ADD CONSTRAINT "Lead_customer_id_fkey"'
        ' FOREIGN KEY (customer_id) REFERENCES "Customer"(id) ON DELETE SET NULL ON UPDATE CASCADE',
    )

    result = health.run(after_7, MIGRATIONS)

    assert [(d.batch, d.name, d.observed) for d in result.drifts] == [
        (7, "Lead.customer_id references Customer ON DELETE RESTRICT", "set null")
    ]


def test_null_rows_and_orphans_behind_dropped_constraints_are_drift(after_7: str):
    execute(
        after_7,
        'ALTER TABLE "Lead" ALTER COLUMN customer_id DROP NOT NULL;'
        ' ALTER TABLE "Job" DROP CONSTRAINT "Job_customer_id_fkey";'
        ' UPDATE "Lead" SET customer_id = NULL WHERE id = (SELECT min(id) FROM "Lead");'
        ' UPDATE "Job" SET customer_id = \'cus_gone\' WHERE id = (SELECT min(id) FROM "Job")',
    )

    result = health.run(after_7, MIGRATIONS)

    assert {(d.name, d.observed) for d in result.drifts} == {
        ("Lead.customer_id is NOT NULL in the schema", "nullable"),
        ("No existing Lead row has NULL customer_id", "1"),
        ("Job.customer_id references Customer ON DELETE RESTRICT", "missing"),
        ("No Job.customer_id without its Customer", "1"),
    }
    assert result.headline.startswith("DRIFT: 4 of 10 checks")


def test_without_any_applied_batch_there_is_nothing_to_check(crm_url: str):
    result = health.run(crm_url, MIGRATIONS)
    assert result.ok and result.applied == [] and result.checks == []
    assert "nothing to check" in result.headline


def test_an_applied_batch_missing_from_the_folder_is_drift(after_7: str, tmp_path: Path):
    only_6 = tmp_path / "migrations"
    only_6.mkdir()
    source = MIGRATIONS / "006_backfill_customers"
    (only_6 / source.name).mkdir()
    for f in source.iterdir():
        (only_6 / source.name / f.name).write_bytes(f.read_bytes())

    result = health.run(after_7, only_6)

    (drift,) = result.drifts
    assert drift.batch == 7 and "the folder has no such batch" in drift.observed


def test_a_later_batch_declaring_the_same_object_supersedes_the_earlier_one():
    lead = ColumnRef("Lead", "customer_id")
    fk = ForeignKeyCheck(lead, ColumnRef("Customer", "id"), "restrict")
    earlier = Batch(7, "007", Path("."), "", "", (), Checks(not_null=(lead,), foreign_keys=(fk,)))
    relaxed = ForeignKeyCheck(lead, ColumnRef("Customer", "id"), "cascade")
    later = Batch(8, "008", Path("."), "", "", (7,), Checks(foreign_keys=(relaxed,)))

    current = health._current([earlier, later])

    assert current[7] == Checks(not_null=(lead,))
    assert current[8] == Checks(foreign_keys=(relaxed,))
    assert batch_mod.CHECK_KINDS  # every kind takes part


# --- the notebook ----------------------------------------------------------------------------------


def test_check_notebook_is_clean_and_parameterised():
    nb = nbformat.read(str(config.notebooks_dir() / "check.ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    (tagged,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert re.search(r"^migrations_dir = None\b", tagged.source, re.M)
    assert not re.search(r"^\s*(database_url|url|password)\s*=", tagged.source, re.M | re.I)
    assert all(nb.cells[i].cell_type == "markdown" for i in range(len(nb.cells)) if i % 2 == 0)


def test_check_notebook_fails_on_drift(after_7: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    execute(after_7, 'ALTER TABLE "Lead" ALTER COLUMN customer_id DROP NOT NULL')
    monkeypatch.setenv("DATABASE_URL", after_7)

    with pytest.raises(PapermillExecutionError) as info:
        papermill.execute_notebook(
            str(config.notebooks_dir() / "check.ipynb"),
            str(tmp_path / "check.ipynb"),
            parameters={"migrations_dir": str(MIGRATIONS)},
            progress_bar=False,
            kernel_name="python3",
        )

    assert info.value.ename == "HealthDrift"
    assert "'Lead.customer_id is NOT NULL in the schema' expected NOT NULL, got nullable" in info.value.evalue
    executed = nbformat.read(str(tmp_path / "check.ipynb"), as_version=4)
    shown = "".join(str(o.get("data", {})) for c in executed.cells for o in c.get("outputs", []))
    assert "DRIFT" in shown and "007_tighten_constraints" in shown


def test_runbook_check_exits_non_zero_on_drift_for_cron(crm_url: str, tmp_path, capsys) -> None:
    from runbook_lib import cli
    from runbook_lib.execution.session import open_session
    from runbook_lib.phases import apply

    for number in (6, 7):
        apply.run(
            open_session(
                number, database_url=crm_url, reports_dir=tmp_path, migrations_dir=config.example_migrations_dir()
            )
        )
    assert cli.main(["check", "--database-url", crm_url, "--migrations-dir", str(config.example_migrations_dir())]) == 0
    assert "OK" in capsys.readouterr().out
    with psycopg.connect(crm_url) as conn:
        conn.execute('ALTER TABLE "Job" ALTER COLUMN customer_id DROP NOT NULL')
    assert cli.main(["check", "--database-url", crm_url, "--migrations-dir", str(config.example_migrations_dir())]) == 1
    err = capsys.readouterr().err
    assert "batch 7" in err and "Job.customer_id is NOT NULL" in err and len(err.strip().splitlines()) == 1


# --- what a user reads: plain words, and a changed migration.sql ----------------------------------


def test_nullability_reads_as_what_was_expected_and_what_was_found(after_7: str):
    """information_schema's is_nullable is not what the user reads: NOT NULL expected, nullable found."""
    held = {c.name: c for c in health.run(after_7, MIGRATIONS).checks}
    lead = held["Lead.customer_id is NOT NULL in the schema"]
    assert (lead.expectation, lead.observed, lead.status) == ("NOT NULL", "NOT NULL", "OK")

    execute(after_7, 'ALTER TABLE "Lead" ALTER COLUMN customer_id DROP NOT NULL')
    result = health.run(after_7, MIGRATIONS)

    (drift,) = result.drifts
    assert (drift.name, drift.expectation, drift.observed) == (
        "Lead.customer_id is NOT NULL in the schema",
        "NOT NULL",
        "nullable",
    )
    shown = result.frame().to_string()
    assert not re.search(r"\b(YES|NO)\b", shown), shown
    with pytest.raises(HealthDrift) as info:
        result.raise_for_drift()
    assert "'Lead.customer_id is NOT NULL in the schema' expected NOT NULL, got nullable" in str(info.value)


def changed_copy(tmp_path: Path) -> Path:
    """A copy of the example's batches whose 007 migration.sql gained a line after it was applied."""
    copy = tmp_path / "changed"
    shutil.copytree(MIGRATIONS, copy)
    with open(copy / "007_tighten_constraints" / "migration.sql", "a", encoding="utf-8") as sql_file:
        sql_file.write("-- a line added after the batch was applied\n")
    return copy


def recorded_checksum(url: str, number: int) -> str:
    with psycopg.connect(url) as conn:
        return ledger.states(conn)[number].checksum


def test_a_changed_migration_file_of_an_applied_batch_is_drift(after_7: str, tmp_path: Path):
    copy = changed_copy(tmp_path)
    recorded = recorded_checksum(after_7, 7)
    now = {b.number: b for b in batch_mod.discover(copy)}[7].checksum
    assert recorded != now

    result = health.run(after_7, copy)

    assert not result.ok
    (drift,) = result.drifts  # the database itself still holds every declared check
    assert (drift.batch, drift.batch_name) == (7, "007_tighten_constraints")
    assert "migration.sql" in drift.name
    assert (drift.expectation, drift.observed) == (recorded, now)
    assert result.headline.startswith("DRIFT: ") and "migration.sql" in result.headline
    with pytest.raises(HealthDrift) as info:
        result.raise_for_drift()
    message = str(info.value)
    assert "batch 7 (007_tighten_constraints)" in message and recorded in message and now in message
    assert "\n" not in message

    unchanged = health.run(after_7, MIGRATIONS)  # the same database against the files that were applied
    assert unchanged.ok
    assert {c.batch for c in unchanged.checks if "migration.sql" in c.name} == {6, 7}


def test_runbook_check_exits_1_on_a_changed_migration_file_in_text_and_json(after_7: str, tmp_path: Path, capsys):
    from runbook_lib import cli

    copy = changed_copy(tmp_path)
    recorded = recorded_checksum(after_7, 7)
    where = ["--database-url", after_7, "--migrations-dir", str(copy)]

    assert cli.main(["check", *where]) == 1
    out, err = capsys.readouterr()
    assert "No drift" not in out and re.search(r"^\S+: DRIFT: .*migration\.sql", out, re.M), out
    assert re.search(r"^\s+7\s.*migration\.sql.*DRIFT$", out, re.M), out
    assert "batch 7 (007_tighten_constraints)" in err and recorded in err and len(err.strip().splitlines()) == 1

    assert cli.main(["check", "--format", "json", *where]) == 1
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["ok"] is False and "migration.sql" in doc["headline"]
    (failing,) = [c for c in doc["health"]["checks"] if c["outcome"] == "failed"]
    assert failing["batch"] == 7 and "migration.sql" in failing["name"]
    assert failing["expectation"] == recorded and failing["observed"] != recorded


# --- a check that could not be run: not drift ---------------------------------------------------------


def _with_a_check_not_run(fail_on_not_run: bool = False) -> health.HealthResult:
    from runbook_lib import names
    from runbook_lib.db.connection import ConnectionFacts

    held = health.HealthCheck(
        7,
        "007_tighten_constraints",
        "No existing Lead row has NULL customer_id",
        "0",
        "0",
        names.PASSED,
        'SELECT count(*) FROM "Lead" WHERE customer_id IS NULL',
    )
    skipped = health.HealthCheck(
        7,
        "007_tighten_constraints",
        "Lead.customer_id is NOT NULL in the schema",
        "NOT NULL",
        "not run: cannot build the row: there is no table Lead",
        names.NOT_RUN,
        reason="cannot build the row: there is no table Lead",
    )
    return health.HealthResult(
        ConnectionFacts("postgresql://app@db/crm", "18.0", 180000, "crm", "app", "runbook"),
        "2026-01-01T00:00:00+00:00",
        0.1,
        "migrations",
        [6, 7],
        [held, skipped],
        fail_on_not_run=fail_on_not_run,
    )


def test_a_check_not_run_is_not_drift_and_the_headline_counts_it():
    result = _with_a_check_not_run()

    assert result.ok and result.drifts == [] and [c.status for c in result.not_run] == ["NOT RUN"]
    assert result.headline == (
        "No drift: 1 of 1 checks of batches 6, 7 that ran hold on crm; 1 not run: 'Lead.customer_id is NOT NULL in "
        "the schema' of batch 7 (cannot build the row: there is no table Lead)"
    )
    assert list(result.frame()["status"]) == ["OK", "NOT RUN"]
    result.raise_for_drift()  # does not raise


def test_fail_on_not_run_makes_a_check_not_run_fail_the_health_check():
    from runbook_lib.errors import NotRun

    result = _with_a_check_not_run(fail_on_not_run=True)

    assert not result.ok and result.drifts == []
    with pytest.raises(NotRun) as info:
        result.raise_for_drift()
    message = str(info.value)
    assert "'Lead.customer_id is NOT NULL in the schema' was not run: cannot build the row" in message
    assert "--fail-on-not-run" in message and "\n" not in message and message.count(". ") == 0, message


def test_runbook_check_takes_fail_on_not_run(after_7: str, capsys):
    from runbook_lib import cli

    where = ["--database-url", after_7, "--migrations-dir", str(MIGRATIONS)]
    assert cli.main(["check", "--fail-on-not-run", "--format", "json", *where]) == 0  # every check ran
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["health"]["fail_on_not_run"] is True
    assert {c["outcome"] for c in doc["health"]["checks"]} == {"passed"}
    assert all(set(c) >= {"observed", "outcome", "reason"} and "passed" not in c for c in doc["health"]["checks"])


def test_a_later_migration_that_drops_a_checked_column_supersedes_the_checks_on_it(after_7: str, tmp_path: Path):
    """The same rule validate applies: batch 7's checks on Job.customer_id are left to batch 8, which drops the
    column, and named with its line; the checks on Lead still run, and still catch a change made by hand."""
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copy)
    later = copy / "008_drop_job_customer"
    later.mkdir()
    (later / "batch.toml").write_text(
        'batch = 8\ntitle = "Jobs no longer name a customer"\ntype = "Schema change"\ndepends_on = [7]\n',
        encoding="utf-8",
    )
    (later / "migration.sql").write_text(
        '-- jobs belong to leads now\nALTER TABLE "Job" DROP COLUMN customer_id;\n', encoding="utf-8"
    )
    session = open_session(8, migrations_dir=copy, reports_dir=tmp_path / "r", database_url=after_7)
    apply.run(session)

    result = health.run(after_7, copy)

    assert result.ok, result.headline
    assert sorted(result.superseded) == [
        "batch 7 (007_tighten_constraints): foreign keys Job.customer_id -> Customer.id ON DELETE RESTRICT: changed "
        "again by migration 8 (008_drop_job_customer) line 2",
        "batch 7 (007_tighten_constraints): not null Job.customer_id: changed again by migration 8 "
        "(008_drop_job_customer) line 2",
    ]
    assert not [c for c in result.checks if "Job" in c.name]
    assert [c.name for c in result.checks if c.batch == 7 and c.name != health.FILE_CHECK][:2] == [
        "Lead.customer_id is NOT NULL in the schema",
        "Lead.customer_id references Customer ON DELETE RESTRICT",
    ]
    execute(after_7, 'ALTER TABLE "Lead" ALTER COLUMN customer_id DROP NOT NULL')
    assert [d.name for d in health.run(after_7, copy).drifts] == ["Lead.customer_id is NOT NULL in the schema"]
