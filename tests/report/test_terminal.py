"""What a user reads when a command ends: the headline on the terminal, the JSON a script parses, the PR comment.

Through `runbook_lib.cli.main` on the example CRM, as a user types it; the headline is built from the run
folder's records, so these read stdout and compare it with what the database was made to do.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import psycopg
import pytest

from runbook_lib import config
from runbook_lib.cli import main
from runbook_lib.report import machine, records, terminal

# Runs Jupyter kernels: notebook and report machinery, the same on any server (see pyproject's markers).
pytestmark = pytest.mark.kernel

RUN_KEYS = {"format_version", "command", "ok", "run_dir", "summary_html", "summary_md", "run", "failure", "records"}


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _where(url: str, reports: Path, migrations: Path | None = None) -> list[str]:
    return [
        "--database-url",
        url,
        "--reports-dir",
        str(reports),
        "--migrations-dir",
        str(migrations or config.example_migrations_dir()),
    ]


def test_no_go_headline_names_every_reason_and_the_statements(
    crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(capsys, "preflight", "7", *_where(crm_url, tmp_path))

    assert code == 1
    assert re.search(r"^preflight: NO-GO \(batch 7 \S*tighten_constraints, ", out, re.M), out
    assert "  NO-GO: batch 6, which this batch depends on, is not applied" in out
    assert re.search(r"^  NO-GO: gate 'Leads with NULL customer_id' expected 0, got [1-9]\d*", out, re.M), out
    assert re.search(r"^  #\s+line\s+statement\s+locks\s+blocks writes\s+estimate$", out, re.M), out
    assert re.search(r"^  1\s+\d+\s+.*ACCESS EXCLUSIVE on \"?Lead", out, re.M), out
    assert "\x1b[" not in out  # no colour when stdout is not a terminal
    assert "runbook: preflight failed" in err


def test_run_headline_then_json_then_markdown(crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = _where(crm_url, tmp_path)
    count = (
        'SELECT (SELECT count(*) FROM "Customer"), (SELECT count(*) FROM "Lead" WHERE customer_id IS NULL),'
        ' (SELECT count(*) FROM "Job" WHERE customer_id IS NULL)'
    )
    with psycopg.connect(crm_url) as conn:
        customers, leads, jobs = conn.execute(count).fetchone()
    code, out, _ = _cli(capsys, "run", "6", *where)

    assert code == 0, out
    with psycopg.connect(crm_url) as conn:
        created = conn.execute(count).fetchone()[0] - customers
    # the data it changed, which the catalog's changes (a backup table) do not show
    rows = re.search(r"^  rows:\n((?:    .*\n)+)", out, re.M).group(1)
    assert f"    {created:,} inserted into Customer (statement " in rows and created > 0, rows
    assert f"    {leads:,} updated in Lead (statement " in rows and f"    {jobs:,} updated in Job (statement " in rows
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines[:4]] == [
        ["preflight", "ok"],
        ["apply", "ok"],
        ["validate", "ok"],
        ["summary", "ok"],
    ]
    assert re.search(r"^preflight: (GO|WARN) \(batch 6 \S*backfill_customers", out, re.M), out
    assert re.search(
        r"^apply: applied \(batch 6 \S*backfill_customers\): \d+ step\(s\), 1 attempt\(s\), "
        r"longest write-blocking lock [\d.]+ ms, [\d.]+ s$",
        out,
        re.M,
    ), out
    assert re.search(r"^  changed \(\d+\):$", out, re.M), out
    assert re.search(r"^validate: (\d+)/\1 tests passed", out, re.M), out
    assert re.search(r"^summary: \S+summary\.html$", out, re.M)  # the lines other tools already read
    assert re.search(r"^run folder: \S+", out, re.M)
    # on a terminal the progress has printed each phase's line already: the headline starts at what they found
    folder = Path(re.search(r"^run folder: (\S+)", out, re.M).group(1))
    assert terminal.outcome_lines(folder)[:4] == lines[:4]
    assert terminal.outcome_lines(folder, phases=False)[0].startswith("preflight: ")

    code, out, err = _cli(capsys, "preflight", "7", "--format", "json", *where)
    doc = json.loads(out)  # stdout is the one document and nothing else
    assert code == 0 and set(doc) == RUN_KEYS
    assert doc["format_version"] == machine.FORMAT_VERSION and doc["command"] == "preflight" and doc["ok"] is True
    assert doc["failure"] is None and doc["run"]["batch"] == 7
    pre = doc["records"]["preflight"]
    assert pre["verdict"]["status"] in ("GO", "WARN") and pre["statements"][0]["locks"]
    assert "preflight" in err  # progress stays on stderr

    code, out, _ = _cli(capsys, "preflight", "7", "--format", "markdown", *where)
    assert code == 0
    assert re.match(r"## \S+ runbook preflight: batch 7 \S*tighten_constraints: \*\*(GO|WARN)\*\*", out), out[:200]
    assert "### Locks per statement" in out and "| # | line | statement | locks | blocks writes | estimate |" in out
    assert "### Lint (squawk)" in out and "### Lock estimates" in out and "### Blockers" in out

    code, out, _ = _cli(capsys, "status", "--format", "json", *where[:2], "--migrations-dir", where[-1])
    doc = json.loads(out)
    assert {"format_version", "command", "ok", "database", "migrations", "note", "prisma_failed"} <= set(doc)
    assert [(m["number"], m["applied"]) for m in doc["migrations"]] == [(6, True), (7, False)]


def test_failing_validation_shows_x_of_y_and_the_server_message(
    crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = tmp_path / "migrations"
    import shutil  # only this test copies the example's folder

    shutil.copytree(config.example_migrations_dir(), migrations)
    (migrations / "006_backfill_customers" / "validation.sql").write_text(
        "-- name: Divides by zero on purpose\n-- expect: 1\nSELECT 1/0;\n"
    )
    code, out, err = _cli(capsys, "run", "6", *_where(crm_url, tmp_path / "reports", migrations))

    assert code == 1
    match = re.search(r"^validate: (\d+)/(\d+) tests passed", out, re.M)
    assert match and int(match.group(1)) == int(match.group(2)) - 1, out
    assert re.search(
        r"^  FAIL Divides by zero on purpose: expected 1, got .*\(server: division by zero\)$", out, re.M
    ), out
    assert "runbook: validate failed" in err

    code, out, _ = _cli(capsys, "validate", "6", "--format", "json", *_where(crm_url, tmp_path / "r2", migrations))
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False and doc["failure"]["phase"] == "validate"
    failing = [t for t in doc["records"]["validate"]["tests"] if t["outcome"] == "failed"]
    assert [(t["name"], t["message"]) for t in failing] == [("Divides by zero on purpose", "division by zero")]


def test_deploy_headline_counts_migrations_and_tests(
    crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(capsys, "deploy", *_where(crm_url, tmp_path))

    assert code == 0, out
    assert re.search(r"^release: migrations applied 2/2, tests (\d+)/\1 passed, preflight (GO|WARN)$", out, re.M), out
    assert re.search(r"^  0006 \S*backfill_customers\s+(GO|WARN), applied, \d+/\d+ tests$", out, re.M), out
    assert re.search(r"^  0007 \S*tighten_constraints\s+(GO|WARN), applied, \d+/\d+ tests$", out, re.M), out
    assert re.search(r"^summary: \S+summary\.html$", out, re.M)


def test_json_refusal_is_still_one_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "report", str(tmp_path / "nowhere"), "--format", "json")
    doc = json.loads(out)
    assert code != 0 and doc["ok"] is False and doc["command"] == "report"
    assert "does not exist" in doc["error"] and "does not exist" in err


def test_markdown_comment_fits_githubs_limit_with_a_note(
    crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["preflight", "7", *_where(crm_url, tmp_path)])
    capsys.readouterr()
    folder = next(tmp_path.glob("*/7/*"))
    result = records.RunFolder(folder).read("preflight", records.PreflightResult)
    long = dataclasses.replace(result, statements=result.statements * 2000)  # a migration of thousands of statements

    text = machine.preflight_markdown(long)

    assert len(text) <= machine.GITHUB_COMMENT_LIMIT
    assert text.startswith("## ") and "**NO-GO**" in text.splitlines()[0]
    assert re.search(r"_\d+ more row\(s\) left out to fit GitHub's comment size limit", text)
    assert all(f"### {s}" in text for s in ("Locks per statement", "Lint (squawk)", "Lock estimates", "Blockers"))
    assert text.rstrip().endswith("the full report is in the run folder.</sub>")


def test_progress_is_plain_lines_off_a_terminal_and_a_bar_on_one() -> None:
    import io  # only this test needs a stream to stand for stderr

    from runbook_lib.notebook.progress import PhaseProgress

    log = io.StringIO()  # not a TTY: a line per phase, as a CI log shows it
    plain = PhaseProgress(("preflight", "apply"), stream=log)
    plain.done("preflight", True, 0.4)
    plain.done("apply", False, 1.2)
    plain.close()
    assert log.getvalue().splitlines() == ["  preflight ok         0.4 s", "  apply     FAILED     1.2 s"]

    screen = io.StringIO()
    bar = PhaseProgress(("preflight", "apply"), stream=screen, bar=True)
    bar.started("apply")
    bar.done("apply", True, 1.0)
    bar.close()
    assert "runbook: apply" in screen.getvalue() and "/2 phases" in screen.getvalue()
    assert "  apply     ok         1.0 s" in screen.getvalue()


def test_demo_server_and_publish_speak_json_too(tmp_path, capsys, monkeypatch) -> None:
    """--format json on every command: the embedded server's URL, and a publish of an empty reports folder."""
    import json as json_mod

    from runbook_lib.cli import main as cli_main

    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))  # a server of its own, stopped below
    assert cli_main(["server", "url", "--format", "json"]) == 1  # not running: a refusal is one document too
    doc = json_mod.loads(capsys.readouterr().out)
    assert doc["command"] == "server" and not doc["ok"] and "`runbook server start`" in doc["error"]
    try:
        assert cli_main(["server", "start", "--format", "json"]) == 0
        doc = json_mod.loads(capsys.readouterr().out)
        assert doc["command"] == "server" and doc["ok"] and doc["url"].startswith("postgresql://postgres@/crm?")
    finally:
        assert cli_main(["server", "stop", "--format", "json"]) == 0
    assert json_mod.loads(capsys.readouterr().out)["message"] == "embedded server stopped"
    (tmp_path / "reports").mkdir()
    assert (
        cli_main(["publish", str(tmp_path / "site"), "--reports-dir", str(tmp_path / "reports"), "--format", "json"])
        == 0
    )
    doc = json_mod.loads(capsys.readouterr().out)
    assert doc["command"] == "publish" and doc["published"]["runs"] == 0


def test_apply_and_rollback_speak_json(crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The documented keys, with the apply record's figures as the run folder holds them."""
    where = _where(crm_url, tmp_path)
    code, out, err = _cli(capsys, "apply", "6", "--format", "json", *where)
    doc = json.loads(out)
    assert code == 0 and set(doc) == RUN_KEYS and doc["command"] == "apply" and doc["ok"] is True, err
    record = doc["records"]["apply"]
    assert record["status"] == "applied" and record["batch"]["number"] == 6
    assert record["attempts"] >= 1 and record["steps"] and all(s["status"] == "committed" for s in record["steps"])
    assert isinstance(record["longest_write_block_s"], float)
    assert record["changes"] and {"table", "object", "kind", "before", "after"} <= set(record["changes"][0])
    assert record == json.loads((Path(doc["run_dir"]) / "apply.json").read_text(encoding="utf-8"))
    assert "apply" in err and "{" not in err  # progress on stderr, the document alone on stdout

    code, out, err = _cli(capsys, "rollback", "6", "--format", "json", *where)
    doc = json.loads(out)
    assert code == 0 and doc["command"] == "rollback" and doc["ok"] is True, err
    assert doc["records"]["rollback"]["status"] == "rolled back"

    code, out, err = _cli(capsys, "rollback", "6", "--format", "json", *where)  # nothing left to roll back
    doc = json.loads(out)
    assert code != 0 and doc["ok"] is False and doc["command"] == "rollback"
    failure = doc["failure"]
    assert failure["phase"] == "rollback" and failure["error_name"] == "NotApplied", failure
    assert (
        failure["error_message"].startswith("Batch 6 is not applied on ")
        and "nothing to roll back" in failure["error_message"]
    )
    # the same two keys as a refusal before any phase ran: a script reads one shape of failure
    assert doc["error"] == failure["error_message"] and doc["error_type"] == "NotApplied"


def test_warn_headline_names_its_reasons(crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A WARN must not look like a GO: a session idle in transaction on "Lead" is named with its reason."""
    import psycopg  # only this test holds a session open

    from runbook_lib.execution.session import open_session
    from runbook_lib.phases import apply

    apply.run(
        open_session(
            6, database_url=crm_url, reports_dir=tmp_path / "setup", migrations_dir=config.example_migrations_dir()
        )
    )
    with psycopg.connect(crm_url, application_name="nightly-report") as blocker:
        blocker.execute('SELECT count(*) FROM "Lead"')  # idle in transaction from here on, holding ACCESS SHARE
        code, out, _ = _cli(capsys, "preflight", "7", *_where(crm_url, tmp_path))
        blocker.rollback()

    assert code == 0, out  # WARN does not fail the command
    assert re.search(r"^preflight: WARN \(batch 7 \S*tighten_constraints, ", out, re.M), out
    warns = re.findall(r"^  WARN: (.*)$", out, re.M)
    assert any("nightly-report" in w and "idle in transaction" in w for w in warns), out
    assert not re.search(r"^  NO-GO: ", out, re.M)


def test_release_headline_on_a_changed_applied_migration_is_one_no_go(tmp_path: Path) -> None:
    """release.json names migration 7 as changed since applied, with 8 still pending: the headline, read from
    the records alone, is NO-GO with the migration and the fix; nothing says GO, nor 'nothing pending'."""
    from runbook_lib.batch.model import BatchInfo
    from runbook_lib.report import terminal

    def release(drift: list[str], pending: list[BatchInfo]) -> list[str]:
        folder = records.RunFolder.create(tmp_path, "crm", "release")
        folder.write("release", records.ReleasePlan(pending, None, records.now_iso(), drift=drift))
        folder.write("run", records.RunRecord(0, folder.run_id, "crm", records.now_iso(), release=True))
        return terminal.outcome_lines(folder.path)

    changed = "migration 7 (007_tighten_constraints): runbook's ledger recorded 4844, the file is now a887"
    eight = BatchInfo(8, "008_next", "next", "schema", str(tmp_path / "008_next"), "0" * 64)
    for pending in ([], [eight]):
        lines = release([changed], pending)
        text = "\n".join(lines)
        assert re.fullmatch(
            rf"release: migrations applied 0/{len(pending)}, tests 0/0 passed, preflight NO-GO", lines[0]
        ), text
        (reason,) = [line for line in lines if line.startswith("  NO-GO: ")]
        assert reason.startswith(
            "  NO-GO: migration 7 (007_tighten_constraints): its migration.sql changed since it was applied"
        ), reason
        assert "4844" in reason and "a887" in reason and "restore the applied file" in reason
        assert "nothing pending" not in text and not re.search(r"\bGO\b", text.replace("NO-GO", "")), text

    clean = release([], [])  # nothing changed, nothing pending: that is a GO
    assert clean[0].endswith("preflight GO") and "  nothing pending: every migration is applied" in clean
