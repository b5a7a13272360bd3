"""The `runbook` command end to end, in process (runbook_lib.cli.main, what the console script calls).

One module-scoped journey runs `run 6`, `run 7`, `status`, `rollback 7`, `rollback 6` once on a copy
of the example, connecting as a role whose password is in the URL; the tests read what it left.
"""

from __future__ import annotations

import dataclasses
import html
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psycopg
import pytest
from incli import Cli, cli
from psycopg import conninfo, sql

from runbook_lib import config
from runbook_lib.cli import main
from runbook_lib.db import catalog, ledger
from runbook_lib.db import connection as database

# Runs Jupyter kernels: notebook and report machinery, the same on any server (see pyproject's markers).
pytestmark = pytest.mark.kernel

TABLES = ["Customer", "Lead", "Job"]
PASSWORD = "s3cr3t-pw"
BAD_URL = conninfo.make_conninfo(host="127.0.0.1", port="1", dbname="x", user="nobody", password="secret")


# --- helpers -------------------------------------------------------------------------------------


def db_state(url: str) -> tuple:
    """Every row of the three tables (sorted) and their catalog (columns, constraints, indexes, counts)."""
    with psycopg.connect(url) as conn:
        rows = {
            t: sorted(conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(t))).fetchall()) for t in TABLES
        }
        snap = catalog.snapshot(conn, TABLES)
    return rows, tuple(dataclasses.replace(t, bytes=0) for t in snap.tables)


def applied(url: str) -> dict[int, bool]:
    with psycopg.connect(url) as conn:
        return {n: s.applied for n, s in ledger.states(conn).items()}


def scalar(url: str, query: str, params: tuple = ()):
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


def rejected_sqlstate(url: str, statement: str) -> str | None:
    """The SQLSTATE the server answers `statement` with (None: accepted); always rolled back."""
    with psycopg.connect(url) as conn:
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            return exc.sqlstate
        finally:
            conn.rollback()
    return None


def is_one_sentence(line: str) -> bool:
    """One line, ending in a full stop, with no second sentence in it."""
    line = line.strip()
    return "\n" not in line and line.endswith(".") and not re.search(r"[.!?]\s+[A-Z]", line[:-1])


NULL_LEAD = "INSERT INTO \"Lead\" (id, channel, name, updated_at) VALUES ('lead_cli_probe', 'web', 'Probe', now())"
DELETE_REFERENCED_CUSTOMER = (
    'DELETE FROM "Customer" WHERE id = (SELECT customer_id FROM "Lead" WHERE customer_id IS NOT NULL LIMIT 1)'
)


# --- the journey: run 6, run 7, status, rollback 7, rollback 6 ------------------------------------


@dataclass
class Journey:
    url: str  # with the role's password
    plain_url: str
    role: str
    reports: Path
    start: tuple
    run6: Cli
    run7: Cli
    after_apply: tuple
    null_lead_after_apply: str | None
    delete_after_apply: str | None
    status: Cli
    rollback7: Cli
    rollback6: Cli
    end: tuple
    status_after: Cli
    ledger_rows: list[dict]
    backup_table_after: object


@pytest.fixture(scope="module")
def journey(server_url: str, crm_template: str, tmp_path_factory: pytest.TempPathFactory):
    suffix = uuid.uuid4().hex[:8]
    role, name = f"runbook_pw_{suffix}", f"t_cli_{suffix}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(sql.Identifier(role), sql.Literal(PASSWORD))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(crm_template))
        )
    plain = database.with_database(server_url, name)
    url = conninfo.make_conninfo(server_url, user=role, password=PASSWORD, dbname=name)
    reports = tmp_path_factory.mktemp("cli") / "reports"
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("DATABASE_URL", raising=False)
            mp.setenv("RUNBOOK_REPORTS_DIR", str(reports / "default"))
            common = (
                "--database-url",
                url,
                "--reports-dir",
                reports,
                "--migrations-dir",
                str(config.example_migrations_dir()),
            )
            start = db_state(plain)
            run6 = cli("run", 6, *common)
            run7 = cli("run", 7, *common)
            after_apply = db_state(plain)
            null_lead = rejected_sqlstate(plain, NULL_LEAD)
            delete = rejected_sqlstate(plain, DELETE_REFERENCED_CUSTOMER)
            status = cli("status", "--database-url", url, "--migrations-dir", str(config.example_migrations_dir()))
            rollback7 = cli("rollback", 7, *common)
            rollback6 = cli("rollback", 6, *common)
            end = db_state(plain)
            status_after = cli(
                "status", "--database-url", url, "--migrations-dir", str(config.example_migrations_dir())
            )
            with psycopg.connect(plain) as conn:
                cur = conn.execute("SELECT * FROM runbook.phase_run ORDER BY id")
                names = [c.name for c in cur.description]
                ledger_rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            backup = scalar(plain, "SELECT to_regclass('\"_runbook_backfill_006\"')")
        yield Journey(
            url,
            plain,
            role,
            reports,
            start,
            run6,
            run7,
            after_apply,
            null_lead,
            delete,
            status,
            rollback7,
            rollback6,
            end,
            status_after,
            ledger_rows,
            backup,
        )
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.parametrize("which, batch", [("run6", 6), ("run7", 7)])
def test_run_prints_the_summary_and_fills_the_run_folder(journey: Journey, which: str, batch: int) -> None:
    result: Cli = getattr(journey, which)
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    assert re.search(r"^summary: \S+summary\.html$", result.out, re.M), result.out
    run_dir = result.run_dir
    # reports/<database>/<batch>/<run-id>/
    assert run_dir.parent == journey.reports / database.database_name(journey.url) / str(batch)
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{4}", run_dir.name)
    assert f"run folder: {run_dir}" in result.out
    files = {p.name for p in run_dir.iterdir()}
    for phase in ("preflight", "apply", "validate"):
        assert {f"{phase}.ipynb", f"{phase}.json", f"{phase}.html"} <= files, files
    assert {"summary.ipynb", "summary.html", "summary.md"} <= files, files
    # the audit copies show the code that ran; summary.html is the report, code hidden
    assert "open_session" in (run_dir / "apply.html").read_text(encoding="utf-8")
    html = (run_dir / "summary.html").read_text(encoding="utf-8")
    assert "load_for_notebook" not in html and "open_session" not in html
    assert f"# Batch {batch} Migration Summary: COMPLETED" in (run_dir / "summary.md").read_text(encoding="utf-8")
    # nothing went to the default reports folder
    assert not (journey.reports / "default").exists()


def test_after_both_runs_the_database_enforces_batch_7(journey: Journey) -> None:
    _start_rows, start_catalog = journey.start
    _, after_catalog = journey.after_apply
    lead_before = next(t for t in start_catalog if t.name == "Lead").column("customer_id")
    lead_after = next(t for t in after_catalog if t.name == "Lead").column("customer_id")
    assert lead_before.nullable and not lead_after.nullable
    assert journey.null_lead_after_apply == "23502"  # not_null_violation
    assert journey.delete_after_apply in ("23001", "23503")  # restrict (PG 18) / foreign key (before)


def test_status_lists_both_batches_applied_with_when_and_by_whom(journey: Journey) -> None:
    assert journey.status.code == 0, journey.status.err
    out = journey.status.out
    assert database.redact(journey.url) in out and PASSWORD not in out
    finished = {
        r["batch"]: r["finished_at"]
        for r in journey.ledger_rows
        if r["phase"] == "apply" and r["status"] == "succeeded"
    }
    for number, name in ((6, "006_backfill_customers"), (7, "007_tighten_constraints")):
        match = re.search(rf"^\s+{number}\s+{name}\s+applied (\S+) by (\S+)", out, re.M)
        assert match, out
        when, who = match.groups()
        assert when == finished[number].isoformat(timespec="seconds")
        assert who == journey.role  # the database user the run connected as
    assert "not applied" not in out


def test_rollback_7_then_6_returns_the_database_to_its_starting_state(journey: Journey) -> None:
    for result in (journey.rollback7, journey.rollback6):
        assert result.code == 0, result.err
        assert re.search(r"^run folder: \S+", result.out, re.M), result.out
    start_rows, start_catalog = journey.start
    end_rows, end_catalog = journey.end
    assert end_catalog == start_catalog
    for table in TABLES:
        assert end_rows[table] == start_rows[table], f"{table} rows differ after rollback"
    assert journey.after_apply[0]["Customer"] != start_rows["Customer"]  # the comparison can tell
    assert journey.backup_table_after is None
    assert re.search(r"^\s+6\s+006_backfill_customers\s+not applied$", journey.status_after.out, re.M)
    assert re.search(r"^\s+7\s+007_tighten_constraints\s+not applied$", journey.status_after.out, re.M)


def test_no_password_in_any_file_output_or_ledger_row(journey: Journey) -> None:
    files = [p for p in journey.reports.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    # both runs and both rollbacks: executed notebooks, records, audit copies, summaries
    assert {"preflight.ipynb", "apply.json", "validate.html", "summary.md", "rollback.ipynb", "rollback.json"} <= names
    assert len(files) >= 2 * 12 + 2 * 3
    for path in files:
        assert PASSWORD.encode() not in path.read_bytes(), f"password in {path}"
    for result in (journey.run6, journey.run7, journey.status, journey.rollback7, journey.rollback6):
        assert PASSWORD not in result.out + result.err
    assert journey.ledger_rows and PASSWORD not in repr(journey.ledger_rows)
    redacted = database.redact(journey.url)
    assert f"{journey.role}:***@" in redacted
    md = (journey.run7.run_dir / "summary.md").read_text(encoding="utf-8")
    assert f"| URL | {html.escape(redacted, quote=False)} |" in md


# --- failures: one readable block, a summary anyway, the database unchanged -----------------------


def test_run_7_before_6_is_no_go_with_a_summary_and_changes_nothing(
    crm_url: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    start = db_state(crm_url)

    code = main(
        [
            "run",
            "7",
            "--database-url",
            crm_url,
            "--reports-dir",
            str(tmp_path),
            "--migrations-dir",
            str(config.example_migrations_dir()),
        ]
    )
    out, err = capfd.readouterr()  # file descriptors: the kernels' output too

    assert code != 0
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    head = lines.index("runbook: preflight failed")
    notebook_line, error_line = lines[head + 1], lines[head + 2]
    where = re.fullmatch(r"  notebook: (\S+preflight\.ipynb) \(cell (\d+)\)", notebook_line)
    assert where, notebook_line
    failed_cell = nbformat.read(where.group(1), as_version=4).cells[int(where.group(2))]
    assert "result.raise_for_verdict(" in failed_cell.source  # the cell named is the one that failed
    assert error_line.startswith("  PreflightFailed: Preflight of batch 7 says NO-GO")
    assert "batch 6, which this batch depends on, is not applied" in error_line
    assert re.search(r"gate 'Leads with NULL customer_id' expected 0, got [1-9]\d*", error_line)
    # the summary is rendered even though preflight failed, and says NO-GO
    summary_html = Path(re.search(r"^summary: (\S+)$", out, re.M).group(1))
    run_dir = summary_html.parent
    assert {p.name for p in run_dir.iterdir()} >= {
        "preflight.ipynb",
        "preflight.json",
        "preflight.html",
        "summary.html",
        "summary.md",
    }
    assert not (run_dir / "apply.ipynb").exists()
    md = (run_dir / "summary.md").read_text(encoding="utf-8")
    assert "# Batch 7 Migration Summary: NO-GO" in md
    assert "| Status | NO-GO |" in md
    assert re.search(r"\| Leads with NULL customer_id \| 0 \| [1-9]\d* \| FAIL \|", md)
    assert "NO-GO" in summary_html.read_text(encoding="utf-8")
    # nothing applied, nothing changed
    assert db_state(crm_url) == start
    assert not any(applied(crm_url).values())

    # apply after that NO-GO: refused, still nothing changed
    code = main(
        [
            "apply",
            "7",
            "--database-url",
            crm_url,
            "--reports-dir",
            str(tmp_path),
            "--migrations-dir",
            str(config.example_migrations_dir()),
        ]
    )
    out, err = capfd.readouterr()
    assert code != 0 and "Traceback" not in err
    assert "runbook: apply failed" in err
    assert re.search(
        r"^  DependencyError: Batch 7 depends on batch 6, which is not applied on \S+; "
        r"apply batch 6 first\.$",
        err,
        re.M,
    ), err
    assert db_state(crm_url) == start
    assert not any(applied(crm_url).values())


def test_apply_refused_while_preflight_says_no_go(
    crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dependencies met (batch 6 applied), but a lead without customer appeared since: apply refuses."""
    from runbook_lib.execution.session import open_session
    from runbook_lib.phases import apply

    monkeypatch.delenv("DATABASE_URL", raising=False)
    apply.run(
        open_session(
            6, database_url=crm_url, reports_dir=tmp_path / "setup", migrations_dir=config.example_migrations_dir()
        )
    )
    with psycopg.connect(crm_url) as conn:
        conn.execute(NULL_LEAD)
    start = db_state(crm_url)

    code = main(
        [
            "apply",
            "7",
            "--database-url",
            crm_url,
            "--reports-dir",
            str(tmp_path / "reports"),
            "--migrations-dir",
            str(config.example_migrations_dir()),
        ]
    )
    _out, err = capsys.readouterr()

    assert code != 0
    error = next(line for line in err.splitlines() if line.startswith("  PreflightFailed: "))
    assert "Apply of batch 7 refused, preflight says NO-GO" in error
    assert "gate 'Leads with NULL customer_id' expected 0, got 1" in error
    assert "--force" in error
    assert db_state(crm_url) == start
    assert applied(crm_url) == {6: True}
    assert rejected_sqlstate(crm_url, NULL_LEAD.replace("lead_cli_probe", "lead_cli_probe_2")) is None


def test_rollback_of_a_batch_never_applied_is_refused(
    crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = db_state(crm_url)

    code = main(
        [
            "rollback",
            "7",
            "--database-url",
            crm_url,
            "--reports-dir",
            str(tmp_path),
            "--migrations-dir",
            str(config.example_migrations_dir()),
        ]
    )
    _out, err = capsys.readouterr()

    assert code != 0 and "Traceback" not in err
    error = next(line for line in err.splitlines() if line.startswith("  NotApplied: "))
    sentence = error.removeprefix("  NotApplied: ")
    assert sentence.startswith("Batch 7 is not applied on ")
    assert is_one_sentence(sentence), sentence
    assert db_state(crm_url) == start
    assert applied(crm_url) == {}


# --- bad input: one sentence, nothing written ------------------------------------------------------


def test_unknown_batch_lists_the_known_ones_and_writes_nothing(
    crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            "9",
            "--database-url",
            crm_url,
            "--reports-dir",
            str(tmp_path / "reports"),
            "--migrations-dir",
            str(config.example_migrations_dir()),
        ]
    )
    out, err = capsys.readouterr()

    assert code != 0
    assert out == ""
    assert err.startswith("runbook: Batch 9 is not in ") and "(batches there: 6, 7)" in err
    assert is_one_sentence(err.removeprefix("runbook: ")), err
    assert scalar(crm_url, "SELECT to_regnamespace('runbook')") is None
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(
    "broken, line",
    [
        ('batch = 7\ntitle = "Require a customer\ntype = "Schema constraint tightening"\n', 2),
        (
            'batch = 7\ntitle = "t"\ndepends_on = [6]\n\n[checks]\nforeign_keys = [\n'
            '  { column = "Lead.customer_id", references = "Customer.id", on_delete = "explode" },\n]\n',
            7,
        ),  # the line of the bad value
    ],
    ids=["toml-syntax", "bad-on-delete"],
)
def test_malformed_batch_toml_names_file_and_line(
    crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], broken: str, line: int
) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(config.example_migrations_dir(), migrations)
    manifest = migrations / "007_tighten_constraints" / "batch.toml"
    manifest.write_text(broken, encoding="utf-8")

    code = main(
        [
            "run",
            "7",
            "--database-url",
            crm_url,
            "--migrations-dir",
            str(migrations),
            "--reports-dir",
            str(tmp_path / "reports"),
        ]
    )
    _out, err = capsys.readouterr()

    assert code != 0 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert str(manifest) in err
    assert re.search(rf"\bline {line}\b", err), err
    assert scalar(crm_url, "SELECT to_regnamespace('runbook')") is None
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("argv", [["status"], ["run", "6"]], ids=["status", "run"])
def test_unreachable_database_is_one_sentence_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code = main([*argv, "--database-url", BAD_URL, "--reports-dir", str(tmp_path / "reports")])
    out, err = capsys.readouterr()

    assert code != 0
    assert "secret" not in out + err
    assert err.startswith("runbook: Cannot connect to postgresql://nobody:***@127.0.0.1:1/x")
    assert "check the host and port" in err
    assert len(err.strip().splitlines()) == 1 and err.strip().endswith(".")
    assert not (tmp_path / "reports").exists()


def test_unknown_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "6", "--no-such-option"]) == 2
    _, err = capsys.readouterr()
    assert "--no-such-option" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "command",
    [["validate", "7"], ["run", "7"], ["deploy"], ["check"], ["fleet", "run", "7", "--targets", "fleet.toml"]],
)
def test_fail_on_not_run_is_a_flag_of_every_command_that_validates(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from runbook_lib.cli import _options, build_parser

    args = build_parser().parse_args([*command, "--fail-on-not-run"])
    assert args.fail_on_not_run is True and build_parser().parse_args(command).fail_on_not_run is False
    if command[0] in ("run", "deploy") or command[:2] == ["fleet", "run"]:  # through Options to the notebook
        assert _options(args).parameters("validate") == {"fail_on_not_run": True}
    assert main([*command, "--help"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert (
        "--fail-on-not-run" in said and "could not be run" in said and "not run, neither a pass nor a failure" in said
    )


# --- the installed console script ---------------------------------------------------------------


def test_console_script_runs_status(crm_url: str) -> None:
    script = Path(sys.executable).with_name("runbook")
    assert script.is_file(), "the runbook console script is not installed in this environment"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [str(script), "status", "--database-url", crm_url, "--migrations-dir", str(config.example_migrations_dir())],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == database.redact(crm_url)
    assert re.search(r"^\s+6\s+006_backfill_customers\s+not applied$", done.stdout, re.M), done.stdout
    assert re.search(r"^\s+7\s+007_tighten_constraints\s+not applied$", done.stdout, re.M), done.stdout
    # reading the status never creates the ledger
    assert scalar(crm_url, "SELECT to_regnamespace('runbook')") is None
