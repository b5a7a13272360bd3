"""Preflight's verdict reasons, each produced for real against the database (issue: preflight tells the truth)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from runbook_lib import config
from runbook_lib.errors import PreflightFailed
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, preflight
from runbook_lib.sql import lockcost


@pytest.fixture
def after_6(crm_url: str, tmp_path: Path):
    """The example with batch 6 applied: batch 7's preflight is GO unless a test breaks something."""
    apply.run(
        open_session(6, database_url=crm_url, reports_dir=tmp_path, migrations_dir=config.example_migrations_dir())
    )

    def session(batch: int = 7):
        return open_session(
            batch, database_url=crm_url, reports_dir=tmp_path, migrations_dir=config.example_migrations_dir()
        )

    return session


def test_clean_batch_is_go_with_statements_lint_and_sizes(after_6) -> None:
    result = preflight.evaluate(after_6())
    assert result.verdict.status == preflight.GO, result.verdict
    kinds = [s.kind for s in result.statements]
    assert "ALTER TABLE … SET NOT NULL" in kinds and "ALTER TABLE … ADD FOREIGN KEY" in kinds
    # a foreign key locks the referenced table too
    fks = [s for s in result.statements if s.kind == "ALTER TABLE … ADD FOREIGN KEY"]
    assert [{(lock.table, lock.mode) for lock in s.locks} for s in fks] == [
        {("Lead", "SHARE ROW EXCLUSIVE"), ("Customer", "SHARE ROW EXCLUSIVE")},
        {("Job", "SHARE ROW EXCLUSIVE"), ("Customer", "SHARE ROW EXCLUSIVE")},
    ]
    sizes = {t.table: t for t in result.tables}
    assert sizes["Lead"].exists and sizes["Lead"].bytes > 0
    # every scanning, write-blocking statement got a measured cost on an existing table
    assert {c.kind for c in result.lock_costs} == {"ALTER TABLE … SET NOT NULL", "ALTER TABLE … ADD FOREIGN KEY"}
    assert all(c.estimate_ms > 0 and not c.over_threshold for c in result.lock_costs)
    assert result.lint is not None
    if result.lint.available:
        assert any(f.rule for f in result.lint.findings)  # squawk flags Prisma's SET NOT NULL / FK without NOT VALID


def test_session_holding_a_lock_is_a_blocker_and_a_warn(after_6, crm_url: str) -> None:
    with psycopg.connect(crm_url, application_name="long-report") as other:
        other.execute('SELECT count(*) FROM "Lead"')  # idle in transaction, ACCESS SHARE on "Lead" held
        pid = other.info.backend_pid
        result = preflight.evaluate(after_6())
        other.rollback()
    blocker = next(b for b in result.blockers if b.pid == pid)
    assert blocker.application == "long-report" and blocker.state == "idle in transaction"
    assert 'AccessShareLock on "Lead"' in blocker.locks
    assert result.verdict.status == preflight.WARN
    assert any(str(pid) in reason and "queue" in reason for reason in result.verdict.reasons)


def test_long_open_transaction_is_reported_even_without_locks_on_the_tables(after_6, crm_url: str) -> None:
    with psycopg.connect(crm_url, application_name="forgotten-tx") as other:
        other.execute("SELECT 1")  # opens a transaction, touches no table of the batch
        pid = other.info.backend_pid
        time.sleep(0.3)
        result = preflight.evaluate(after_6(), long_transaction_s=0.1)
        quiet = preflight.evaluate(after_6(), long_transaction_s=3600)
        other.rollback()
    blocker = next(b for b in result.blockers if b.pid == pid)
    assert "transaction open" in blocker.reason and blocker.locks == ""
    assert result.verdict.status == preflight.WARN
    assert all(b.pid != pid for b in quiet.blockers)


def test_lock_cost_over_threshold_warns_and_names_the_online_alternative(after_6) -> None:
    result = preflight.evaluate(after_6(), lock_threshold_ms=0.0001)
    assert result.verdict.status == preflight.WARN
    set_not_null = [r for r in result.verdict.reasons if "SET NOT NULL" in r]
    assert set_not_null and "NOT VALID" in set_not_null[0] and "would block writes to" in set_not_null[0]
    assert all(c.over_threshold for c in result.lock_costs)


def test_large_tables_are_timed_on_a_sample(after_6, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lockcost, "SAMPLE_ABOVE_BYTES", 0)
    result = preflight.evaluate(after_6())
    assert result.lock_costs and all("sample" in c.method for c in result.lock_costs)


def test_warn_passes_and_no_go_raises(after_6, crm_url: str) -> None:
    warn = preflight.evaluate(after_6(), lock_threshold_ms=0.0001)
    warn.raise_for_verdict()  # WARN does not stop the run
    with psycopg.connect(crm_url) as conn:
        conn.execute('UPDATE "Job" SET customer_id = NULL WHERE id = (SELECT min(id) FROM "Job")')
    nogo = preflight.evaluate(after_6())
    assert nogo.verdict.status == preflight.NOGO
    assert any("Jobs with NULL customer_id" in r and "got 1" in r for r in nogo.verdict.reasons)
    with pytest.raises(PreflightFailed, match="NO-GO"):
        nogo.raise_for_verdict()


def test_a_migration_that_turns_off_the_lock_timeout_is_a_warn(empty_db: str, tmp_path: Path) -> None:
    with psycopg.connect(empty_db) as conn:
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, a int)")
    folder = tmp_path / "migrations" / "001_change"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text("SET lock_timeout = 0;\nALTER TABLE item ADD COLUMN b int;\n")
    result = preflight.evaluate(
        open_session(1, database_url=empty_db, migrations_dir=tmp_path / "migrations", reports_dir=tmp_path / "r")
    )
    assert result.verdict.status == preflight.WARN
    assert any("statement 1 (line 1)" in r and "lock_timeout" in r for r in result.verdict.reasons)


def test_an_implied_gate_is_left_out_only_for_the_same_query_literals_and_all() -> None:
    """Spacing, case and needless quotes aside, the same query with the same expectation is one gate; a query
    that differs in a literal (another table named in a string) is another gate."""
    from runbook_lib.batch import blocks as sqlblocks
    from runbook_lib.batch.blocks import Expectation, SqlBlock

    zero = Expectation("value", "0")
    written = [
        SqlBlock(
            "Leads with NULL customer_id",
            'select count(*) from "Lead" where customer_id is null',
            zero,
            "preflight.sql:1",
        ),
        SqlBlock("Lead rows in the log", "SELECT count(*) FROM log WHERE tbl = 'Lead'", zero, "preflight.sql:5"),
    ]
    implied = [
        SqlBlock(
            "Lead rows with NULL customer_id",
            'SELECT count(*) FROM "Lead" WHERE "customer_id" IS NULL',
            zero,
            "batch.toml",
        ),
        SqlBlock("Job rows in the log", "SELECT count(*) FROM log WHERE tbl = 'Job'", zero, "batch.toml"),
        SqlBlock(
            "Lead rows, one expected",
            'SELECT count(*) FROM "Lead" WHERE customer_id IS NULL',
            Expectation("value", "1"),
            "batch.toml",
        ),
    ]
    kept = sqlblocks.unrepeated(implied, written)
    assert [b.name for b in kept] == ["Job rows in the log", "Lead rows, one expected"]
