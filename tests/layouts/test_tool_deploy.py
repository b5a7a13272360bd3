"""`runbook deploy` on a small Flyway project, as Flyway runs it: a repeatable script again only when its checksum
changed, a script that mixes transactional and non-transactional statements refused, the undo script with its
placeholders as the rollback; and golang-migrate's down script as the rollback, its single row moved back."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import psycopg

from runbook_lib import cli


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

    (folder / "V2__index.sql").write_text("ALTER TABLE item ADD COLUMN name text;\n"
                                          "CREATE INDEX CONCURRENTLY item_name ON item (name);\n")
    code, said = _run("deploy", *where)
    assert code == 1
    assert "V2__index.sql mixes statements that run in a transaction with one that cannot" in said
    assert _rows(empty_db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'item'"
                                          " AND column_name = 'name'") == [(0,)]


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
