"""The phases against the example CRM on a real server: preflight, apply, validate, rollback.

Each test gets a fresh copy of the example at its starting state (before batch 6).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from runbook_lib import config
from runbook_lib.db import catalog, ledger, migration_lock
from runbook_lib.db import connection as database
from runbook_lib.errors import (
    DatabaseError,
    DependencyError,
    DriftError,
    LockBusy,
    MigrationFailed,
    NotApplied,
    PreflightFailed,
    ValidationFailed,
)
from runbook_lib.execution.session import Session, open_session
from runbook_lib.phases import apply, preflight, rollback, validate

TABLES = ["Customer", "Lead", "Job"]


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def session_for(crm_url: str, tmp_path: Path):
    """open_session on the test database, reports under tmp_path (and migrations_dir if given)."""

    def make(batch: int, migrations_dir: Path | None = None) -> Session:
        return open_session(
            batch,
            database_url=crm_url,
            reports_dir=tmp_path / "reports",
            migrations_dir=migrations_dir or config.example_migrations_dir(),
        )

    return make


def catalog_state(url: str) -> tuple:
    """The catalog of the three tables (columns, constraints, indexes, row counts), without sizes or time."""
    with psycopg.connect(url) as conn:
        snap = catalog.snapshot(conn, TABLES)
    return tuple(dataclasses.replace(t, bytes=0) for t in snap.tables)


def table_rows(url: str) -> dict[str, list[tuple]]:
    """Every row of the three tables, all columns, sorted."""
    with psycopg.connect(url) as conn:
        return {
            t: sorted(conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(t))).fetchall()) for t in TABLES
        }


def ledger_rows(url: str) -> list[dict]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('runbook.phase_run')").fetchone()[0] is None:
            return []
        cur = conn.execute("SELECT * FROM runbook.phase_run ORDER BY id")
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def scalar(url: str, query: str):
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchone()[0]


def applied(url: str, batch: int) -> bool:
    with psycopg.connect(url) as conn:
        return ledger.state(conn, batch).applied


# --- preflight -----------------------------------------------------------------------------------


def test_preflight_of_7_before_6_is_nogo_and_names_the_gates_and_the_dependency(session_for, crm_url):
    before = catalog_state(crm_url)

    result = preflight.evaluate(session_for(7), lint=False)

    assert result.verdict.status == preflight.NOGO
    reasons = "\n".join(result.verdict.reasons)
    assert "batch 6, which this batch depends on, is not applied" in reasons
    assert re.search(r"gate 'Leads with NULL customer_id' expected 0, got [1-9]\d*", reasons)
    assert re.search(r"gate 'Jobs with NULL customer_id' expected 0, got [1-9]\d*", reasons)
    # batch.toml's not_null implies the same two gates preflight.sql asks: each is asked once, by its author's
    # name; the gates batch.toml implies that preflight.sql does not ask stay
    names = [g.name for g in result.gates]
    assert "Lead rows with NULL customer_id" not in names and names.count("Leads with NULL customer_id") == 1
    assert "Lead.customer_id values missing from Customer" in names
    # The gate's count is the database's.
    nulls = scalar(crm_url, 'SELECT count(*) FROM "Lead" WHERE customer_id IS NULL')
    gate = next(g for g in result.gates if g.name == "Leads with NULL customer_id")
    assert gate.value == str(nulls) and nulls > 0
    assert result.ledger.dependencies == ((6, False),)
    with pytest.raises(PreflightFailed, match=r"^Preflight of batch 7 says NO-GO: .*batch 6"):
        result.raise_for_verdict()
    # evaluate is read-only: not even the ledger is created.
    assert catalog_state(crm_url) == before
    assert ledger_rows(crm_url) == []


def test_preflight_cannot_write_even_through_preflight_sql(session_for, crm_url, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(config.example_migrations_dir(), migrations)
    with (migrations / "006_backfill_customers" / "preflight.sql").open("a", encoding="utf-8") as f:
        f.write('\n-- name: Sneaky write\n-- expect: ok\nDELETE FROM "Job";\n')

    result = preflight.evaluate(session_for(6, migrations), lint=False)

    sneaky = next(g for g in result.gates if g.name == "Sneaky write")
    assert not sneaky.passed and sneaky.sqlstate == "25006"  # read_only_sql_transaction
    assert result.verdict.status == preflight.NOGO
    assert scalar(crm_url, 'SELECT count(*) FROM "Job"') > 0


def test_preflight_run_writes_the_record_and_a_ledger_row(session_for, crm_url):
    session = session_for(7)

    result = preflight.run(session, lint=False)

    record = json.loads((session.run.path / "preflight.json").read_text(encoding="utf-8"))
    assert record["verdict"]["status"] == "NO-GO"
    assert record["batch"]["number"] == 7
    assert record["run_id"] == session.run.run_id
    assert any(g["name"] == "Leads with NULL customer_id" and g["outcome"] == "failed" for g in record["gates"])
    (row,) = ledger_rows(crm_url)
    assert (row["batch"], row["phase"], row["status"], row["run_id"]) == (7, "preflight", "failed", session.run.run_id)
    assert row["checksum"] == session.batch.checksum
    assert row["message"] == str(result.verdict) and "NO-GO" in row["message"]
    assert row["finished_at"] is not None


def test_after_batch_6_preflight_of_7_is_go(session_for, crm_url):
    assert apply.run(session_for(6)).status == "applied"

    result = preflight.evaluate(session_for(7))

    assert result.verdict.status == preflight.GO, result.verdict
    assert all(g.passed for g in result.gates)
    assert result.ledger.dependencies == ((6, True),)
    assert {t.table for t in result.tables} >= {"Lead", "Job", "Customer"}
    # The parser's view of migration.sql: SET NOT NULL on "Lead" takes ACCESS EXCLUSIVE on it.
    set_not_null = result.statements[2]
    assert set_not_null.line == 15 and "SET NOT NULL" in set_not_null.sql
    assert ("Lead", "ACCESS EXCLUSIVE") in {(lock.table, lock.mode) for lock in set_not_null.locks}
    assert result.lint is not None


# --- apply refusals ------------------------------------------------------------------------------


def test_apply_7_before_6_is_refused_and_changes_nothing(session_for, crm_url):
    before = catalog_state(crm_url)

    with pytest.raises(DependencyError, match=r"depends on batch 6, which is not applied.*apply batch 6 first"):
        apply.run(session_for(7))
    # Not even force skips a missing dependency.
    with pytest.raises(DependencyError):
        apply.run(session_for(7), force=True)

    assert catalog_state(crm_url) == before
    assert not applied(crm_url, 7)


def test_apply_refused_by_failing_gate_then_forced_fails_cleanly(session_for, crm_url):
    apply.run(session_for(6))
    # Bad data arrives after the backfill: a lead without a customer.
    execute(crm_url, "INSERT INTO \"Lead\" (id, channel, name, updated_at) VALUES ('lead_late', 'web', 'Late', now())")
    before = catalog_state(crm_url)

    with pytest.raises(PreflightFailed) as refused:
        apply.run(session_for(7))
    assert "NO-GO" in str(refused.value) and "force=True" in str(refused.value)
    assert any("Leads with NULL customer_id" in r for r in refused.value.reasons)
    assert catalog_state(crm_url) == before

    session = session_for(7)
    with pytest.raises(MigrationFailed) as failed:
        apply.run(session, force=True)
    message = str(failed.value)
    assert "23502" in message
    assert 'column "customer_id" of relation "Lead" contains null values' in message
    assert "007_tighten_constraints/migration.sql line" in message
    assert "nothing changed" in message

    # The transaction rolled back: the foreign keys dropped by the first statements are back.
    assert catalog_state(crm_url) == before
    assert not applied(crm_url, 7)
    row = ledger_rows(crm_url)[-1]
    assert (row["batch"], row["phase"], row["status"]) == (7, "apply", "failed")
    assert "23502" in row["message"] and "contains null values" in row["message"]
    record = json.loads((session.run.path / "apply.json").read_text(encoding="utf-8"))
    assert record["status"] == "failed"
    assert record["statements"][-1]["status"] == "failed"
    assert "23502" in record["statements"][-1]["error"]


# --- the full flow -------------------------------------------------------------------------------


def test_apply_6_and_7_then_again_then_validate(session_for, crm_url):
    six = apply.run(session_for(6))
    assert six.status == "applied"
    # its backup table, created by the migration, was locked ACCESS EXCLUSIVE longest, but no application
    # could write a table that did not exist: the write block is the longest lock on a table that did
    [backup] = [h for h in six.locks_before_commit if h.relation == "_runbook_backfill_006"]
    assert backup.mode == "ACCESS EXCLUSIVE" and not backup.blocks_writes and backup.held_s > 0
    blocking = [h for h in six.locks_before_commit if h.blocks_writes]
    assert {h.relation for h in blocking} >= {"Lead", "Job"}
    assert six.longest_write_block_s == max([h.held_s for h in blocking] + [six.longest_queue_wait_s])
    # each table's hold counts from when the mode shown was taken (the UPDATE's ROW EXCLUSIVE), not from an
    # ACCESS SHARE an earlier statement took on it: Lead's and Job's differ by the time between their UPDATEs
    taken = {
        t: next(r.started_offset_s for r in six.statements if f"ROW EXCLUSIVE on {t}" in r.locks)
        for t in ("Lead", "Job")
    }
    held = {h.relation: h for h in six.locks_before_commit if h.relation in taken and h.mode == "ROW EXCLUSIVE"}
    assert abs((held["Lead"].held_s - held["Job"].held_s) - (taken["Job"] - taken["Lead"])) < 2e-6
    counts_before = {t: len(rows) for t, rows in table_rows(crm_url).items()}

    result = apply.run(session_for(7))

    assert result.status == "applied"
    assert result.succeeded and result.attempts == 1
    # statement 0: runbook locks "Job" before "Lead" (the application's order: no deadlock with an INSERT),
    # and "Customer" ACCESS EXCLUSIVE as the DROP CONSTRAINT of its foreign keys will (sql.linked_locks)
    assert [s.index for s in result.statements] == [0, 1, 2, 3, 4, 5, 6]
    assert result.statements[0].sql == (
        'LOCK TABLE "Job" IN ACCESS EXCLUSIVE MODE; '
        'LOCK TABLE "Lead" IN ACCESS EXCLUSIVE MODE; '
        'LOCK TABLE "Customer" IN ACCESS EXCLUSIVE MODE'
    )
    # what the parser expected of the first DROP CONSTRAINT is what the server took: no lock grew mid-statement
    first = result.statements[1]
    assert "ACCESS EXCLUSIVE on Customer" in first.expected_locks
    assert all(s.status == "ok" and s.duration_s >= 0 for s in result.statements)
    assert any(s.duration_s > 0 for s in result.statements)
    changes = {(c.table, c.object): c for c in result.changes}
    for table in ("Lead", "Job"):
        column = changes[(table, 'column "customer_id"')]
        assert column.before == '"customer_id" text' and column.after == '"customer_id" text NOT NULL'
        fk = changes[(table, f'constraint "{table}_customer_id_fkey"')]
        assert "ON DELETE SET NULL" in fk.before and "ON DELETE RESTRICT" in fk.after
    assert result.before.table("Lead").column("customer_id").nullable
    assert not result.after.table("Lead").column("customer_id").nullable
    held = {(h.relation, h.mode) for h in result.locks_before_commit}
    assert ("Lead", "ACCESS EXCLUSIVE") in held and ("Job", "ACCESS EXCLUSIVE") in held
    lead_lock = next(h for h in result.locks_before_commit if (h.relation, h.mode) == ("Lead", "ACCESS EXCLUSIVE"))
    assert lead_lock.blocks_writes and lead_lock.held_s > 0
    assert result.longest_write_block_s >= lead_lock.held_s
    # What the database now enforces.
    with pytest.raises(psycopg.errors.NotNullViolation):
        execute(crm_url, "INSERT INTO \"Lead\" (id, channel, name, updated_at) VALUES ('x', 'web', 'X', now())")
    assert applied(crm_url, 7)

    again = apply.run(session_for(7))
    assert again.status == "already applied"
    assert again.statements == [] and "nothing to do" in again.message
    assert ledger_rows(crm_url)[-1]["status"] == "no-op"

    ledger_before = ledger_rows(crm_url)
    session = session_for(7)
    validation = validate.run(session)

    assert validation.ok, validation.headline
    names = {t.name for t in validation.tests}
    assert {
        "Lead.customer_id is NOT NULL in the schema",
        "UPDATE of Job.customer_id to NULL rejected",
        "Job.customer_id references Customer ON DELETE RESTRICT",
        "Delete of a Customer referenced by Lead rejected",
        "Reject Lead without customer_id",  # from validation.sql
        "Allow Job with customer_id",
    } <= names
    assert validation.derived > 0  # X/Y counts the declared tests and the ones derived from migration.sql
    assert validation.headline == (
        f"{validation.total}/{validation.total} tests passed (100%; "
        f"{validation.total - validation.derived} declared, {validation.derived} derived)"
    )
    assert validation.leftover_rows == 0
    assert {t: len(rows) for t, rows in table_rows(crm_url).items()} == counts_before
    assert scalar(crm_url, "SELECT count(*) FROM \"Lead\" WHERE id LIKE 'lead_validation_%'") == 0
    ledger_after = ledger_rows(crm_url)
    assert ledger_after[:-1] == ledger_before
    assert (ledger_after[-1]["phase"], ledger_after[-1]["status"]) == ("validate", "succeeded")
    validation.raise_for_failures()  # does not raise
    assert (session.run.path / "validate.json").exists()


def test_validation_fails_for_real_when_the_constraint_is_gone(session_for, crm_url):
    apply.run(session_for(6))
    apply.run(session_for(7))
    execute(crm_url, 'ALTER TABLE "Job" ALTER COLUMN customer_id DROP NOT NULL')

    result = validate.run(session_for(7))

    assert not result.ok
    failed = {t.name for t in result.tests if not t.passed and not t.derived}
    # Exactly what the missing constraint breaks: no Lead test, no data test; the derived tests of the same
    # behaviours are merged into the declared ones (one behaviour, one test), and failed with them
    assert {t.name for t in result.tests if not t.passed and t.derived} == set()
    [schema_test] = [t for t in result.tests if t.name == "Job.customer_id is NOT NULL in the schema"]
    assert schema_test.also_from == ("migration.sql line 18",)
    assert [(h.name, h.outcome) for h in schema_test.also] == [
        ("Job.customer_id is NOT NULL (derived: migration.sql line 18)", "failed")
    ]
    assert failed == {
        "Job.customer_id is NOT NULL in the schema",
        "UPDATE of Job.customer_id to NULL rejected",
        "Reject Job without customer_id",
    }
    with pytest.raises(ValidationFailed) as info:
        result.raise_for_failures()
    message = str(info.value)
    assert message.startswith(f"Validation of batch 7: {result.total - 3}/{result.total} tests passed")
    assert "'Job.customer_id is NOT NULL in the schema' expected NOT NULL, got nullable" in message
    assert "'Reject Job without customer_id' expected error 23502" in message
    assert ledger_rows(crm_url)[-1]["status"] == "failed"
    # The UPDATE-to-NULL test did go through, and was rolled back.
    assert scalar(crm_url, 'SELECT count(*) FROM "Job" WHERE customer_id IS NULL') == 0


def test_validate_refuses_a_batch_that_is_not_applied(session_for, crm_url):
    with pytest.raises(NotApplied, match=r"Batch 7 is not applied .* apply it first"):
        validate.run(session_for(7))


# --- drift ---------------------------------------------------------------------------------------


def test_changed_migration_after_apply_is_drift(session_for, crm_url, tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(config.example_migrations_dir(), migrations)
    apply.run(session_for(6, migrations))
    applied_checksum = apply.run(session_for(7, migrations)).batch.checksum
    target = migrations / "007_tighten_constraints" / "migration.sql"
    target.write_text(target.read_text(encoding="utf-8") + "\n-- an afterthought\n", encoding="utf-8")
    session = session_for(7, migrations)
    now_checksum = session.batch.checksum
    assert now_checksum != applied_checksum
    before = catalog_state(crm_url)

    with pytest.raises(DriftError) as info:
        apply.run(session)
    assert applied_checksum in str(info.value) and now_checksum in str(info.value)
    assert catalog_state(crm_url) == before

    result = preflight.evaluate(session, lint=False)
    assert result.verdict.status == preflight.NOGO
    assert result.ledger.drift
    assert result.ledger.applied_checksum == applied_checksum
    assert any(
        f"migration.sql changed since batch 7 was applied (applied {applied_checksum[:12]}, now {now_checksum[:12]})"
        in r
        for r in result.verdict.reasons
    )


# --- dry run -------------------------------------------------------------------------------------


def test_dry_run_executes_measures_and_rolls_back(session_for, crm_url):
    apply.run(session_for(6))
    before = catalog_state(crm_url)

    result = apply.run(session_for(7), dry_run=True)

    assert result.status == "dry run" and result.dry_run
    assert len([s for s in result.statements if s.index]) == 6 and all(s.status == "ok" for s in result.statements)
    # The rehearsal saw the change it then threw away.
    changes = {(c.table, c.object): c for c in result.changes}
    assert changes[("Lead", 'column "customer_id"')].after == '"customer_id" text NOT NULL'
    assert catalog_state(crm_url) == before
    assert not applied(crm_url, 7)
    row = ledger_rows(crm_url)[-1]
    assert (row["phase"], row["status"], row["dry_run"]) == ("apply", "succeeded", True)
    # A real apply afterwards still runs.
    assert apply.run(session_for(7)).status == "applied"


# --- rollback ------------------------------------------------------------------------------------


def test_rollback_of_a_batch_never_applied_is_refused(session_for, crm_url):
    before_catalog, before_rows = catalog_state(crm_url), table_rows(crm_url)

    with pytest.raises(NotApplied, match=r"Batch 7 is not applied .* nothing to roll back"):
        rollback.run(session_for(7))

    assert catalog_state(crm_url) == before_catalog
    assert table_rows(crm_url) == before_rows


def test_apply_then_rollback_both_restores_every_row_and_the_catalog(session_for, crm_url):
    start_catalog, start_rows = catalog_state(crm_url), table_rows(crm_url)

    apply.run(session_for(6))
    apply.run(session_for(7))
    assert table_rows(crm_url) != start_rows  # the backfill did change data

    undone = rollback.run(session_for(7))
    assert undone.status == "rolled back"
    assert undone.verification and all(v.passed for v in undone.verification)
    assert not applied(crm_url, 7) and applied(crm_url, 6)
    assert rollback.run(session_for(6)).status == "rolled back"

    assert catalog_state(crm_url) == start_catalog
    assert table_rows(crm_url) == start_rows
    assert scalar(crm_url, "SELECT to_regclass('\"_runbook_backfill_006\"')") is None
    assert not applied(crm_url, 6)


# --- the migration lock --------------------------------------------------------------------------


def test_apply_while_another_session_holds_the_migration_lock(session_for, crm_url):
    session = session_for(6)
    before = catalog_state(crm_url)
    with psycopg.connect(crm_url, application_name="other-runbook", autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (migration_lock.ADVISORY_KEY,))
        pid = other.info.backend_pid

        with pytest.raises(LockBusy) as info:
            apply.run(session)
        message = str(info.value)
        assert f"pid {pid}" in message and "other-runbook" in message
        with pytest.raises(LockBusy):
            rollback.run(session)

    assert catalog_state(crm_url) == before
    # Once the other session is gone the lock is free again.
    assert apply.run(session).status == "applied"


# --- connections and secrets ---------------------------------------------------------------------


PW = "s3cret"  # a made-up password: the input of the redaction tests


def secret_url(template: str) -> str:
    """The URL with PW as alice's password: after `alice` in a URL's authority, or in place of `{pw}`.

    No URL with a password is written out in the source.
    """
    return template.replace("//alice@", "//alice:" + PW + "@", 1).format(pw=PW)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (secret_url("postgresql://alice@db.example.com:5433/crm"), "postgresql://alice:***@db.example.com:5433/crm"),
        ("postgresql://alice@db.example.com/crm", "postgresql://alice@db.example.com/crm"),
        (
            secret_url("postgres://alice@db.example.com/crm?sslmode=require"),
            "postgresql://alice:***@db.example.com/crm?sslmode=require",
        ),
        (
            secret_url("postgresql://db.example.com/crm?user=alice&password={pw}"),
            "postgresql://alice:***@db.example.com/crm",
        ),
        (
            secret_url("host=db.example.com user=alice password={pw} dbname=crm"),
            "postgresql://alice:***@db.example.com/crm",
        ),
    ],
)
def test_redact_hides_the_password(url, shown):
    assert database.redact(url) == shown
    assert PW not in database.redact(url)


def test_redact_of_a_socket_url_keeps_the_socket():
    assert (
        database.redact(secret_url("postgresql://alice@/crm?host=/tmp/pg"))
        == "postgresql://alice:***@/crm?host=/tmp/pg"
    )


def test_an_unparseable_url_shows_none_of_it():
    url = secret_url("postgresql://alice@db.example.com/crm?nosuchoption=1")
    assert database.redact(url) == "<unparseable database URL>"
    with pytest.raises(DatabaseError) as info:
        database.connect(url)
    assert PW not in str(info.value)
    assert "The database URL is not valid" in str(info.value)


def _with_password(url: str, **changes: str) -> str:
    return conninfo.make_conninfo(url, password="s3cret-pw", **changes)


def test_connect_to_a_missing_database_is_one_sentence_without_the_password(server_url):
    url = _with_password(server_url, dbname="no_such_database_here")
    with pytest.raises(DatabaseError) as info:
        database.connect(url)
    message = str(info.value)
    assert "s3cret-pw" not in message
    assert "\n" not in message
    assert message.startswith("Cannot connect to postgresql://")
    assert "no_such_database_here" in message and "does not exist" in message
    assert "create the database 'no_such_database_here' or fix its name in the URL" in message


def test_connect_to_an_unreachable_port_is_one_sentence_without_the_password(server_url):
    url = _with_password(server_url, host="127.0.0.1", port="1")
    with pytest.raises(DatabaseError) as info:
        database.connect(url)
    message = str(info.value)
    assert "s3cret-pw" not in message
    assert "\n" not in message
    assert "127.0.0.1:1" in message
    assert "check the host and port, and that the server is running" in message


def test_session_shows_no_password(crm_url, tmp_path):
    url = _with_password(crm_url)
    session = open_session(6, database_url=url, reports_dir=tmp_path, migrations_dir=config.example_migrations_dir())
    assert "s3cret-pw" not in repr(session)
    assert "s3cret-pw" not in session.frame().to_string()
    assert "s3cret-pw" not in session.facts.url
    # Nor does anything a phase writes.
    apply.run(session)
    written = [f.read_text(encoding="utf-8") for f in session.run.path.iterdir()]
    assert written and not any("s3cret-pw" in text for text in written)
    assert ":***@" in session.facts.url
