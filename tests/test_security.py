"""Security: identifiers from batch.toml are always quoted; TLS settings kept; no password where it would be written."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from runbook_lib import config
from runbook_lib.batch import declared as checks
from runbook_lib.batch import discover
from runbook_lib.db import connection as database
from runbook_lib.errors import RunbookError
from runbook_lib.phases import apply, validate
from runbook_lib.phases.session import open_session

EVIL = 'x"; DROP TABLE "Lead"; --'


def test_hostile_column_name_from_batch_toml_is_quoted(empty_db: str, tmp_path: Path) -> None:
    with psycopg.connect(empty_db) as conn:
        conn.execute('CREATE TABLE "Lead" (id int PRIMARY KEY)')
        conn.execute(sql.SQL("CREATE TABLE item (id int PRIMARY KEY, {} int)").format(sql.Identifier(EVIL)))
        conn.execute(sql.SQL("INSERT INTO item VALUES (1, 1)"))
    folder = tmp_path / "migrations" / "001_evil"
    folder.mkdir(parents=True)
    quoted = '"' + EVIL.replace('"', '""') + '"'
    (folder / "batch.toml").write_text(f"batch = 1\n[checks]\nnot_null = ['item.{quoted}']\n")
    (folder / "migration.sql").write_text(
        "ALTER TABLE item ALTER COLUMN " + quoted + " SET NOT NULL;\n")
    [batch] = discover(tmp_path / "migrations")
    assert batch.checks.not_null[0].column == EVIL
    session = open_session(1, database_url=empty_db, migrations_dir=tmp_path / "migrations", reports_dir=tmp_path / "r")
    assert apply.run(session).status == "applied"
    result = validate.run(session)
    assert result.ok, [(t.name, t.outcome) for t in result.tests if not t.passed]
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('\"Lead\"') IS NOT NULL").fetchone()[0]  # nothing was injected
        blocks = checks.gates(conn, batch.checks) + checks.tests(conn, batch.checks)
        mentioning = [b for b in blocks if "DROP TABLE" in b.sql]
        assert mentioning and all(quoted in b.sql or EVIL.replace("'", "''") in b.sql for b in mentioning)


def test_tls_settings_in_the_url_are_kept(crm_url: str) -> None:
    plain = conninfo.make_conninfo(crm_url, sslmode="disable")
    with database.connect(plain) as conn:
        assert conn.info.get_parameters()  # connected with sslmode=disable
    assert "sslmode=disable" in database.redact(plain)
    # Every TLS setting of the URL reaches libpq as given: the connection's own parameters show them.
    tls = conninfo.make_conninfo(crm_url, sslmode="disable", ssl_min_protocol_version="TLSv1.3")
    with database.connect(tls) as conn:
        effective = conninfo.conninfo_to_dict(conn.info.dsn)
    assert effective.get("sslmode") == "disable" and effective.get("ssl_min_protocol_version") == "TLSv1.3"


def test_a_url_with_a_password_is_refused_as_a_notebook_parameter(crm_url: str, tmp_path: Path) -> None:
    url = conninfo.make_conninfo(crm_url, password="hunter2-secret")
    with pytest.raises(RunbookError) as refused:
        open_session(6, database_url=url, reports_dir=tmp_path, from_notebook=True, migrations_dir=config.example_migrations_dir())
    assert "DATABASE_URL" in str(refused.value) and "hunter2-secret" not in str(refused.value)
    # The same URL through the environment (the CLI's way) is fine, and never written anywhere.
    assert open_session(6, database_url=url, reports_dir=tmp_path, migrations_dir=config.example_migrations_dir()).facts.url.count("***") == 1
