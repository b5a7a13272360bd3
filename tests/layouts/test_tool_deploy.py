"""`runbook deploy` on a small Flyway project, as Flyway runs it: a repeatable script again only when its checksum
changed, a script that mixes transactional and non-transactional statements refused, the undo script with its
placeholders as the rollback; and golang-migrate's down script as the rollback, its single row moved back."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import psycopg
import pytest

from runbook_lib import cli

pytestmark = pytest.mark.kernel  # runbook's reading of the tools' histories: the same on any server, run once


def _run(*args: str) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = cli.main([*args])
    return code, err.getvalue() + out.getvalue()


def _rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_flyway_repeatables_run_again_when_changed_and_a_mixed_script_is_refused(empty_db: str, tmp_path: Path) -> None:
    folder = tmp_path / "sql"
    folder.mkdir()
    (folder / "V1__create.sql").write_text("CREATE TABLE item (id int PRIMARY KEY, price int);\n")
    (folder / "R__view.sql").write_text("CREATE OR REPLACE VIEW cheap AS SELECT id FROM item WHERE price < 10;\n")
    where = ["--database-url", empty_db, "--migrations-dir", str(folder), "--reports-dir", str(tmp_path / "r")]
    code, said = _run("deploy", *where)
    assert code == 0, said
    history = "SELECT installed_rank, version, script, success FROM flyway_schema_history ORDER BY installed_rank"
    assert _rows(empty_db, history) == [(1, "1", "V1__create.sql", True), (2, None, "R__view.sql", True)]
    code, said = _run("deploy", *where)
    assert code == 0 and "nothing pending" in said  # unchanged: Flyway runs it once
    (folder / "R__view.sql").write_text("CREATE OR REPLACE VIEW cheap AS SELECT id FROM item WHERE price < 20;\n")
    code, said = _run("deploy", *where)
    assert code == 0, said
    assert _rows(empty_db, history)[-1] == (3, None, "R__view.sql", True)  # changed: run again, a row more
    assert "price < 20" in _rows(empty_db, "SELECT pg_get_viewdef('cheap')")[0][0]

    (folder / "V2__index.sql").write_text(
        "ALTER TABLE item ADD COLUMN name text;\nCREATE INDEX CONCURRENTLY item_name ON item (name);\n"
    )
    code, said = _run("deploy", *where)
    assert code == 1
    assert "V2__index.sql mixes statements that run in a transaction with one that cannot" in said
    assert _rows(
        empty_db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'item' AND column_name = 'name'"
    ) == [(0,)]


def test_golang_migrate_down_script_rolls_back_and_moves_its_row(empty_db: str, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    for v, table in ((1, "a"), (2, "b")):
        (folder / f"{v}_{table}.up.sql").write_text(f"CREATE TABLE {table} (id int);\n")
        (folder / f"{v}_{table}.down.sql").write_text(f"DROP TABLE {table};\n")
    where = ["--database-url", empty_db, "--migrations-dir", str(folder), "--reports-dir", str(tmp_path / "r")]
    code, said = _run("deploy", *where)
    assert code == 0, said
    assert _rows(empty_db, "SELECT version, dirty FROM schema_migrations") == [(2, False)]
    code, said = _run("rollback", "2", *where)
    assert code == 0, said
    assert _rows(empty_db, "SELECT version, dirty FROM schema_migrations") == [(1, False)]
    assert _rows(empty_db, "SELECT to_regclass('b')") == [(None,)]


def test_a_migration_added_behind_the_history_is_refused_unless_out_of_order(empty_db: str, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    for v, table in ((1, "a"), (3, "c")):
        (folder / f"{v}_{table}.up.sql").write_text(f"CREATE TABLE {table} (id int);\n")
    where = ["--database-url", empty_db, "--migrations-dir", str(folder), "--reports-dir", str(tmp_path / "r")]
    assert _run("deploy", *where)[0] == 0
    (folder / "2_b.up.sql").write_text("CREATE TABLE b (id int);\n")  # merged from a branch, behind version 3
    code, said = _run("deploy", *where)
    assert code == 1
    assert (
        "Migration 2 (2_b) is not applied, but migration 3 (3_c), which comes after it, is: it was added out of "
        "order; apply it anyway with --out-of-order"
    ) in said
    assert _rows(empty_db, "SELECT to_regclass('b')") == [(None,)]
    code, said = _run("deploy", "--out-of-order", *where)
    assert code == 0, said
    assert _rows(empty_db, "SELECT to_regclass('b') IS NOT NULL") == [(True,)]
    # golang-migrate's single row still says the highest version: its own runner sees nothing pending
    assert _rows(empty_db, "SELECT version, dirty FROM schema_migrations") == [(3, False)]


def test_baseline_records_a_tools_history_without_running_it(empty_db: str, tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "V1__a.sql").write_text("CREATE TABLE a (id int);\n")
    (folder / "V2__b.sql").write_text("CREATE TABLE b (id int);\n")
    (folder / "V3__c.sql").write_text("CREATE TABLE c (id int);\n")
    with psycopg.connect(empty_db) as conn:  # the schema is there already (a dump, another tool)
        conn.execute("CREATE TABLE a (id int); CREATE TABLE b (id int)")
    where = ["--database-url", empty_db, "--migrations-dir", str(folder)]
    code, said = _run("baseline", "2", "--yes", *where)
    assert code == 0, said
    assert _rows(empty_db, "SELECT version, type, success FROM flyway_schema_history ORDER BY installed_rank") == [
        ("1", "SQL", True),
        ("2", "SQL", True),
    ]
    code, said = _run("deploy", *where, "--reports-dir", str(tmp_path / "r"))
    assert code == 0, said
    assert _rows(empty_db, "SELECT version FROM flyway_schema_history ORDER BY installed_rank") == [
        ("1",),
        ("2",),
        ("3",),
    ]


def test_a_changed_drizzle_file_is_drift_and_the_release_refuses_to_build_on_it(empty_db: str, tmp_path: Path) -> None:
    import json

    folder = tmp_path / "drizzle"
    (folder / "meta").mkdir(parents=True)
    tags = ["0000_a", "0001_b"]
    for n, tag in enumerate(tags):
        (folder / f"{tag}.sql").write_text(
            f"CREATE TABLE t{n} (id int);\n--> statement-breakpoint\nCREATE INDEX t{n}_id ON t{n} (id);\n"
        )
    journal = {
        "version": "7",
        "dialect": "postgresql",
        "entries": [
            {"idx": n, "version": "7", "when": 1700000000000 + n, "tag": t, "breakpoints": True}
            for n, t in enumerate(tags)
        ],
    }
    (folder / "meta" / "_journal.json").write_text(json.dumps(journal))
    where = ["--database-url", empty_db, "--migrations-dir", str(folder), "--reports-dir", str(tmp_path / "r")]
    code, said = _run("deploy", *where)
    assert code == 0, said
    assert [r[0] for r in _rows(empty_db, "SELECT created_at FROM drizzle.__drizzle_migrations ORDER BY id")] == [
        1700000000000,
        1700000000001,
    ]
    (folder / "0000_a.sql").write_text("CREATE TABLE t0 (id bigint);\n")  # edited after it was applied
    code, said = _run("status", "--database-url", empty_db, "--migrations-dir", str(folder))
    assert "0000_a" in said and "DRIFT" in said
    (folder / "0002_c.sql").write_text("CREATE TABLE t2 (id int);\n")
    journal["entries"].append({"idx": 2, "version": "7", "when": 1700000000002, "tag": "0002_c", "breakpoints": True})
    (folder / "meta" / "_journal.json").write_text(json.dumps(journal))
    code, said = _run("deploy", *where)
    assert code == 1 and "0000_a" in said and "restore the applied file" in said
    assert _rows(empty_db, "SELECT to_regclass('t2')") == [(None,)]


def test_while_runbook_applies_the_tools_own_lock_is_held(empty_db: str, tmp_path: Path) -> None:
    """tool_session, as apply and deploy use it: golang-migrate's (both ids) and Flyway's advisory locks are taken
    for the apply and released after; a concurrent `migrate up` or `flyway migrate` would wait, not interleave."""
    from runbook_lib import batch
    from runbook_lib.layouts import detect, flyway, golang_migrate

    golang = tmp_path / "g"
    golang.mkdir()
    (golang / "1_a.up.sql").write_text("CREATE TABLE a (id int);\n")
    fly = tmp_path / "f"
    fly.mkdir()
    (fly / "V1__a.sql").write_text("CREATE TABLE a (id int);\n")
    with psycopg.connect(empty_db) as conn:
        database, schema = conn.execute("SELECT current_database(), current_schema()").fetchone()
    ids = [
        golang_migrate.lock_id(database, schema, "schema_migrations"),
        golang_migrate.lock_id("/" + database, schema, "schema_migrations"),
        flyway.lock_key(schema, "flyway_schema_history"),
    ]

    def free(key: int) -> bool:
        with psycopg.connect(empty_db, autocommit=True) as other:
            got = other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
            if got:
                other.execute("SELECT pg_advisory_unlock(%s)", (key,))
            return got

    for folder, keys in ((golang, ids[:2]), (fly, ids[2:])):
        first = batch.discover(folder)[0]
        with psycopg.connect(empty_db) as conn:
            with detect.tool_session(conn, first):
                assert not any(free(k) for k in keys)
            assert all(free(k) for k in keys)
