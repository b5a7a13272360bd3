"""The squawk wrapper: findings mapped to statements, and graceful behaviour without squawk."""

from __future__ import annotations

import json
import subprocess

import pytest

from runbook_lib.sql import lint as lint_module
from runbook_lib.sql.lint import INSTALL_HINT, LintResult, lint
from runbook_lib.sql.parse import split_statements

BATCH_7 = """-- AlterTable
ALTER TABLE "Lead" ALTER COLUMN "customer_id" SET NOT NULL;

-- AlterTable
ALTER TABLE "Job" ALTER COLUMN "customer_id" SET NOT NULL;

-- AddForeignKey
ALTER TABLE "Lead" ADD CONSTRAINT "Lead_customer_id_fkey"
    FOREIGN KEY ("customer_id") REFERENCES "Customer"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
"""

needs_squawk = pytest.mark.skipif(lint_module.find_squawk() is None, reason="squawk-cli is not installed")


@needs_squawk
def test_batch_7_findings_map_to_their_statements():
    result = lint(BATCH_7, server_major=16)
    assert result.available
    assert result.version and result.version[0].isdigit()
    rules = {(f.statement_index, f.rule) for f in result.findings}
    assert (1, "adding-not-nullable-field") in rules
    assert (2, "adding-not-nullable-field") in rules
    assert (3, "adding-foreign-key-constraint") in rules
    assert (3, "constraint-missing-not-valid") in rules
    not_null = next(f for f in result.findings if f.statement_index == 1)
    assert not_null.line == 2
    assert not_null.column == 47  # 1-based: "SET NOT NULL" starts at column 47
    assert not_null.level == "warning"
    assert not_null.message and not_null.help
    fk = next(f for f in result.findings if f.rule == "adding-foreign-key-constraint")
    assert fk.line in (8, 9)  # the statement spans lines 8-9
    assert result.for_statement(3) == tuple(f for f in result.findings if f.statement_index == 3)


@needs_squawk
def test_timeout_rules_are_ignored_by_default_and_kept_on_request():
    default = lint(BATCH_7)
    assert not {f.rule for f in default.findings} & set(lint_module.RUNBOOK_SETS_TIMEOUTS)
    assert "require-lock-timeout" in default.note
    everything = lint(BATCH_7, ignore_rules=())
    assert "require-lock-timeout" in {f.rule for f in everything.findings}


@needs_squawk
def test_given_statements_and_non_ascii_columns():
    sql = "SELECT 'héllo';\n/* ééé */ ALTER TABLE t ALTER COLUMN a SET NOT NULL;\n"
    result = lint(sql, statements=split_statements(sql))
    finding = next(f for f in result.findings if f.rule == "adding-not-nullable-field")
    assert finding.statement_index == 2
    assert finding.line == 2
    # squawk counts bytes; the finding is reported in characters
    assert sql.splitlines()[1][finding.column - 1 :].startswith("SET NOT NULL")


@needs_squawk
def test_clean_sql_has_no_findings():
    result = lint("SELECT 1;\n")
    assert result.available
    assert result.findings == ()
    assert "0 findings" in result.note


def test_missing_squawk_is_reported_not_raised(monkeypatch):
    monkeypatch.setattr(lint_module, "find_squawk", lambda: None)
    result = lint(BATCH_7)
    assert result == LintResult(available=False, version=None, findings=(), note=INSTALL_HINT)
    assert "pip install squawk-cli" in result.note


def test_squawk_that_cannot_start_is_reported(monkeypatch, tmp_path):
    missing = tmp_path / "squawk"
    monkeypatch.setattr(lint_module, "find_squawk", lambda: str(missing))
    result = lint(BATCH_7)
    assert not result.available
    assert "could not be started" in result.note


def _fake_run(returncode: int, stdout: str, stderr: str = ""):
    def run(command, **kwargs):
        if "--version" in command:
            return subprocess.CompletedProcess(command, 0, "squawk 9.9.9\n", "")
        return subprocess.CompletedProcess(command, returncode, stdout, stderr)

    return run


def test_squawk_crash_is_reported(monkeypatch):
    monkeypatch.setattr(lint_module, "find_squawk", lambda: "/fake/squawk-crash")
    monkeypatch.setattr(lint_module.subprocess, "run", _fake_run(101, "", "thread 'main' panicked at parser\n"))
    result = lint(BATCH_7)
    assert not result.available
    assert result.version == "9.9.9"
    assert "exit status 101" in result.note and "panicked" in result.note


def test_findings_exit_status_is_not_a_failure(monkeypatch):
    finding = {
        "file": "migration.sql",
        "line": 1,
        "column": 46,
        "level": "Warning",
        "message": "Setting a column `NOT NULL` blocks reads while the table is scanned.",
        "help": None,
        "rule_name": "adding-not-nullable-field",
    }
    monkeypatch.setattr(lint_module, "find_squawk", lambda: "/fake/squawk-findings")
    monkeypatch.setattr(lint_module.subprocess, "run", _fake_run(1, json.dumps([finding])))
    result = lint(BATCH_7, server_major=17)
    assert result.available
    (only,) = result.findings
    assert (only.statement_index, only.line, only.column, only.help) == (1, 2, 47, "")
    assert "PostgreSQL 17" in result.note


def test_command_line(monkeypatch):
    seen = {}

    def run(command, **kwargs):
        seen.setdefault("commands", []).append(command)
        seen["input"] = kwargs.get("input")
        return subprocess.CompletedProcess(command, 0, "[]" if "--version" not in command else "squawk 2.70.0", "")

    monkeypatch.setattr(lint_module, "find_squawk", lambda: "/fake/squawk-cmdline")
    monkeypatch.setattr(lint_module.subprocess, "run", run)
    lint("SELECT 1;", server_major=15, assume_in_transaction=False)
    command = seen["commands"][-1]
    assert command[0] == "/fake/squawk-cmdline"
    assert "--pg-version=15.0" in command
    assert "--reporter" in command and "json" in command
    assert "--assume-in-transaction" not in command
    assert seen["input"] == "SELECT 1;"
