"""A test that was not run (issue 32): reported as NOT RUN, with why and the server's message, in the record,
the JSON, the terminal and the summary; neither a PASS nor a FAIL, left out of X/Y, and a failure only with
--fail-on-not-run.

The not-run test is made for real: a table whose BEFORE INSERT trigger refuses a row without a label, naming
itself, before PostgreSQL's NOT NULL check is reached, so the declared test "an INSERT without label is
rejected (23502)" never gets to the constraint it is about.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest

from runbook_lib import names
from runbook_lib.batch.blocks import BlockResult
from runbook_lib.batch.model import BatchInfo
from runbook_lib.cli import main
from runbook_lib.db.connection import ConnectionFacts
from runbook_lib.errors import ValidationFailed
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, preflight, validate
from runbook_lib.report import machine, records, summary, terminal
from runbook_lib.report.records import LedgerCheck, PreflightResult, ReleasePlan, ValidationResult

GUARD = "thing_label_guard"
SAID = "thing needs a label"
SETUP = f"""
CREATE TABLE thing (id bigserial PRIMARY KEY, label text, n int);
INSERT INTO thing (label, n) SELECT 'row ' || g, g FROM generate_series(1, 20) g;
CREATE FUNCTION thing_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.label IS NULL THEN
    RAISE EXCEPTION '{SAID}' USING CONSTRAINT = '{GUARD}';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER {GUARD} BEFORE INSERT ON thing FOR EACH ROW EXECUTE FUNCTION thing_guard();
"""


def _applied(url: str, tmp_path: Path) -> Path:
    """Batch 1 (label NOT NULL, declared in batch.toml) applied on a table guarded by the trigger."""
    with psycopg.connect(url) as conn:
        conn.execute(SETUP)
    folder = tmp_path / "migrations" / "001_label"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text("ALTER TABLE thing ALTER COLUMN label SET NOT NULL;\n")
    (folder / "batch.toml").write_text('batch = 1\ntitle = "label"\n[checks]\nnot_null = ["thing.label"]\n')
    apply.run(open_session(1, database_url=url, migrations_dir=tmp_path / "migrations", reports_dir=tmp_path / "r"))
    return tmp_path / "migrations"


def _validated(url: str, migrations: Path, reports: Path, **options) -> tuple[ValidationResult, Path]:
    session = open_session(1, database_url=url, migrations_dir=migrations, reports_dir=reports)
    return validate.run(session, **options), session.run.path


def test_a_test_refused_by_a_trigger_is_not_run_and_reported_so_everywhere(empty_db: str, tmp_path: Path) -> None:
    migrations = _applied(empty_db, tmp_path)

    result, run_dir = _validated(empty_db, migrations, tmp_path / "r")

    (skipped,) = result.not_run
    assert skipped.outcome == names.NOT_RUN and skipped.status == "NOT RUN" and not skipped.passed
    assert "without label" in skipped.name.lower() or "label" in skipped.name, skipped.name
    assert f'constraint "{GUARD}"' in skipped.reason and SAID in skipped.reason, skipped.reason
    assert skipped.message == SAID and skipped.sqlstate == "P0001"
    # X/Y counts the tests that ran; the one not run is said beside it, and it is no failure
    assert result.failures == [] and result.ok
    assert result.total == len(result.tests) - 1 and result.passed == result.total > 0
    assert re.fullmatch(
        rf"{result.total}/{result.total} tests passed \(100%; \d+ declared, .*\); 1 not run", result.headline
    ), result.headline
    result.raise_for_failures()  # does not raise
    assert list(result.tests_frame()["status"]).count("NOT RUN") == 1

    # the record: outcome, observed and reason, schema 2
    data = json.loads((run_dir / "validate.json").read_text(encoding="utf-8"))
    assert data["schema_version"] == records.SCHEMA_VERSION == 2
    (recorded,) = [t for t in data["tests"] if t["name"] == skipped.name]
    assert recorded["outcome"] == "not_run" and recorded["reason"] == skipped.reason and "passed" not in recorded
    assert recorded["observed"].startswith("not run: ")
    assert {t["outcome"] for t in data["tests"]} == {"passed", "not_run"}

    # the JSON document a script reads: format 2, the record as the run folder holds it
    doc = json.loads(machine.document("validate", result.ok, **machine.run_fields(run_dir, None, None)))
    assert doc["format_version"] == machine.FORMAT_VERSION == 2 and doc["ok"] is True
    assert [t["name"] for t in doc["records"]["validate"]["tests"] if t["outcome"] == "not_run"] == [skipped.name]

    # the terminal: X/Y and "1 not run", the test named with why, no FAIL
    lines = terminal.outcome_lines(run_dir)
    assert lines[0] == f"validate: {result.headline}"
    assert f"  NOT RUN {skipped.name}: " in "\n".join(lines) and SAID in lines[1] and "FAIL" not in "\n".join(lines)

    # the summary: the test's result NOT RUN with its reason and the server's message, and a table of its own
    found = summary.load(run_dir)
    tests = found.test_summary().markdown
    assert f"**Overall**: {result.headline}" in tests
    assert "**Not run** (1)" in tests and SAID in tests and f"| {skipped.name} |" in tests
    assert re.search(rf"^\| \d+ \| {re.escape(skipped.name)} \| declared \| NOT RUN \|$", tests, re.M), tests
    results = found.validation_results().markdown
    assert "- Result: NOT RUN: " in results and f"- Server: P0001 {SAID}" in results and "FAIL" not in results
    assert found.status != "FAILED"


def test_fail_on_not_run_fails_the_validation_naming_the_test_and_the_option(empty_db: str, tmp_path: Path) -> None:
    migrations = _applied(empty_db, tmp_path)

    result, run_dir = _validated(empty_db, migrations, tmp_path / "r", fail_on_not_run=True)

    (skipped,) = result.not_run
    assert result.failures == [] and not result.ok
    with pytest.raises(ValidationFailed) as caught:
        result.raise_for_failures()
    message = str(caught.value)
    assert f"'{skipped.name}'" in message and "--fail-on-not-run" in message and SAID in message
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0, message
    assert json.loads((run_dir / "validate.json").read_text(encoding="utf-8"))["fail_on_not_run"] is True
    assert summary.load(run_dir).status == "FAILED"
    assert terminal.validation_lines(result)[0] == f"validate: {result.headline}"


@pytest.mark.kernel
def test_runbook_validate_passes_with_a_test_not_run_and_fails_with_the_flag(
    empty_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = _applied(empty_db, tmp_path)
    where = ["--database-url", empty_db, "--migrations-dir", str(migrations), "--reports-dir", str(tmp_path / "r")]

    assert main(["validate", "1", *where]) == 0
    out, _ = capsys.readouterr()
    assert re.search(r"^validate: (\d+)/\1 tests passed .*; 1 not run$", out, re.M), out
    assert re.search(rf"^  NOT RUN .*label.*: .*{SAID}", out, re.M), out

    assert main(["validate", "1", "--fail-on-not-run", "--format", "json", *where]) == 1
    out, _err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["ok"] is False and doc["failure"]["phase"] == "validate" and doc["format_version"] == 2
    assert "--fail-on-not-run" in doc["error"] and doc["error_type"] == "ValidationFailed"
    assert [t["outcome"] for t in doc["records"]["validate"]["tests"]].count("not_run") == 1


# --- the same, from records made by hand: rendering, a release, preflight's verdict ------------------------

FACTS = ConnectionFacts("postgresql://app@db/crm", "18.0", 180000, "crm", "app", "runbook")
BATCH = BatchInfo(7, "007_tighten", "Tighten", "Schema constraint tightening", "/nowhere/007_tighten", "c" * 64)
REASON = 'the statement was refused by constraint "Lead_guard" (error P0001) before it reached the one under test'


def _test(name: str, outcome: str, **more) -> BlockResult:
    observed = {names.PASSED: "error 23502: null value", names.TEST_FAILED: "ok (1 row affected)"}.get(
        outcome, f"not run: {more.get('reason', '')}"
    )
    return BlockResult(
        name, 'INSERT INTO "Lead" DEFAULT VALUES', "error 23502", observed, outcome, source="batch.toml", **more
    )


def _result(*tests: BlockResult, **options) -> ValidationResult:
    return ValidationResult(BATCH, FACTS, "run-1", "2026-01-01T00:00:00+00:00", 0.1, list(tests), **options)


NOT_RUN_TEST = _test(
    "Reject Lead without customer_id",
    names.NOT_RUN,
    reason=f"{REASON}; the server said: no",
    sqlstate="P0001",
    message="no",
)


def test_x_of_y_counts_the_tests_that_ran() -> None:
    result = _result(_test("a", names.PASSED), _test("b", names.PASSED), NOT_RUN_TEST)
    assert (result.passed, result.total, len(result.not_run)) == (2, 2, 1)
    assert result.headline == "2/2 tests passed (100%; 2 declared, no derived tests); 1 not run" and result.ok
    failing = _result(_test("a", names.TEST_FAILED), NOT_RUN_TEST)
    assert failing.headline == "0/1 tests passed (0%; 1 declared, no derived tests); 1 not run" and not failing.ok
    with pytest.raises(ValidationFailed) as caught:
        failing.raise_for_failures()
    assert "'a' expected error 23502, got ok (1 row affected)" in str(caught.value)
    assert "Reject Lead" not in str(caught.value)  # without fail_on_not_run only failing tests are named
    only = _result(NOT_RUN_TEST)
    assert only.headline == "0/0 tests passed (none ran); 1 not run" and only.ok
    assert not _result(NOT_RUN_TEST, fail_on_not_run=True).ok


def test_a_release_totals_the_tests_not_run(tmp_path: Path) -> None:
    result = _result(_test("a", names.PASSED), NOT_RUN_TEST)
    plan = ReleasePlan([BATCH], None, "2026-01-01T00:00:00+00:00")
    release = records.ReleaseValidation(plan, [result])
    assert release.headline == "1/1 tests passed (100%) over 1 migration(s); 1 not run" and release.ok
    assert list(release.tests_frame()["not run"]) == [1]
    migration = summary.Summary(tmp_path, 7, None, None, result, None)
    shown = summary.ReleaseSummary(tmp_path, plan, [migration])
    totals = shown.test_summary().markdown
    assert "**Overall**: 1/1 tests passed (100%) over 1 migrations; 1 not run" in totals
    assert (
        "**Not run** (1)" in totals
        and "| 7 | 2 | Reject Lead without customer_id |" in totals
        and "Lead_guard" in totals
    )
    assert "Every test that ran of every applied migration passed." in shown.validation_results().markdown


def _preflight(*gates: BlockResult) -> PreflightResult:
    ledger = LedgerCheck(
        applied=False, applied_checksum=None, applied_at=None, applied_by=None, checksum="c" * 64, drift=False
    )
    return PreflightResult(BATCH, FACTS, "run-1", "2026-01-01T00:00:00+00:00", 0.1, ledger, list(gates))


def test_a_gate_not_run_makes_preflight_warn_with_its_reason() -> None:
    gate = _test("Leads with NULL customer_id", names.NOT_RUN, reason="cannot build the row: there is no table Lead")
    verdict = preflight._verdict(_preflight(_test("Other gate", names.PASSED), gate))
    assert verdict.status == names.WARN
    (reason,) = verdict.reasons
    assert "gate 'Leads with NULL customer_id' was not run (cannot build the row: there is no table Lead)" in reason
    # a failing gate is still NO-GO, with the gate not run among the reasons
    nogo = preflight._verdict(_preflight(_test("Other gate", names.TEST_FAILED), gate))
    assert nogo.status == names.NOGO and len(nogo.reasons) == 2
    assert preflight._verdict(_preflight(_test("Other gate", names.PASSED))).status == names.GO
    table = summary.Summary(Path("."), 7, _preflight(gate), None, None, None).preflight_checks().markdown
    assert (
        "| Leads with NULL customer_id | error 23502 | cannot build the row: there is no table Lead | NOT RUN |"
        in table
    )
