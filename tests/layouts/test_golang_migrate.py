"""golang-migrate's layout: its folder read in its numeric order, and `schema_migrations` read and written as
golang-migrate v4's postgres driver does (SetVersion, Version, Lock), on the test server."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from runbook_lib.errors import BatchError
from runbook_lib.layouts import golang_migrate as gm
from runbook_lib.layouts.base import LayoutSettings, Migration

OPENMETER = Path(__file__).resolve().parent.parent / "corpora" / "openmeter" / "migrations"
DEFAULTS = LayoutSettings()


def folder(tmp_path: Path, *names: str) -> Path:
    """A migrations folder holding `names`, each file's text naming it."""
    root = tmp_path / "migrations"
    root.mkdir()
    for name in names:
        (root / name).write_text(f"-- {name}\nSELECT 1;\n", encoding="utf-8")
    return root


@pytest.fixture
def three(tmp_path: Path) -> list[Migration]:
    return gm.read(folder(tmp_path, "1_a.up.sql", "1_a.down.sql", "2_b.up.sql", "10_c.up.sql"), DEFAULTS)


def rows(conn: psycopg.Connection, table: str = "schema_migrations") -> list[tuple[int, bool]]:
    return conn.execute(f"SELECT version, dirty FROM public.{table}").fetchall()


# -- the folder -----------------------------------------------------------------------------------------------


def test_numeric_order_names_and_downs(tmp_path: Path) -> None:
    root = folder(
        tmp_path,
        "10_c.up.sql",
        "2_b.up.sql",
        "0001_create users.up.sql",
        "0001_create users.down.sql",
        "10_c.down.sql",
        "7_orphan.down.sql",
        "atlas.sum",
        "README.md",
    )
    migrations = gm.read(root, DEFAULTS)
    assert [m.version for m in migrations] == ["1", "2", "10"]
    first = migrations[0]
    assert (first.name, first.description, first.checksum) == ("0001_create users", "create users", "")
    assert first.sql == "-- 0001_create users.up.sql\nSELECT 1;\n"
    assert [m.down.name if m.down else None for m in migrations] == [
        "0001_create users.down.sql",
        None,
        "10_c.down.sql",
    ]
    assert gm.evidence(root) == 6


def test_evidence_counts_only_golang_migrate_files(tmp_path: Path) -> None:
    root = folder(tmp_path, "V1__init.sql", "0000_tag.sql", "1_a.up.sql", "README.md")
    (root / "2_nested").mkdir()
    (root / "2_nested" / "2_b.up.sql").write_text("SELECT 1;", encoding="utf-8")
    assert gm.evidence(root) == 1


def test_empty_folder_reads_nothing(tmp_path: Path) -> None:
    assert gm.read(folder(tmp_path), DEFAULTS) == []
    assert gm.evidence(tmp_path / "migrations") == 0


def test_duplicate_version_refused(tmp_path: Path) -> None:
    root = folder(tmp_path, "1_a.up.sql", "01_b.up.sql")
    with pytest.raises(BatchError) as refused:
        gm.read(root, DEFAULTS)
    assert refused.value.message == (
        f"{root / '1_a.up.sql'} has version 1, as 01_b.up.sql has, and golang-migrate refuses two up migrations "
        "of one version; give one of them a new version."
    )


def test_rollback_dir_supplies_missing_downs(tmp_path: Path) -> None:
    undo = tmp_path / "undo"
    undo.mkdir()
    (undo / "2_undo_b.sql").write_text("SELECT 2;", encoding="utf-8")
    (undo / "1.sql").write_text("SELECT 1;", encoding="utf-8")
    migrations = gm.read(
        folder(tmp_path, "1_a.up.sql", "1_a.down.sql", "2_b.up.sql"), LayoutSettings(rollback_dir=undo)
    )
    assert [m.down.name for m in migrations] == ["1_a.down.sql", "2_undo_b.sql"]  # the tool's own down first


def test_openmeter_corpus() -> None:
    migrations = gm.read(OPENMETER, DEFAULTS)
    assert len(migrations) == 269
    versions = [int(m.version) for m in migrations]
    assert versions == sorted(versions) and len(set(versions)) == 269
    assert migrations[0].name == "20240826120919_init" and migrations[0].description == "init"
    assert migrations[-1].name == "20260818090123_rate_card_feature_reference_constraints"
    assert all(m.down is not None and m.down.name == f"{m.name}.down.sql" for m in migrations)
    assert gm.evidence(OPENMETER) == 538


# -- the lock -------------------------------------------------------------------------------------------------


def test_lock_id_is_golang_migrates() -> None:
    # golang-migrate's own vectors (database/util_test.go): additional names first, then the database name
    assert gm.lock_id("database_name", "schema_name_1", "schema_name_2") == 3743845847
    # derived by hand: crc32 IEEE of "public\0schema_migrations\0mydb" is 3265315846; times the salt
    # 1486364155, modulo 2**32
    assert zlib.crc32(b"public\x00schema_migrations\x00mydb") == 3265315846
    assert (3265315846 * 1486364155) % 2**32 == 2103762914
    assert gm.lock_id("mydb", "public", "schema_migrations") == 2103762914
    assert gm.lock_id("/mydb", "public", "schema_migrations") == 616192132  # the database name `migrate` CLI uses


def test_lock_is_held_against_another_session(empty_db: str) -> None:
    history = gm.History(DEFAULTS)
    with psycopg.connect(empty_db, autocommit=True) as conn, psycopg.connect(empty_db, autocommit=True) as other:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        ids = history.lock_ids(conn)
        assert ids == (
            gm.lock_id(f"/{name}", "public", "schema_migrations"),
            gm.lock_id(name, "public", "schema_migrations"),
        )
        history.lock(conn)
        for lid in ids:
            assert other.execute("SELECT pg_try_advisory_lock(%s::bigint)", (lid,)).fetchone()[0] is False
        history.unlock(conn)
        for lid in ids:
            assert other.execute("SELECT pg_try_advisory_lock(%s::bigint)", (lid,)).fetchone()[0] is True


# -- the history table ----------------------------------------------------------------------------------------


def test_missing_table_read_creates_nothing(empty_db: str, three: list[Migration]) -> None:
    with psycopg.connect(empty_db) as conn:
        history = gm.History(DEFAULTS)
        assert history.label == "golang-migrate's schema_migrations"
        state = history.read(conn, three)
        assert (state.exists, state.applied, state.blocked, state.last) == (False, {}, "", None)
        assert history.dirty_version(conn) is None
        assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None


def test_record_applied_then_read(empty_db: str, three: list[Migration]) -> None:
    history = gm.History(DEFAULTS)
    with psycopg.connect(empty_db) as conn:
        assert history.record_applied(conn, three[0], three) == "schema_migrations at version 1"
        assert history.record_applied(conn, three[1], three) == "schema_migrations at version 2"
        conn.commit()
        assert rows(conn) == [(2, False)]
        state = history.read(conn, three)
        assert (state.exists, sorted(state.applied), state.last, state.blocked) == (True, ["1", "2"], "2", "")
        # golang-migrate's own DDL
        columns = conn.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_name = 'schema_migrations' ORDER BY ordinal_position"
        ).fetchall()
        assert columns == [("version", "bigint", "NO"), ("dirty", "boolean", "NO")]
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_index WHERE indrelid = 'schema_migrations'::regclass AND indisprimary"
            ).fetchone()[0]
            == 1
        )


def test_record_applied_does_not_commit(empty_db: str, three: list[Migration]) -> None:
    with psycopg.connect(empty_db) as conn:
        gm.History(DEFAULTS).record_applied(conn, three[2], three)
        conn.rollback()
        assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None


def test_configured_table_and_applied_by_number(make_database: Callable[..., str], three: list[Migration]) -> None:
    history = gm.History(LayoutSettings(table="Migrations Log"))
    assert history.label == "golang-migrate's Migrations Log"
    with psycopg.connect(make_database(), autocommit=True) as conn:
        history.record_applied(conn, three[2], three)
        assert rows(conn, '"Migrations Log"') == [(10, False)]
        assert sorted(history.read(conn, three).applied) == ["1", "10", "2"]  # every version up to 10


def test_dirty_row_blocks(empty_db: str, three: list[Migration]) -> None:
    history = gm.History(DEFAULTS)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert history.record_failed(conn, three[2], three) == "schema_migrations dirty at version 10"
        assert rows(conn) == [(10, True)]
        state = history.read(conn, three)
        assert state.blocked == (
            "golang-migrate's schema_migrations is dirty at version 10 (a migration failed or was stopped part "
            "way); check the database, then run `migrate force 10` if it is applied or `migrate force 2` if not."
        )
        assert state.last == "10"
        assert history.dirty_version(conn) == "10"
        history.record_applied(conn, three[2], three)
        assert history.dirty_version(conn) is None and history.read(conn, three).blocked == ""


def test_unknown_current_version_blocks(empty_db: str, three: list[Migration]) -> None:
    with psycopg.connect(empty_db, autocommit=True) as conn:
        history = gm.History(DEFAULTS)
        history.record_applied(conn, three[1], three)
        conn.execute("UPDATE schema_migrations SET version = 5")
        assert "which no migration in the folder has" in history.read(conn, three).blocked


def test_rolled_back_moves_to_previous_then_empties(empty_db: str, three: list[Migration]) -> None:
    history = gm.History(DEFAULTS)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        history.record_applied(conn, three[2], three)
        assert history.record_rolled_back(conn, three[2], three) == "schema_migrations at version 2"
        assert rows(conn) == [(2, False)]
        history.record_rolled_back(conn, three[1], three)
        assert rows(conn) == [(1, False)]
        assert history.record_rolled_back(conn, three[0], three) == "schema_migrations emptied (no migration applied)"
        assert rows(conn) == []
        state = history.read(conn, three)
        assert (state.exists, state.applied, state.last, state.blocked) == (True, {}, None, "")
