"""Bad input: one clear sentence naming the problem and the fix, a non-zero exit, and no change to the database."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from runbook_lib import cli, config
from runbook_lib.db import catalog
from runbook_lib.errors import PhaseFailed
from runbook_lib.notebook import runner

TABLES = ["Customer", "Lead", "Job"]


def state(url: str) -> tuple:
    """Catalog of the example tables, their row counts, and whether a ledger exists (with its rows)."""
    with psycopg.connect(url) as conn:
        snap = tuple(dataclasses.replace(t, bytes=0) for t in catalog.snapshot(conn, TABLES).tables)
        has_ledger = conn.execute("SELECT to_regclass('runbook.phase_run') IS NOT NULL").fetchone()[0]
        ledger_rows = conn.execute("SELECT count(*) FROM runbook.phase_run").fetchone()[0] if has_ledger else None
    return snap, has_ledger, ledger_rows


def refused(capsys, args: list[str], url: str, expected_code: int | None = None) -> str:
    """Run the CLI, check it refused with one line and changed nothing; return that line."""
    before = state(url)
    code = cli.main(args)
    out, err = capsys.readouterr()
    assert code != 0 if expected_code is None else code == expected_code, (code, err)
    assert "Traceback" not in err + out
    lines = [line for line in err.strip().splitlines() if line.strip()]
    message = lines[-1]
    assert state(url) == before, "the database changed"
    return message


def _break(migrations: Path, relative: str, text: str | None) -> None:
    path = migrations / relative
    if text is None:
        path.unlink()
    else:
        path.write_text(text)


CASES = {
    "unknown batch": (["preflight", "99"], None, r"Batch 99 is not in .*batches there: 6, 7"),
    "bad TOML": (
        ["preflight", "7"],
        ("007_tighten_constraints/batch.toml", 'batch = 7\ntitle = "x\n'),
        r"batch.toml is not valid TOML .*line 2",
    ),
    "unknown key": (
        ["preflight", "7"],
        ("007_tighten_constraints/batch.toml", "batch = 7\ndepends_on = [6]\nowner = 'x'\n"),
        r"line 3: unknown key 'owner'",
    ),
    "missing migration.sql": (
        ["preflight", "6"],
        ("007_tighten_constraints/migration.sql", None),
        r"has no migration.sql",
    ),
    "duplicate numbers": (
        ["status"],
        ("006_backfill_customers/batch.toml", "batch = 7\n"),
        r"[Bb]atch number 7 is used by both",
    ),
    "depends on a missing batch": (
        ["status"],
        ("007_tighten_constraints/batch.toml", "batch = 7\ndepends_on = [5]\n"),
        r"depends_on names batch 5",
    ),
    "dependency cycle": (["status"], ("006_backfill_customers/batch.toml", "batch = 6\ndepends_on = [7]\n"), r"cycle"),
    "bad column in checks": (
        ["preflight", "7"],
        ("007_tighten_constraints/batch.toml", 'batch = 7\n[checks]\nnot_null = ["Lead"]\n'),
        r"is not a column",
    ),
    "bad on_delete": (
        ["preflight", "7"],
        (
            "007_tighten_constraints/batch.toml",
            'batch = 7\n[checks]\nforeign_keys = [{ column = "Lead.customer_id", '
            'references = "Customer.id", on_delete = "explode" }]\n',
        ),
        r"on_delete 'explode' is not an action",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_batches_are_refused_before_anything_runs(case, crm_url, migrations, tmp_path, capsys) -> None:
    args, breakage, pattern = CASES[case]
    if breakage:
        _break(migrations, *breakage)
    message = refused(
        capsys,
        [*args, "--database-url", crm_url, "--migrations-dir", str(migrations), "--reports-dir", str(tmp_path / "r")],
        crm_url,
    )
    assert pytest.importorskip("re").search(pattern, message), message


def test_status_lists_the_batches_around_a_broken_folder(crm_url, migrations, capsys) -> None:
    """One malformed batch.toml does not hide the others from status: it is named, with why, and exit 1."""
    _break(migrations, "007_tighten_constraints/batch.toml", 'batch = 7\ntitle = "x\n')
    where = ["--database-url", crm_url, "--migrations-dir", str(migrations)]
    assert cli.main(["status", *where]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^\s+6\s+006_backfill_customers\s+not applied$", out, re.M), out
    broken = next(line for line in out.splitlines() if "BROKEN" in line)
    assert broken.startswith("  BROKEN 007_tighten_constraints: ") and "is not valid TOML" in broken
    assert cli.main(["status", *where, "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and [m["number"] for m in doc["migrations"]] == [6]
    assert [b["folder"] for b in doc["broken"]] == ["007_tighten_constraints"]
    # a phase still refuses the folder: it cannot tell what batch 7 would have been
    assert cli.main(["preflight", "6", *where]) != 0


def test_sql_syntax_error_names_file_and_line(crm_url, migrations, tmp_path, capsys) -> None:
    _break(
        migrations,
        "007_tighten_constraints/migration.sql",
        'ALTER TABLE "Lead" ALTER COLUMN customer_id SET NOT NULL;\n\nALTER TABLE "Job" ALTR COLUMN x;\n',
    )
    args = ["run", "6", "--database-url", crm_url, "--migrations-dir", str(migrations), "--reports-dir", str(tmp_path)]
    assert cli.main(args) == 0
    capsys.readouterr()
    message = refused(
        capsys,
        ["apply", "7", "--database-url", crm_url, "--migrations-dir", str(migrations), "--reports-dir", str(tmp_path)],
        crm_url,
    )
    assert "migration.sql line 3, column" in message and "syntax error" in message


def test_a_run_refused_on_sql_that_does_not_parse_still_has_its_summary(crm_url, migrations, tmp_path, capsys) -> None:
    """The shareable report says NO-GO and why, as for any other refusal (before: no preflight record, and
    the summary failed with 'holds no phase record')."""
    _break(migrations, "006_backfill_customers/migration.sql", 'ALTER TABL "Lead" ADD COLUMN x int;\n')
    message = refused(
        capsys,
        ["run", "6", "--database-url", crm_url, "--migrations-dir", str(migrations), "--reports-dir", str(tmp_path)],
        crm_url,
    )
    assert "migration.sql line 1, column 7: syntax error" in message
    [summary] = tmp_path.rglob("summary.md")
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("# Batch 6 Migration Summary: NO-GO")
    assert '- 006_backfill_customers/migration.sql line 1, column 7: syntax error at or near "TABL"' in text


@pytest.mark.parametrize("phase", ["apply", "preflight"])
def test_empty_migration_is_refused(phase, crm_url, migrations, tmp_path, capsys) -> None:
    """preflight too: a GO for a file apply refuses would be a verdict about nothing."""
    _break(migrations, "006_backfill_customers/migration.sql", "-- nothing yet\n")
    message = refused(
        capsys,
        [phase, "6", "--database-url", crm_url, "--migrations-dir", str(migrations), "--reports-dir", str(tmp_path)],
        crm_url,
    )
    assert message.endswith(
        "006_backfill_customers/migration.sql has no SQL statement; write the change in it (or remove the batch)."
    )


def test_unknown_expectation_kind_and_missing_expectation(crm_url, migrations, tmp_path, capsys) -> None:
    _break(migrations, "006_backfill_customers/preflight.sql", "-- name: typo\n-- expect: rows many\nSELECT 1;\n")
    message = refused(
        capsys,
        [
            "preflight",
            "6",
            "--database-url",
            crm_url,
            "--migrations-dir",
            str(migrations),
            "--reports-dir",
            str(tmp_path),
        ],
        crm_url,
    )
    assert "preflight.sql line 3" in message and "'rows' needs a count" in message
    _break(migrations, "006_backfill_customers/preflight.sql", "-- name: forgot\nSELECT 1;\n")
    message = refused(
        capsys,
        [
            "preflight",
            "6",
            "--database-url",
            crm_url,
            "--migrations-dir",
            str(migrations),
            "--reports-dir",
            str(tmp_path),
        ],
        crm_url,
    )
    assert "has no '-- expect:' line" in message


def test_unreachable_host_and_bad_urls(crm_url, tmp_path, capsys) -> None:
    unreachable = conninfo.make_conninfo(host="127.0.0.1", port="1", dbname="crm", user="app", password="pw-123")
    for url, words in (
        (unreachable, "check the host and port"),
        ("mysql//nonsense", "not valid"),
        (conninfo.make_conninfo(crm_url, dbname="no_such_db_here"), "create the database"),
    ):
        code = cli.main(["status", "--database-url", url, "--migrations-dir", str(config.example_migrations_dir())])
        err = capsys.readouterr().err
        assert code == 1 and words in err and "pw-123" not in err and len(err.strip().splitlines()) == 1, err


def test_wrong_password_is_one_sentence_without_the_password(server_url, crm_url, capsys) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        hba = conn.execute("SHOW hba_file").fetchone()[0]
        if not os.access(hba, os.W_OK):
            pytest.skip("cannot edit this server's pg_hba.conf to require a password")
        role = f"rb_pw_{uuid.uuid4().hex[:8]}"
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'right-one'").format(sql.Identifier(role)))
        original = Path(hba).read_text()
        Path(hba).write_text(f"local all {role} scram-sha-256\nhost all {role} all scram-sha-256\n" + original)
        conn.execute("SELECT pg_reload_conf()")
        try:
            url = conninfo.make_conninfo(crm_url, user=role, password="wrong-one")
            code = cli.main(["status", "--database-url", url, "--migrations-dir", str(config.example_migrations_dir())])
            err = capsys.readouterr().err
            assert code == 1 and "password authentication failed" in err and "check the user and password" in err
            assert "wrong-one" not in err and len(err.strip().splitlines()) == 1
        finally:
            Path(hba).write_text(original)
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_rollback_of_a_batch_never_applied(crm_url, tmp_path, capsys) -> None:
    message = refused(
        capsys,
        [
            "rollback",
            "7",
            "--database-url",
            crm_url,
            "--reports-dir",
            str(tmp_path),
            "--migrations-dir",
            str(config.example_migrations_dir()),
        ],
        crm_url,
    )
    assert "Batch 7 is not applied" in message and "nothing to roll back" in message


def test_unknown_cli_parameter_and_bad_choice(capsys) -> None:
    assert cli.main(["apply", "7", "--no-such-flag"]) == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    assert cli.main(["apply", "7", "--strategy", "reckless"]) == 2
    assert "invalid choice: 'reckless'" in capsys.readouterr().err


def test_reports_dir_not_writable(crm_url, tmp_path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    message = refused(
        capsys,
        [
            "preflight",
            "7",
            "--database-url",
            crm_url,
            "--reports-dir",
            str(blocker / "r"),
            "--migrations-dir",
            str(config.example_migrations_dir()),
        ],
        crm_url,
    )
    assert "Cannot create the run folder" in message and "--reports-dir" in message


def test_notebook_parameter_of_the_wrong_type(crm_url, tmp_path) -> None:
    with pytest.raises(PhaseFailed) as failed:
        runner.execute(
            "apply",
            tmp_path / "apply.ipynb",
            {"batch": 7, "dry_run": "yes", "migrations_dir": str(config.example_migrations_dir())},
            database_url=crm_url,
        )
    assert failed.value.ename == "BatchError" and "dry_run must be True or False" in failed.value.evalue
    with pytest.raises(PhaseFailed) as failed:
        runner.execute("preflight", tmp_path / "preflight.ipynb", {"batch": "seven"}, database_url=crm_url)
    assert "batch must be a whole number, not 'seven'" in failed.value.evalue


def test_missing_notebook(tmp_path, crm_url) -> None:
    with pytest.raises(Exception) as missing:
        runner.execute("apply", tmp_path / "out.ipynb", {"batch": 7}, database_url=crm_url, notebooks_dir=tmp_path)
    assert "notebook" in str(missing.value) and "is missing" in str(missing.value)
