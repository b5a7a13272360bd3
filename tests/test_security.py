"""Security: identifiers from batch.toml are always quoted; TLS settings kept; no password where it would be written."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from runbook_lib import cli, commands, config
from runbook_lib.batch import declared as checks
from runbook_lib.batch import discover
from runbook_lib.db import connection as database
from runbook_lib.errors import DatabaseError, RunbookError
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, validate

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
    (folder / "migration.sql").write_text("ALTER TABLE item ALTER COLUMN " + quoted + " SET NOT NULL;\n")
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
        open_session(
            6,
            database_url=url,
            reports_dir=tmp_path,
            from_notebook=True,
            migrations_dir=config.example_migrations_dir(),
        )
    assert "DATABASE_URL" in str(refused.value) and "hunter2-secret" not in str(refused.value)
    # The same URL through the environment (the CLI's way) is fine, and never written anywhere.
    assert (
        open_session(
            6, database_url=url, reports_dir=tmp_path, migrations_dir=config.example_migrations_dir()
        ).facts.url.count("***")
        == 1
    )


def _url(pw: str, rest: str = "h/db", *, user: str = "u", scheme: str = "postgresql") -> str:
    """A URL carrying `pw`, put together here so that no URL with a password is written out in the source."""
    return scheme + "://" + user + ":" + pw + "@" + rest


# (scheme, the URL after its '@', its password, the password's pieces, what the sentence says). Each password
# is one libpq cannot parse, or reads wrongly.
BAD_URLS = [
    ("mysql", "h/db", "MYSQLPW7k", ["MYSQLPW7k"], "not postgresql://"),
    ("postgresql", "h/db", "SPC9x PWD9x", ["SPC9x", "PWD9x"], "contains a space"),
    ("postgresql", "h/db", "PCT7k%zzPW7k", ["PCT7k", "zzPW7k"], "not followed by two hexadecimal digits"),
    ("postgresql", "nohost.invalid/db", "SL7k/PW7k", ["SL7k", "PW7k"], "contains an @ or /"),
    ("postgresql", "nohost.invalid/db", "AT7k@PW7k", ["AT7k", "PW7k"], "contains an @ or /"),
]


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("given", ["DATABASE_URL", "--database-url"])
@pytest.mark.parametrize(("scheme", "rest", "pw", "pieces", "words"), BAD_URLS, ids=[c[2] for c in BAD_URLS])
def test_a_bad_url_is_refused_without_any_of_its_password(
    scheme, rest, pw, pieces, words, given, fmt, monkeypatch, capsys
) -> None:
    url = _url(pw, rest, scheme=scheme)
    argv = ["preflight", "7", "--migrations-dir", str(config.example_migrations_dir()), "--format", fmt]
    if given == "DATABASE_URL":
        monkeypatch.setenv("DATABASE_URL", url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
        argv += ["--database-url", url]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code != 0
    assert not [p for p in pieces if p in out + err], out + err
    sentence = err.strip()
    assert len(sentence.splitlines()) == 1 and "The database URL is not valid" in sentence and words in sentence
    assert "write it as postgresql://USER@HOST:PORT/DBNAME with the password in PGPASSWORD" in sentence
    if fmt == "json":
        assert json.loads(out)["error"] == sentence.removeprefix("runbook: ")


@pytest.mark.parametrize(
    ("command", "pw", "rest", "pieces"),
    [
        ("status", "POSPW7k", "/db?host=/tmp", ["POSPW7k"]),
        ("preflight", "POSPW7k", "h/db", ["POSPW7k"]),
        ("status", "SPC9x PWD9x", "h/db", ["SPC9x", "PWD9x"]),
    ],
    ids=["unrecognized", "invalid-int", "space"],
)
def test_a_url_argparse_refuses_is_echoed_without_its_password(command, pw, rest, pieces, monkeypatch, capsys) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    url = _url(pw, rest, user="pwuser" if pw == "POSPW7k" else "u")
    code = cli.main([command, url])
    out, err = capsys.readouterr()
    assert code == 2 and not [p for p in pieces if p in out + err], err
    assert len(err.strip().splitlines()) == 1 and "--database-url" in err and "see `runbook --help`" in err


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_any_error_is_printed_without_a_password_given(fmt, monkeypatch, capsys) -> None:
    """The last line of defence: an error that quotes a password (as given, or percent-decoded) is masked."""
    url = _url("Dec7k%40Pw7k")
    monkeypatch.setenv("RUNBOOK_TEST_DATABASE_URL", _url("EnvPw7k"))

    def leaky(database_url: str | None) -> None:
        raise DatabaseError(f"cannot use {database_url}: Dec7k@Pw7k or EnvPw7k refused; check the server.")

    monkeypatch.setattr(commands, "target", leaky)
    code = cli.main(["status", "--database-url", url, "--format", fmt])
    out, err = capsys.readouterr()
    assert code == 1 and "check the server" in err
    assert not [p for p in ("Dec7k", "Pw7k", "EnvPw7k") if p in out + err], out + err


@pytest.mark.parametrize(
    ("url", "pw", "shown"),
    [
        (_url("AT7k@PW7k", "nohost.invalid/db"), "AT7k@PW7k", "<unparseable database URL>"),
        (_url("SL7k/PW7k", "nohost.invalid/db"), "SL7k/PW7k", "<unparseable database URL>"),
        (_url("AT7k%40PW7k"), "AT7k%40PW7k", "postgresql://u:***@h/db"),
        ("postgresql://u@h:5432/db?application_name=a@b", "", "postgresql://u@h:5432/db?application_name=a@b"),
    ],
)
def test_redact_finds_the_whole_password(url, pw, shown) -> None:
    assert database.redact(url) == shown
    assert database.has_password(url) == bool(pw)
    assert "PW7k" not in database.mask(f"libpq said {pw} and {pw.replace('%40', '@')}", url)


def test_a_fleet_failure_is_reported_without_its_targets_password() -> None:
    """What a worker sends back from a target it could not reach: libpq's own text names parts of the URL."""
    from runbook_lib.fleet import task

    url = _url("AT7k@PW7k", "nohost.invalid/db")
    said = task._scrub(f'could not translate host name "PW7k@nohost.invalid" to address; tried {url}', url)
    assert "AT7k" not in said and "PW7k" not in said and "could not translate host name" in said
