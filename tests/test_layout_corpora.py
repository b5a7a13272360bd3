"""Three real histories in other tools' layouts (tests/corpora): openmeter (golang-migrate, 269), dokploy (Drizzle
Kit, 186) and ohdsi-webapi (Flyway, 196, with `${ohdsiSchema}` and a schema of its own).

- Deployed from empty with `runbook deploy`, the schema equals what psql gives applying each file as the tool
  would (tests/corpora/README.md), and the tool's own history holds what the tool writes. `make test` deploys
  the first migrations of each (FIRST) on both servers; `make sweep-corpora` (--whole-corpora) the whole
  histories, openmeter's where pgcrypto is (the system server; the embedded one lacks it), the result in
  benchmarks/RESULTS.md.
- Adopted at N-3 (psql and the tool's rows), then deployed; a changed file is drift; a dirty golang-migrate row
  or a failed Flyway row blocks, naming the tool's own way out.
- A folder runbook cannot read is refused, never reported as "nothing pending"; an empty one is said to be empty.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from test_history_corpora import BIN, CORPORA, _capture, _run_dir, run_psql, sweep_limit

from runbook_lib import cli
from runbook_lib.layouts import drizzle, flyway, golang_migrate
from runbook_lib.layouts.base import LayoutSettings

pytestmark = pytest.mark.slow
_ONCE = pytest.mark.kernel  # runbook's reading of the histories: the same on any server, run once

OHDSI = LayoutSettings(
    layout="flyway",
    placeholders={"ohdsiSchema": "webapi"},
    schemas=("webapi",),
    rollback_dir=CORPORA / "ohdsi-webapi" / "migrations" / "rollback",
)
SETTINGS = {
    "openmeter": LayoutSettings(layout="golang-migrate"),
    "dokploy": LayoutSettings(layout="drizzle"),
    "ohdsi-webapi": OHDSI,
}
MODULES = {"openmeter": golang_migrate, "dokploy": drizzle, "ohdsi-webapi": flyway}
# `make test`'s share of each history, on either server: its first migrations, a few seconds each; ohdsi-webapi's
# stops before its 25th, 1.2 MB of INSERTs (penelope_data) that would take most of the test's time
FIRST = {"openmeter": 30, "dokploy": 30, "ohdsi-webapi": 24}


def _copy(corpus: str, tmp_path: Path, n: int | None = None) -> Path:
    """The corpus's migrations (the first n, in the tool's order) in a folder of their own, with its runbook.toml."""
    source = CORPORA / corpus
    target = tmp_path / corpus
    shutil.copytree(source / "migrations", target / "migrations")
    if (source / "runbook.toml").exists():
        shutil.copy(source / "runbook.toml", target / "runbook.toml")
    if n is not None:
        keep = MODULES[corpus].read(target / "migrations", _settings(corpus, target))[:n]
        kept = {m.path.name for m in keep} | {m.down.name for m in keep if m.down}
        for path in (target / "migrations").iterdir():
            if path.is_file() and path.suffix == ".sql" and path.name not in kept:
                path.unlink()
        if corpus == "dokploy":  # the journal lists only the kept ones
            import json

            journal = target / "migrations" / "meta" / "_journal.json"
            data = json.loads(journal.read_text())
            data["entries"] = data["entries"][:n]
            journal.write_text(json.dumps(data, indent=2))
    return target / "migrations"


def _settings(corpus: str, root: Path | None = None) -> LayoutSettings:
    settings = SETTINGS[corpus]
    if corpus == "ohdsi-webapi" and root is not None:
        return LayoutSettings(
            layout="flyway",
            placeholders=settings.placeholders,
            schemas=settings.schemas,
            rollback_dir=root / "migrations" / "rollback",
        )
    return settings


def psql_apply(url: str, corpus: str, folder: Path) -> None:
    """Each file as the README says a team applies it by hand: in the tool's order, `-1` unless CONCURRENTLY;
    ohdsi-webapi's placeholder replaced and its schema created first and set as the search_path."""
    migrations = MODULES[corpus].read(folder, _settings(corpus, folder.parent))
    env = dict(os.environ)
    if corpus == "ohdsi-webapi":
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS webapi")
        env["PGOPTIONS"] = "-c search_path=webapi"
    for m in migrations:
        single = [] if "CONCURRENTLY" in m.sql.upper() else ["-1"]
        done = run_psql(
            [str(BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *single, "-d", url, "-f", "-"],
            env=env,
            input=m.sql,
        )
        assert done.returncode == 0, f"psql failed on {m.path.name}: {done.stderr[-2000:]}"


def schema_of(url: str) -> str:
    """pg_dump -s without runbook's ledger and the tools' history tables."""
    done = subprocess.run(
        [
            str(BIN / "pg_dump"),
            "-s",
            "--no-owner",
            "--no-privileges",
            "--exclude-schema=runbook",
            "--exclude-schema=drizzle",
            "--exclude-table=*.schema_migrations",
            "--exclude-table=*.flyway_schema_history",
            "-d",
            url,
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    lines = [
        line
        for line in done.stdout.splitlines()
        if line.strip() and not line.startswith("--") and not line.startswith(("\\restrict", "\\unrestrict"))
    ]
    return "\n".join(lines)


def deploy(url: str, folder: Path, reports: Path, *extra: str) -> tuple[int, str]:
    """The exit code, and what the terminal showed (stderr's progress and failure, then stdout's outcome)."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = cli.main(
            ["deploy", "--database-url", url, "--migrations-dir", str(folder), "--reports-dir", str(reports), *extra]
        )
    return code, err.getvalue() + out.getvalue()


def _has_pgcrypto(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'pgcrypto'").fetchone()[0] > 0


def tool_rows(url: str, corpus: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        if corpus == "openmeter":
            return conn.execute("SELECT version, dirty FROM schema_migrations").fetchall()
        if corpus == "dokploy":
            return conn.execute("SELECT hash, created_at FROM drizzle.__drizzle_migrations ORDER BY id").fetchall()
        return conn.execute(
            "SELECT installed_rank, version, description, type, script, checksum, success"
            " FROM webapi.flyway_schema_history ORDER BY installed_rank"
        ).fetchall()


def expected_rows(corpus: str, folder: Path) -> list[tuple]:
    migrations = MODULES[corpus].read(folder, _settings(corpus, folder.parent))
    if corpus == "openmeter":
        return [(int(migrations[-1].version), False)]
    if corpus == "dokploy":
        return [(m.checksum, m.created_at) for m in migrations]
    return [
        (n, m.version, m.description, "SQL", m.path.name, int(m.checksum), True)
        for n, m in enumerate(migrations, start=1)
    ]


def _share(corpus: str, url: str, config: pytest.Config) -> int | None:
    """How many migrations the deploy test takes (None: all of them): FIRST in `make test`, on either server;
    the whole history in `make sweep-corpora` (--whole-corpora), openmeter's skipped where pgcrypto is missing
    (the embedded server); the first N in that sweep's smoke run (--corpora-limit N)."""
    limit = sweep_limit(config)
    if limit is None:
        return FIRST[corpus]
    if limit < sys.maxsize:
        return limit
    if corpus == "openmeter" and not _has_pgcrypto(url):
        pytest.skip("openmeter's whole history needs pgcrypto, which this server lacks (the system PostgreSQL has it)")
    return None


@pytest.mark.parametrize("corpus", ["openmeter", "dokploy", "ohdsi-webapi"])
def test_a_tool_history_deploys_from_empty_as_psql_applies_it(
    corpus: str, make_database, pytestconfig: pytest.Config, record_property, tmp_path: Path
) -> None:
    by_psql, by_runbook = make_database(), make_database()
    with psycopg.connect(by_runbook) as conn:  # for benchmarks/corpora_sweep.py, as the migrations below
        record_property("server", conn.execute("SHOW server_version").fetchone()[0])
    folder = _copy(corpus, tmp_path, _share(corpus, by_psql, pytestconfig))
    count = len(MODULES[corpus].read(folder, _settings(corpus, folder.parent)))
    record_property("migrations", count)
    errors: list[BaseException] = []
    worker = threading.Thread(target=lambda: _capture(errors, psql_apply, by_psql, corpus, folder))
    worker.start()
    code, err = deploy(by_runbook, folder, tmp_path / "r")
    worker.join()
    assert not errors, errors
    assert code == 0, err[-3000:]
    assert f"{count}/{count} migrations applied" in (_run_dir(err) / "summary.md").read_text()
    assert schema_of(by_runbook) == schema_of(by_psql)
    rows = tool_rows(by_runbook, corpus)
    if corpus == "ohdsi-webapi":  # Flyway's marker for the schema it created, then a row per script
        assert rows[0][3] == "SCHEMA" and rows[0][0] == 0
        rows = rows[1:]
    assert rows == expected_rows(corpus, folder)


@_ONCE
@pytest.mark.parametrize("corpus", ["openmeter", "dokploy", "ohdsi-webapi"])
def test_adopted_at_n_minus_3_then_deployed(corpus: str, make_database, tmp_path: Path) -> None:
    folder = _copy(corpus, tmp_path, 12)
    migrations = MODULES[corpus].read(folder, _settings(corpus, folder.parent))
    adopted, fresh = make_database(), make_database()
    head = tmp_path / "head"
    _copy(corpus, head, 9)
    psql_apply(adopted, corpus, head / corpus / "migrations")
    history = MODULES[corpus].History(_settings(corpus, folder.parent))
    with psycopg.connect(adopted) as conn:  # what the tool itself wrote for the nine it applied
        if corpus == "ohdsi-webapi":
            conn.execute("SET search_path TO webapi")
        for m in migrations[:9]:
            history.record_applied(conn, m, migrations, ran=True)
    code, err = deploy(adopted, folder, tmp_path / "r")
    assert code == 0, err[-3000:]
    assert sorted(p.name for p in _run_dir(err).iterdir() if p.is_dir()) == ["0010", "0011", "0012"]
    psql_apply(fresh, corpus, folder)
    assert schema_of(adopted) == schema_of(fresh)
    rows = tool_rows(adopted, corpus)
    assert rows[-1] == expected_rows(corpus, folder)[-1]


@_ONCE
def test_a_changed_flyway_script_is_drift_and_a_failed_row_blocks(make_database, tmp_path: Path, capsys) -> None:
    folder = _copy("ohdsi-webapi", tmp_path, 6)
    url = make_database()
    code, err = deploy(url, folder, tmp_path / "r")
    assert code == 0, err[-3000:]
    changed = flyway.read(folder, _settings("ohdsi-webapi", folder.parent))[2].path
    changed.write_text(changed.read_text(encoding="utf-8") + "\n-- edited after it was applied\n", encoding="utf-8")
    assert cli.main(["status", "--database-url", url, "--migrations-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"{re.escape(changed.stem)}.*DRIFT", out), out
    changed.write_text(
        changed.read_text(encoding="utf-8").replace("\n-- edited after it was applied\n", ""), encoding="utf-8"
    )
    (folder / "V9.9.9__later.sql").write_text("CREATE TABLE later (id int);\n", encoding="utf-8")
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE webapi.flyway_schema_history SET success = false WHERE installed_rank = 6")
    code, err = deploy(url, folder, tmp_path / "r")
    assert code == 1
    assert "flyway repair" in err
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('webapi.later')").fetchone()[0] is None


@_ONCE
def test_a_dirty_golang_migrate_row_left_by_another_runner_blocks(make_database, tmp_path: Path) -> None:
    folder = _copy("openmeter", tmp_path, 5)
    migrations = golang_migrate.read(folder, LayoutSettings())
    url = make_database()
    psql_apply(url, "openmeter", _copy("openmeter", tmp_path / "head", 3))
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)")
        conn.execute("INSERT INTO schema_migrations VALUES (%s, true)", (int(migrations[2].version),))
    code, err = deploy(url, folder, tmp_path / "r")
    assert code == 1
    assert f"migrate force {int(migrations[2].version)}" in err


@_ONCE
def test_a_folder_runbook_cannot_read_is_refused_not_reported_applied(make_database, tmp_path: Path, capsys) -> None:
    url = make_database()
    odd = tmp_path / "odd"
    odd.mkdir()
    for n in range(1, 6):
        (odd / f"{n:03d}-step.sql").write_text(f"CREATE TABLE t{n} (id int);\n", encoding="utf-8")
    code, err = deploy(url, odd, tmp_path / "r")
    assert code != 0
    assert "5 .sql file(s) but no migration runbook can read" in err and "layout" in err
    assert "nothing pending" not in err
    assert cli.main(["status", "--database-url", url, "--migrations-dir", str(odd)]) != 0
    assert "no migration runbook can read" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = deploy(url, empty, tmp_path / "r")
    assert code == 0
    assert f"{empty} is empty" in err
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('t1')").fetchone()[0] is None
