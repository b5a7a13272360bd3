"""A run that fails still leaves its report: status, the phase and cell where it stopped, the server's message."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from runbook_lib import cli

# Runs Jupyter kernels: notebook and report machinery, the same on any server (see pyproject's markers).
pytestmark = pytest.mark.kernel


def _run(*args: str) -> int:
    return cli.main(list(args))


def _applied(url: str, batch: int) -> bool:
    from runbook_lib.db import ledger

    with psycopg.connect(url) as conn:
        return ledger.state(conn, batch).applied


def test_failed_apply_still_renders_a_failed_summary(crm_url: str, migrations: Path, tmp_path: Path, capsys) -> None:
    sql = migrations / "007_tighten_constraints" / "migration.sql"
    sql.write_text(sql.read_text() + '\nALTER TABLE "Job" ALTER COLUMN "no_such_column" SET NOT NULL;\n')
    reports = tmp_path / "reports"
    common = ["--database-url", crm_url, "--migrations-dir", str(migrations), "--reports-dir", str(reports)]
    assert _run("run", "6", *common) == 0
    capsys.readouterr()
    assert _run("run", "7", *common) == 1
    err = capsys.readouterr().err
    assert "apply failed" in err and "MigrationFailed" in err and "no_such_column" in err
    run_dir = next(reports.glob("*/7/*"))
    summary = (run_dir / "summary.md").read_text()
    assert "# Batch 7 Migration Summary: FAILED" in summary
    assert "| Stopped at | apply, cell" in summary and "apply.ipynb" in summary
    assert 'column "no_such_column"' in summary  # the server's message
    record = json.loads((run_dir / "run.json").read_text())
    assert [(p["phase"], p["ok"]) for p in record["phases"]] == [
        ("preflight", True),
        ("apply", False),
        ("summary", True),
    ]
    index = (run_dir / "index.html").read_text()
    assert "FAILED in cell" in index and 'href="apply.html"' in index
    assert not _applied(crm_url, 7)


def test_rollback_on_failure_rolls_back_when_validation_fails(
    crm_url: str, migrations: Path, tmp_path: Path, capsys
) -> None:
    extra = migrations / "007_tighten_constraints" / "validation.sql"
    previous = extra.read_text() if extra.exists() else ""
    extra.write_text(previous + "\n-- name: A test that fails on purpose\n-- expect: 42\nSELECT 41;\n")
    reports = tmp_path / "reports"
    common = ["--database-url", crm_url, "--migrations-dir", str(migrations), "--reports-dir", str(reports)]
    assert _run("run", "6", *common) == 0
    assert _run("run", "7", "--rollback-on-failure", *common) == 1
    err = capsys.readouterr().err
    assert "rolled back (--rollback-on-failure)" in err and "A test that fails on purpose" in err
    run_dir = next(reports.glob("*/7/*"))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["rolled_back"] is True
    assert [p["phase"] for p in record["phases"]] == ["preflight", "apply", "validate", "rollback", "summary"]
    summary = (run_dir / "summary.md").read_text()
    assert (
        "Migration Summary: ROLLED BACK" in summary and "| A test that fails on purpose | declared | FAIL |" in summary
    )
    assert not _applied(crm_url, 7)
    with psycopg.connect(crm_url) as conn:
        assert (
            conn.execute(
                "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'Lead'"
                " AND column_name = 'customer_id'"
            ).fetchone()[0]
            == "YES"
        )


def test_force_goes_on_after_no_go_and_the_summary_says_so(crm_url: str, tmp_path: Path, capsys) -> None:
    reports = tmp_path / "reports"
    assert _run("run", "6", "--database-url", crm_url, "--reports-dir", str(reports)) == 0
    with psycopg.connect(crm_url) as conn:
        conn.execute('UPDATE "Lead" SET customer_id = NULL WHERE id = (SELECT min(id) FROM "Lead")')
    capsys.readouterr()
    # NO-GO (a NULL customer_id); --force applies anyway, and the server refuses it.
    code = _run("run", "7", "--force", "--database-url", crm_url, "--reports-dir", str(reports))
    assert code == 1
    err = capsys.readouterr().err
    assert "apply failed" in err and "23502" in err
    run_dir = next(reports.glob("*/7/*"))
    summary = (run_dir / "summary.md").read_text()
    assert "**Verdict**: NO-GO" in summary and "Migration Summary: FAILED" in summary
