"""`runbook deploy`: every pending migration as one release, through the CLI as a user runs it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest

from runbook_lib import cli, config
from runbook_lib.db import ledger

pytestmark = pytest.mark.kernel  # runs the notebooks; what the database holds is asserted too


def deploy(capsys, url: str, migrations: Path, reports: Path, *extra: str) -> tuple[int, str, str]:
    code = cli.main(
        ["deploy", "--database-url", url, "--migrations-dir", str(migrations), "--reports-dir", str(reports), *extra]
    )
    out, err = capsys.readouterr()
    return code, out, err


def run_dir(err: str) -> Path:
    return Path(re.search(r"run folder (\S+)", err).group(1))


def applied(url: str) -> dict[int, bool]:
    with psycopg.connect(url) as conn:
        return {n: s.applied for n, s in ledger.states(conn).items()}


def prisma_folder(root: Path, sqls: list[str]) -> Path:
    """A migrations folder in Prisma's layout: <timestamp>_<name>/migration.sql, no batch.toml."""
    for i, text in enumerate(sqls, start=1):
        folder = root / f"2024010100000{i}_step_{i}"
        folder.mkdir(parents=True)
        (folder / "migration.sql").write_text(text, encoding="utf-8")
    return root


def test_the_example_deploys_as_one_release(crm_url: str, tmp_path: Path, capsys) -> None:
    code, _out, err = deploy(capsys, crm_url, config.example_migrations_dir(), tmp_path / "r")
    assert code == 0, err
    assert applied(crm_url) == {6: True, 7: True}
    folder = run_dir(err)
    assert folder.parent.name == "release"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["0006", "0007"]
    for child in ("0006", "0007"):
        assert {"preflight.json", "apply.json", "validate.json"} <= {p.name for p in (folder / child).iterdir()}
    plan = json.loads((folder / "release.json").read_text())
    assert [b["number"] for b in plan["batches"]] == [6, 7]
    run = json.loads((folder / "run.json").read_text())
    assert run["release"] is True and [p["phase"] for p in run["phases"]] == [
        "preflight",
        "apply",
        "validate",
        "summary",
    ]
    md = (folder / "summary.md").read_text(encoding="utf-8")
    assert md.startswith("# Release Migration Summary: COMPLETED")
    assert re.search(r"\| 6 \| 006_backfill_customers \| applied \| [\d.]+ s \| 1 \| [\d.]+ ms \| (\d+)/\1 \|", md), md
    assert re.search(r"\| 7 \| 007_tighten_constraints \| applied \| [\d.]+ s \| 1 \| [\d.]+ ms \| (\d+)/\1 \|", md)
    assert "2/2 migrations applied" in md and re.search(r"tests (\d+)/\1 passed", md)
    assert md.count("<details>") == 2
    # batch 7's gate (no NULL customer_id) fails before batch 6 has run: a warning in the release, not NO-GO
    pre7 = json.loads((folder / "0007" / "preflight.json").read_text())
    assert pre7["verdict"]["status"] == "WARN"
    assert any("apply checks it again right before" in r for r in pre7["verdict"]["reasons"])


def test_to_stops_after_n_and_the_same_command_resumes(crm_url: str, tmp_path: Path, capsys) -> None:
    migrations = config.example_migrations_dir()
    code, _, err = deploy(capsys, crm_url, migrations, tmp_path / "r", "--to", "6")
    assert code == 0, err
    assert applied(crm_url) == {6: True}
    code, _, err = deploy(capsys, crm_url, migrations, tmp_path / "r")
    assert code == 0, err
    assert applied(crm_url) == {6: True, 7: True}
    assert sorted(p.name for p in run_dir(err).iterdir() if p.is_dir()) == ["0007"]  # only what was pending
    code, _, err = deploy(capsys, crm_url, migrations, tmp_path / "r")
    assert code == 0, err
    md = (run_dir(err) / "summary.md").read_text(encoding="utf-8")
    assert md.startswith("# Release Migration Summary: NOTHING PENDING")


def test_the_first_failure_stops_the_release_and_a_rerun_resumes(empty_db: str, tmp_path: Path, capsys) -> None:
    migrations = prisma_folder(
        tmp_path / "m",
        [
            "CREATE TABLE item (id int PRIMARY KEY, name text);",
            "INSERT INTO item VALUES (1, 'a');\nALTER TABLE item ADD COLUMN price numeric;\n"
            "UPDATE item SET nope = 1;",  # fails: the whole migration rolls back
            "CREATE INDEX item_name_idx ON item (name);",
        ],
    )
    code, _out, err = deploy(capsys, empty_db, migrations, tmp_path / "r")
    assert code == 1
    assert "stopped at migration 2 (20240101000002_step_2); applied: 1; not applied: 2-3" in err
    assert 'column "nope" of relation "item" does not exist' in err
    assert applied(empty_db) == {1: True}
    with psycopg.connect(empty_db) as conn:  # migration 2 left nothing behind, 3 never ran
        assert conn.execute("SELECT count(*) FROM item").fetchone()[0] == 0
        assert conn.execute("SELECT to_regclass('item_name_idx')").fetchone()[0] is None
    md = (run_dir(err) / "summary.md").read_text(encoding="utf-8")
    assert md.startswith("# Release Migration Summary: FAILED")
    assert (
        re.search(r"\| 2 \| 20240101000002_step_2 \| failed \|", md)
        and "| 3 | 20240101000003_step_3 | not applied |" in md
    )

    (migrations / "20240101000002_step_2" / "migration.sql").write_text(
        "INSERT INTO item VALUES (1, 'a');\nALTER TABLE item ADD COLUMN price numeric;\nUPDATE item SET price = 1;\n",
        encoding="utf-8",
    )
    code, _out, err = deploy(capsys, empty_db, migrations, tmp_path / "r")
    assert code == 0, err
    assert applied(empty_db) == {1: True, 2: True, 3: True}
    assert sorted(p.name for p in run_dir(err).iterdir() if p.is_dir()) == ["0002", "0003"]


def test_a_no_go_first_migration_stops_the_release_before_anything_is_applied(
    crm_url: str, tmp_path: Path, capsys
) -> None:
    """Batch 7 alone is pending with NULLs still in Lead: its gate is NO-GO, and nothing is applied."""
    migrations = tmp_path / "m"
    migrations.mkdir()
    source = config.example_migrations_dir() / "007_tighten_constraints"
    (migrations / source.name).mkdir()
    for path in source.iterdir():
        (migrations / source.name / path.name).write_bytes(path.read_bytes())
    toml = migrations / source.name / "batch.toml"
    toml.write_text(toml.read_text().replace("depends_on = [6]", "depends_on = []"))
    code, _out, err = deploy(capsys, crm_url, migrations, tmp_path / "r")
    assert code == 1
    assert "Preflight of the release says NO-GO: migration 7 (007_tighten_constraints): gate" in err
    assert applied(crm_url) == {}
    run = json.loads((run_dir(err) / "run.json").read_text())
    assert [p["phase"] for p in run["phases"]] == ["preflight", "summary"]


def test_a_release_is_not_a_dry_run(crm_url: str, tmp_path: Path, capsys) -> None:
    code, _out, err = deploy(capsys, crm_url, config.example_migrations_dir(), tmp_path / "r", "--dry-run")
    assert code == 1
    assert "A release cannot be a dry run" in err
    assert applied(crm_url) == {}


def test_a_changed_applied_migration_is_one_no_go_verdict(crm_url: str, tmp_path: Path, capsys) -> None:
    """Migration 7's file changed after it was applied: the headline says NO-GO, names it and the fix, and
    neither a GO nor 'nothing pending' contradicts that."""
    import shutil  # only this test copies the example's folder

    migrations = tmp_path / "m"
    shutil.copytree(config.example_migrations_dir(), migrations)
    code, _, err = deploy(capsys, crm_url, migrations, tmp_path / "r")
    assert code == 0, err
    with open(migrations / "007_tighten_constraints" / "migration.sql", "a", encoding="utf-8") as sql_file:
        sql_file.write("-- a line added after the release\n")
    with psycopg.connect(crm_url) as conn:
        recorded = ledger.states(conn)[7].checksum

    code, out, err = deploy(capsys, crm_url, migrations, tmp_path / "r")

    assert code == 1
    headline = next(line for line in out.splitlines() if line.startswith("release: "))
    assert headline.endswith("preflight NO-GO"), out
    (reason,) = re.findall(r"^  NO-GO: (.*)$", out, re.M)
    assert "migration 7 (007_tighten_constraints)" in reason and "migration.sql" in reason and recorded in reason
    assert "restore" in reason and "new migration" in reason  # the way out
    assert "nothing pending" not in out and not re.search(r"\bGO\b", out.replace("NO-GO", "")), out
    assert applied(crm_url) == {6: True, 7: True}


def test_each_migration_is_judged_against_the_state_it_left(empty_db: str, tmp_path: Path, capsys) -> None:
    """Migration 1 indexes (owner_id, updated_at) and creates an extension it drops again; migration 2 drops owner_id,
    and the index with it, without naming it. deploy validates migration 1 as it commits, so nothing fails; a later
    `runbook validate 1` leaves the index to migration 2 and names it; an index dropped by hand still fails."""
    with psycopg.connect(empty_db) as conn:
        found = conn.execute(
            "SELECT name FROM pg_available_extensions WHERE name IN ('vector', 'citext', 'pgcrypto') ORDER BY name"
        ).fetchone()
    if found is None:
        pytest.skip("this server has none of pgvector, citext, pgcrypto")
    extension = found[0]
    migrations = prisma_folder(
        tmp_path / "migrations",
        [
            f'CREATE EXTENSION IF NOT EXISTS "{extension}";\n'
            'CREATE TABLE "Doc" ("id" TEXT NOT NULL, "owner_id" TEXT, "title" TEXT NOT NULL,'
            ' "updated_at" TIMESTAMP(3),\n    CONSTRAINT "Doc_pkey" PRIMARY KEY ("id"));\n'
            'CREATE INDEX "Doc_owner_id_updated_at_idx" ON "Doc"("owner_id", "updated_at");\n'
            'CREATE INDEX "Doc_title_idx" ON "Doc"("title");\n'
            f'DROP EXTENSION "{extension}";\n',
            'ALTER TABLE "Doc" DROP COLUMN "owner_id";\n',
        ],
    )
    code, out, err = deploy(capsys, empty_db, migrations, tmp_path / "r")
    assert code == 0, out + err
    # the release summary lists each migration's tests that did not pass (none), and where the others are
    md = (run_dir(err) / "summary.md").read_text(encoding="utf-8")
    assert re.search(r"No test failed: \d+ passed, each with its SQL in 0001/validate\.json\.", md), md[-3000:]
    first = json.loads((run_dir(err) / "0001" / "validate.json").read_text())
    index = next(t for t in first["tests"] if t["name"].startswith("Index Doc_owner_id_updated_at_idx is a valid"))
    assert index["outcome"] == "passed"  # judged right after migration 1, before migration 2 dropped its column
    assert (
        next(t for t in first["tests"] if t["name"].startswith(f"Extension {extension} is not installed"))["outcome"]
        == "passed"
    )

    code = cli.main(
        [
            "validate",
            "1",
            "--database-url",
            empty_db,
            "--migrations-dir",
            str(migrations),
            "--reports-dir",
            str(tmp_path / "r"),
            "--format",
            "json",
        ]
    )
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    validation = document["records"]["validate"]
    assert not [t for t in validation["tests"] if t["name"].startswith("Index Doc_owner_id_updated_at_idx")]
    assert any(
        "index Doc_owner_id_updated_at_idx: changed again by migration 2 (20240101000002_step_2) line 1" in n
        for n in validation["derived_notes"]
    )

    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute('DROP INDEX "Doc_title_idx"')
    code = cli.main(
        [
            "validate",
            "1",
            "--database-url",
            empty_db,
            "--migrations-dir",
            str(migrations),
            "--reports-dir",
            str(tmp_path / "r"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert "Index Doc_title_idx is a valid index on Doc (title)" in out + err
