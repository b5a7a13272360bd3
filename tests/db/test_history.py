"""Both histories: runbook's ledger and Prisma's `_prisma_migrations`, merged; adoption, drift, failed rows,
disagreements, baseline; and finding a project's migrations (runbook.toml, prisma/migrations, migrations/)."""

from __future__ import annotations

import hashlib
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import psycopg
import pytest

from runbook_lib import batch as batch_mod
from runbook_lib import cli, commands, config, names
from runbook_lib.errors import BaselineRefused, DriftError, PrismaMigrationFailed, ProjectError
from runbook_lib.execution.session import open_session
from runbook_lib.layouts import prisma
from runbook_lib.phases import apply

EXAMPLE = config.example_migrations_dir()
BATCH6 = "006_backfill_customers"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prisma_row(
    conn: psycopg.Connection, name: str, checksum: str, *, finished: bool = True, rolled_back: bool = False
) -> None:
    """A row as `prisma migrate deploy` leaves it (finished) or as a failed deploy leaves it."""
    prisma.create_table(conn)
    conn.execute(
        "INSERT INTO _prisma_migrations (id, checksum, started_at, finished_at, rolled_back_at, migration_name,"
        " applied_steps_count, logs) VALUES (gen_random_uuid()::text, %s, now(), CASE WHEN %s THEN now() END,"
        " CASE WHEN %s THEN now() END, %s, %s, %s)",
        (checksum, finished, rolled_back, name, 1 if finished else 0, None if finished else "ERROR: boom"),
    )


def status_of(url: str, migrations: Path) -> dict[int, commands.BatchStatus]:
    return {row.number: row for row in commands.status(commands.target(url), migrations)}


def run_cli(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def adopted_6(crm_url: str) -> str:
    """The example with batch 6's schema applied by hand and recorded only in Prisma's history."""
    migration = EXAMPLE / BATCH6 / "migration.sql"
    with psycopg.connect(crm_url) as conn:
        conn.execute(migration.read_text(encoding="utf-8"))
        prisma_row(conn, BATCH6, sha(migration))
    return crm_url


# --- adoption ---------------------------------------------------------------------------------------


def test_a_prisma_history_is_adopted_and_apply_goes_on_from_it(adopted_6: str, tmp_path: Path) -> None:
    before = status_of(adopted_6, EXAMPLE)
    assert before[6].applied and before[6].source == names.SOURCE_PRISMA and before[6].checksum_matches
    assert not before[7].applied and before[6].notes == ()

    result = apply.run(open_session(7, database_url=adopted_6, migrations_dir=EXAMPLE, reports_dir=tmp_path))

    assert result.status == names.APPLIED  # batch 6, its dependency, counted as applied from Prisma's history
    after = status_of(adopted_6, EXAMPLE)
    assert after[6].source == names.SOURCE_PRISMA and after[7].source == names.SOURCE_BOTH
    assert after[7].notes == () and after[7].checksum_matches
    again = apply.run(open_session(6, database_url=adopted_6, migrations_dir=EXAMPLE, reports_dir=tmp_path))
    assert again.status == names.ALREADY_APPLIED and names.SOURCE_PRISMA in again.message


def test_a_changed_migration_against_a_prisma_row_is_drift_named(
    adopted_6: str, migrations: Path, tmp_path: Path
) -> None:
    changed = migrations / BATCH6 / "migration.sql"
    changed.write_text(changed.read_text(encoding="utf-8") + "\n-- edited after it was applied\n", encoding="utf-8")

    with pytest.raises(DriftError) as refused:
        apply.run(open_session(6, database_url=adopted_6, migrations_dir=migrations, reports_dir=tmp_path))
    assert "Prisma's history recorded" in str(refused.value) and "new batch" in str(refused.value)
    assert "DRIFT" in run_cli("status", "--database-url", adopted_6, "--migrations-dir", migrations)[1]


def test_prisma_checksums_are_compared_as_prisma_compares_them(tmp_path: Path) -> None:
    script = b"CREATE TABLE t (id int);\nCREATE TABLE u (id int);\n"
    digest = hashlib.sha256(script).digest()
    assert prisma.checksum_matches(script, digest.hex())
    assert prisma.checksum_matches(script.replace(b"\n", b"\r\n"), digest.hex())  # checked out on Windows
    assert prisma.checksum_matches(script, "".join(f"{b:x}" for b in digest))  # early Prisma's hex
    assert not prisma.checksum_matches(script + b"-- more\n", digest.hex())


def test_a_failed_prisma_row_blocks_apply_with_prismas_way_out(crm_url: str, tmp_path: Path) -> None:
    with psycopg.connect(crm_url) as conn:
        prisma_row(conn, BATCH6, sha(EXAMPLE / BATCH6 / "migration.sql"), finished=False)
        nulls = conn.execute('SELECT count(*) FROM "Lead" WHERE customer_id IS NULL').fetchone()[0]

    with pytest.raises(PrismaMigrationFailed) as refused:
        apply.run(open_session(6, database_url=crm_url, migrations_dir=EXAMPLE, reports_dir=tmp_path))

    message = str(refused.value)
    assert f'prisma migrate resolve --rolled-back "{BATCH6}"' in message and "--applied" in message
    with psycopg.connect(crm_url) as conn:  # nothing ran
        assert conn.execute('SELECT count(*) FROM "Lead" WHERE customer_id IS NULL').fetchone()[0] == nulls
    code, out, _ = run_cli("status", "--database-url", crm_url, "--migrations-dir", EXAMPLE)
    assert code == 0 and "FAILED PRISMA MIGRATION" in out


def test_status_flags_where_the_histories_disagree(after_7: str) -> None:
    with psycopg.connect(after_7) as conn:  # Prisma's table appears; batch 7 rolled back there, batch 6 absent
        prisma_row(
            conn,
            "007_tighten_constraints",
            sha(EXAMPLE / "007_tighten_constraints" / "migration.sql"),
            rolled_back=True,
        )

    rows = status_of(after_7, EXAMPLE)

    assert rows[6].applied and rows[6].source == names.SOURCE_RUNBOOK
    assert rows[6].notes == ("runbook's ledger says applied, Prisma's history has no finished row for it",)
    assert rows[7].notes == ("runbook's ledger says applied, Prisma's history has it rolled back",)
    code, out, _ = run_cli("status", "--database-url", after_7, "--migrations-dir", EXAMPLE)
    assert code == 0 and out.count("DISAGREE:") == 2 and "[runbook's ledger]" in out


def test_different_checksums_in_the_two_histories_are_flagged(after_7: str) -> None:
    with psycopg.connect(after_7) as conn:
        prisma_row(conn, BATCH6, "0" * 64)
    row = status_of(after_7, EXAMPLE)[6]
    assert row.source == names.SOURCE_BOTH and any(n.startswith("checksums differ") for n in row.notes)
    assert "Prisma's history recorded 000000000000" in row.drift


# --- Prisma's layout ----------------------------------------------------------------------------------


def prisma_project(root: Path) -> Path:
    """Two migrations as `prisma migrate dev` writes them, and a folder of TypeScript data migrations."""
    migrations = root / "prisma" / "migrations"
    for name, sql in (
        ("20240101000000_init", 'CREATE TABLE "Item" ("id" TEXT PRIMARY KEY);\n'),
        ("20240201000000_add_name", 'ALTER TABLE "Item" ADD COLUMN "name" TEXT;\n'),
    ):
        (migrations / name).mkdir(parents=True)
        (migrations / name / "migration.sql").write_text(sql, encoding="utf-8")
    (migrations / "20240115000000_data_backfill").mkdir()
    (migrations / "20240115000000_data_backfill" / "index.ts").write_text("export {};\n", encoding="utf-8")
    (migrations / "migration_lock.toml").write_text('provider = "postgresql"\n', encoding="utf-8")
    return migrations


def test_apply_of_a_prisma_project_creates_prismas_table_as_prisma_writes_it(empty_db: str, tmp_path: Path) -> None:
    migrations = prisma_project(tmp_path)
    result = apply.run(open_session(1, database_url=empty_db, migrations_dir=migrations, reports_dir=tmp_path / "r"))

    assert result.prisma.action == "applied"
    with psycopg.connect(empty_db) as conn:
        columns = conn.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_name = '_prisma_migrations' ORDER BY ordinal_position"
        ).fetchall()
        row = conn.execute(
            "SELECT migration_name, checksum, logs, applied_steps_count, finished_at IS NOT NULL,"
            " rolled_back_at FROM _prisma_migrations"
        ).fetchone()
    assert [c[0] for c in columns] == [
        "id",
        "checksum",
        "finished_at",
        "migration_name",
        "logs",
        "rolled_back_at",
        "started_at",
        "applied_steps_count",
    ]
    assert row == (
        "20240101000000_init",
        sha(migrations / "20240101000000_init" / "migration.sql"),
        None,
        1,
        True,
        None,
    )
    assert status_of(empty_db, migrations)[1].source == names.SOURCE_BOTH


def test_a_batch_toml_project_never_gets_prismas_table(after_7: str) -> None:
    with psycopg.connect(after_7) as conn:
        assert conn.execute("SELECT to_regclass('_prisma_migrations')").fetchone()[0] is None


def test_folders_without_migration_sql_are_listed_not_hidden(empty_db: str, tmp_path: Path) -> None:
    migrations = prisma_project(tmp_path)
    found = batch_mod.scan(migrations)
    assert [b.name for b in found.batches] == ["20240101000000_init", "20240201000000_add_name"]
    assert [b.number for b in found.batches] == [1, 2]
    assert "20240115000000_data_backfill" in found.note and "no migration.sql" in found.note
    code, out, _ = run_cli("status", "--database-url", empty_db, "--migrations-dir", migrations)
    assert code == 0 and "note: skipped 1 folder(s)" in out and "20240115000000_data_backfill" in out


def test_prisma_folders_are_in_byte_order_of_their_names(tmp_path: Path) -> None:
    """As `LC_ALL=C sort` and Prisma order them; by the leading number the 8-digit stamp would come first."""
    for name in ("20250101120000_a", "20250625_add_pivot_table_charttype", "20250701000000_c", "20240101000000_z"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "migration.sql").write_text("SELECT 1;\n", encoding="utf-8")
    names_in_order = [b.name for b in batch_mod.discover(tmp_path)]
    assert names_in_order == [
        "20240101000000_z",
        "20250101120000_a",
        "20250625_add_pivot_table_charttype",
        "20250701000000_c",
    ]


# --- baseline ------------------------------------------------------------------------------------------


def schema_by_hand(url: str, migrations: Path) -> None:
    with psycopg.connect(url) as conn:
        for b in batch_mod.discover(migrations):
            conn.execute(b.migration_sql)


def histories(url: str) -> tuple[list[tuple], list[tuple]]:
    with psycopg.connect(url) as conn:
        ledger_rows = (
            conn.execute(
                "SELECT batch, batch_name, phase, status, checksum, message FROM runbook.phase_run ORDER BY batch"
            ).fetchall()
            if conn.execute("SELECT to_regclass('runbook.phase_run')").fetchone()[0]
            else []
        )
        prisma_rows = (
            conn.execute(
                "SELECT migration_name, checksum, applied_steps_count, finished_at IS NOT NULL FROM _prisma_migrations"
                " ORDER BY migration_name"
            ).fetchall()
            if prisma.has_table(conn)
            else []
        )
    return ledger_rows, prisma_rows


def test_baseline_records_both_histories_after_showing_the_plan(empty_db: str, tmp_path: Path) -> None:
    migrations = prisma_project(tmp_path)
    schema_by_hand(empty_db, migrations)
    shown: list[commands.BaselinePlan] = []

    outcome = commands.baseline(
        commands.target(empty_db), 2, migrations_dir=migrations, confirm=lambda plan: shown.append(plan) or True
    )

    assert outcome.recorded and [b.number for b in shown[0].batches] == [1, 2]
    assert len(shown[0].lines()) == 2 and "_prisma_migrations" in shown[0].lines()[0]
    ledger_rows, prisma_rows = histories(empty_db)
    checksums = {b.name: b.checksum for b in batch_mod.discover(migrations)}
    assert ledger_rows == [
        (n, name, "apply", "succeeded", checksums[name], names.BASELINED) for n, name in enumerate(checksums, start=1)
    ]
    assert prisma_rows == [(name, checksums[name], 0, True) for name in sorted(checksums)]  # as resolve --applied
    assert {r.source for r in status_of(empty_db, migrations).values()} == {names.SOURCE_BOTH}
    again = apply.run(open_session(2, database_url=empty_db, migrations_dir=migrations, reports_dir=tmp_path / "r"))
    assert again.status == names.ALREADY_APPLIED


def test_baseline_is_one_transaction(empty_db: str, tmp_path: Path) -> None:
    migrations = prisma_project(tmp_path)
    schema_by_hand(empty_db, migrations)
    with psycopg.connect(empty_db) as conn:  # Prisma's table refuses the second row: nothing may stay recorded
        prisma.create_table(conn)
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.migration_name"
            " LIKE '20240201%' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$"
        )
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON _prisma_migrations FOR EACH ROW EXECUTE FUNCTION refuse()")

    with pytest.raises(psycopg.Error):
        commands.baseline(commands.target(empty_db), 2, migrations_dir=migrations)

    assert histories(empty_db) == ([], [])


def test_baseline_refuses_drift_and_later_history(empty_db: str, tmp_path: Path) -> None:
    migrations = prisma_project(tmp_path)
    tgt = commands.target(empty_db)
    with psycopg.connect(empty_db) as conn:
        prisma_row(conn, "20240101000000_init", "f" * 64)
    with pytest.raises(BaselineRefused, match=r"already applied with another migration\.sql"):
        commands.baseline(tgt, 2, migrations_dir=migrations)
    with psycopg.connect(empty_db) as conn:
        conn.execute("DELETE FROM _prisma_migrations")
        prisma_row(conn, "20240201000000_add_name", sha(migrations / "20240201000000_add_name" / "migration.sql"))
    with pytest.raises(BaselineRefused, match="history beyond batch 1"):
        commands.baseline(tgt, 1, migrations_dir=migrations)
    ledger_rows, prisma_rows = histories(empty_db)
    assert ledger_rows == [] and [r[0] for r in prisma_rows] == ["20240201000000_add_name"]


def test_baseline_on_the_command_line_needs_yes_without_a_terminal(
    empty_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrations = prisma_project(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal

    code, out, err = run_cli("baseline", 2, "--database-url", empty_db, "--migrations-dir", migrations)

    assert code == 1 and "20240101000000_init" in out and "20240201000000_add_name" in out  # shown first
    assert "--yes" in err and len(err.strip().splitlines()) == 1
    assert histories(empty_db) == ([], [])
    code, out, _ = run_cli("baseline", 2, "--yes", "--database-url", empty_db, "--migrations-dir", migrations)
    assert code == 0 and len(histories(empty_db)[0]) == 2


# --- a project's migrations, found from where runbook runs ---------------------------------------------


def test_runbook_toml_names_the_migrations_from_a_subdirectory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "db" / "changes").mkdir(parents=True)
    (tmp_path / "migrations").mkdir()  # runbook.toml wins over the convention in the same directory
    (tmp_path / "runbook.toml").write_text('migrations_dir = "db/changes"\n', encoding="utf-8")
    (tmp_path / "src" / "deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "src" / "deep")
    assert config.migrations_dir() == (tmp_path / "db" / "changes").resolve()


def test_prisma_migrations_are_found_from_a_subdirectory(
    empty_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrations = prisma_project(tmp_path)
    (tmp_path / "app" / "src").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "app" / "src")
    assert config.migrations_dir() == migrations
    code, out, _ = run_cli("status", "--database-url", empty_db)
    assert code == 0 and "20240101000000_init" in out and "20240201000000_add_name" in out


def test_runbook_toml_refuses_an_unknown_key_with_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "runbook.toml").write_text('migrations_dir = "m"\nmigration_dir = "typo"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProjectError) as refused:
        config.migrations_dir()
    assert f"{tmp_path / 'runbook.toml'} line 2" in str(refused.value) and "'migration_dir'" in str(refused.value)


def test_without_a_migrations_folder_commands_refuse_naming_both_ways_out(
    empty_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    if config.find_migrations_dir() is not None:
        pytest.skip("a migrations folder above the temporary directory")
    code, out, err = run_cli("status", "--database-url", empty_db)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "--migrations-dir" in err and "runbook.toml" in err


def test_recording_applied_over_a_failed_prisma_row_marks_it_rolled_back_as_resolve_does(empty_db: str) -> None:
    """`prisma migrate resolve --applied` on a failed attempt: the attempt is marked rolled back and a finished
    row added; recording again adds nothing (one statement does all three)."""
    with psycopg.connect(empty_db) as conn:
        record = prisma.record_applied(conn, "20240101000000_a", "c" * 64, create=True)
        assert (record.action, record.rows) == ("applied", 1)
        conn.execute(
            "INSERT INTO _prisma_migrations (id, checksum, started_at, migration_name, applied_steps_count)"
            " VALUES ('f', %s, now(), '20240102000000_b', 0)",
            ("d" * 64,),
        )
        assert prisma.record_applied(conn, "20240102000000_b", "d" * 64, ran=False).action == "applied"
        again = prisma.record_applied(conn, "20240102000000_b", "d" * 64)
        assert (again.action, again.rows) == ("already recorded", 1)
        rows = conn.execute(
            "SELECT migration_name, finished_at IS NOT NULL, rolled_back_at IS NOT NULL, applied_steps_count"
            " FROM _prisma_migrations ORDER BY migration_name, finished_at NULLS FIRST"
        ).fetchall()
    assert rows == [
        ("20240101000000_a", True, False, 1),
        ("20240102000000_b", False, True, 0),  # the failed attempt, rolled back
        ("20240102000000_b", True, False, 0),  # recorded as resolve --applied records it: no steps ran
    ]
