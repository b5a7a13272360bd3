"""The three tools' layouts deployed by the schema's owner role, as production runs them: not a superuser, the
database's owner with no predefined roles. Each tool's own history is created and written by that role."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import psycopg
import pytest

from runbook_lib import cli

pytestmark = pytest.mark.versions  # what a role may create differs between server versions (public on 15+)


def _deploy(url: str, folder: Path, reports: Path) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = cli.main(
            ["deploy", "--database-url", url, "--migrations-dir", str(folder), "--reports-dir", str(reports)]
        )
    return code, err.getvalue() + out.getvalue()


LAYOUTS = {
    "flyway": (
        {
            "V1__create.sql": "CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL);\n",
            "V2__index.sql": "CREATE INDEX item_name ON item (name);\n",
        },
        "SELECT version, success FROM flyway_schema_history ORDER BY installed_rank",
        [("1", True), ("2", True)],
    ),
    "drizzle": (
        {
            "0000_create.sql": "CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL);\n",
            "0001_index.sql": "CREATE INDEX item_name ON item (name);\n",
            "meta/_journal.json": json.dumps(
                {
                    "version": "7",
                    "dialect": "postgresql",
                    "entries": [
                        {"idx": 0, "version": "7", "when": 1700000000100, "tag": "0000_create", "breakpoints": True},
                        {"idx": 1, "version": "7", "when": 1700000000200, "tag": "0001_index", "breakpoints": True},
                    ],
                }
            ),
        },
        "SELECT created_at FROM drizzle.__drizzle_migrations ORDER BY id",
        [(1700000000100,), (1700000000200,)],
    ),
    "golang-migrate": (
        {
            "1_create.up.sql": "CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL);\n",
            "1_create.down.sql": "DROP TABLE item;\n",
            "2_index.up.sql": "CREATE INDEX item_name ON item (name);\n",
            "2_index.down.sql": "DROP INDEX item_name;\n",
        },
        "SELECT version, dirty FROM schema_migrations",
        [(2, False)],
    ),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_owner_role_deploys_a_tool_layout_and_writes_the_tools_history(owned, tmp_path: Path, layout: str) -> None:
    files, history, rows = LAYOUTS[layout]
    roles = owned(load=False)
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(text)
    code, said = _deploy(roles.owner, folder, tmp_path / "r")
    assert code == 0, said
    with psycopg.connect(roles.owner) as conn:
        assert conn.execute(history).fetchall() == rows
        owner, me = conn.execute("SELECT tableowner, current_user FROM pg_tables WHERE tablename = 'item'").fetchone()
        assert owner == me  # made by the owner role itself, as the tool would have made it
