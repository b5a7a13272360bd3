"""What each phase needs: preflight works with a role that can only read, and says what it lacks; apply is
refused before anything is touched, naming each missing privilege and its GRANT."""

from __future__ import annotations

import textwrap
import threading
import uuid
from pathlib import Path

import psycopg
import pytest
from fix_roles import Roles
from psycopg import conninfo, sql

from runbook_lib import commands, config, names
from runbook_lib.db import ledger
from runbook_lib.db.target import Target
from runbook_lib.errors import LedgerError, PreflightFailed, RunbookError
from runbook_lib.execution.session import open_session
from runbook_lib.names import NOGO
from runbook_lib.phases import apply, preflight

pytestmark = pytest.mark.versions


@pytest.fixture
def reader_url(crm_url: str, server_url: str, tmp_path: Path):
    """batch 6 applied by the owner; then a role that can read everything and write nothing."""
    apply.run(
        open_session(6, database_url=crm_url, reports_dir=tmp_path, migrations_dir=config.example_migrations_dir())
    )
    role = f"rb_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(role)))
    yield conninfo.make_conninfo(crm_url, user=role)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_preflight_runs_with_a_read_only_role_and_names_what_it_lacks(
    reader_url: str, crm_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(crm_url) as conn:
        rows_before = len(ledger.history(conn))
    result = preflight.run(
        open_session(7, database_url=reader_url, reports_dir=tmp_path, migrations_dir=config.example_migrations_dir())
    )
    role = result.connection.user
    assert role.startswith("rb_reader_")
    assert result.verdict.status == preflight.NOGO
    reasons = "\n".join(result.verdict.reasons)
    with psycopg.connect(crm_url) as conn:
        owner = conn.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = '\"Lead\"'::regclass"
        ).fetchone()[0]
    assert f"statement 1 (line 9) alters Lead, owned by {owner}: role {role} is neither" in reasons
    assert f"GRANT {owner} TO {role}" in reasons
    assert (
        f"cannot write runbook's ledger runbook.phase_run; GRANT INSERT, UPDATE ON runbook.phase_run TO {role}"
        in reasons
    )
    assert f"GRANT pg_read_all_stats TO {role} shows names and queries" in reasons
    with psycopg.connect(crm_url) as conn:
        assert len(ledger.history(conn)) == rows_before  # it could not write the ledger, and said nothing false


def test_apply_with_a_read_only_role_is_refused_in_one_sentence(reader_url: str, crm_url: str, tmp_path: Path) -> None:
    with pytest.raises(RunbookError) as refused:
        apply.run(
            open_session(
                7, database_url=reader_url, reports_dir=tmp_path, migrations_dir=config.example_migrations_dir()
            )
        )
    message = str(refused.value)
    assert "ledger" in message and "GRANT INSERT, UPDATE ON runbook.phase_run" in message and "\n" not in message
    with psycopg.connect(crm_url) as conn:
        assert not ledger.state(conn, 7).applied
        assert (
            conn.execute(
                "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'Lead'"
                " AND column_name = 'customer_id'"
            ).fetchone()[0]
            == "YES"
        )


# --- as a non-superuser owner role (fix_roles) ------------------------------------------------------


def batch_folder(root: Path, sql_text: str, number: int = 1) -> Path:
    folder = root / "migrations" / f"{number:03d}_change"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text(textwrap.dedent(sql_text))
    return root / "migrations"


def session_as(url: str, migrations: Path, tmp_path: Path, number: int = 1):
    return open_session(number, database_url=url, reports_dir=tmp_path / "reports", migrations_dir=migrations)


def superuser_on(roles: Roles) -> psycopg.Connection:
    return psycopg.connect(conninfo.make_conninfo(roles.server, dbname=roles.database), autocommit=True)


def owned_by_app(roles: Roles, table: str) -> None:
    """A table (id int PRIMARY KEY) the application role owns, not the owner role."""
    with superuser_on(roles) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(sql.Identifier(table)))
        conn.execute(
            sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(table), sql.Identifier(roles.names["app"]))
        )


def test_altering_a_table_another_role_owns_is_nogo_before_anything_is_touched(owned, tmp_path: Path) -> None:
    roles = owned()
    owner, app = roles.names["owner"], roles.names["app"]
    owned_by_app(roles, "Audit")
    migrations = batch_folder(
        tmp_path, 'ALTER TABLE "Lead" ADD COLUMN note text;\nALTER TABLE "Audit" ADD COLUMN at timestamptz;\n'
    )
    result = preflight.run(session_as(roles.owner, migrations, tmp_path))
    assert result.verdict.status == preflight.NOGO
    assert (
        f"statement 2 (line 2) alters Audit, owned by {app}: role {owner} is neither {app} nor a member of it; "
        f"act as the owner (--role {app}), or GRANT {app} TO {owner}"
    ) in result.verdict.reasons
    assert not any("alters Lead" in r for r in result.verdict.reasons)  # the owner's own table is fine
    with pytest.raises(PreflightFailed, match=f"alters Audit, owned by {app}"):
        apply.run(session_as(roles.owner, migrations, tmp_path))
    with psycopg.connect(roles.owner) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM information_schema.columns WHERE column_name IN ('note', 'at')"
            ).fetchone()[0]
            == 0
        )  # nothing touched: not even statement 1
    with superuser_on(roles) as conn:  # membership in the owning role counts, as PostgreSQL counts it
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(app), sql.Identifier(owner)))
    assert not preflight.run(session_as(roles.owner, migrations, tmp_path)).privileges.lines(NOGO)


def test_a_foreign_key_to_a_table_without_references_is_nogo(owned, tmp_path: Path) -> None:
    roles = owned()
    owner = roles.names["owner"]
    owned_by_app(roles, "Region")
    migrations = batch_folder(
        tmp_path, 'CREATE TABLE "Office" (id int PRIMARY KEY, region_id int REFERENCES "Region");\n'
    )
    reasons = preflight.run(session_as(roles.owner, migrations, tmp_path)).verdict.reasons
    assert (
        f"statement 1 (line 1) references Region, on which role {owner} has no REFERENCES privilege; "
        f'GRANT REFERENCES ON "Region" TO {owner}'
    ) in reasons
    with superuser_on(roles) as conn:
        conn.execute(sql.SQL('GRANT REFERENCES ON "Region" TO {}').format(sql.Identifier(owner)))
    assert not preflight.run(session_as(roles.owner, migrations, tmp_path)).privileges.lines(NOGO)


@pytest.mark.parametrize(
    "grant", ["", 'GRANT SELECT, INSERT, UPDATE, DELETE ON "Note" TO {app};', "ALTER DEFAULT PRIVILEGES"]
)
def test_a_new_table_the_application_role_cannot_reach_is_a_warning(owned, tmp_path: Path, grant: str) -> None:
    roles = owned()
    app = roles.names["app"]
    if grant == "ALTER DEFAULT PRIVILEGES":
        with psycopg.connect(roles.owner, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
                ).format(sql.Identifier(app))
            )
        grant = ""
    migrations = batch_folder(
        tmp_path, 'CREATE TABLE "Note" (id int PRIMARY KEY, body text);\n' + grant.format(app=app) + "\n"
    )
    result = preflight.run(session_as(roles.owner, migrations, tmp_path))
    warned = [r for r in result.verdict.reasons if r.startswith("new table Note")]
    expected = bool(not grant and not _default_privileges(roles.owner))
    assert bool(warned) == expected, result.verdict.reasons
    if expected:
        assert warned == [
            f"new table Note will lack SELECT, INSERT, UPDATE, DELETE for role {app}, which has them on "
            f"the other tables of schema public (no default privileges grant them); add GRANT SELECT, "
            f'INSERT, UPDATE, DELETE ON "Note" TO {app} to the migration, or ALTER DEFAULT PRIVILEGES IN '
            f"SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}"
        ]


def _default_privileges(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM pg_default_acl").fetchone()[0] > 0


def test_terminate_blockers_after_without_pg_signal_backend_is_refused_at_preflight(owned, tmp_path: Path) -> None:
    roles = owned()
    owner = roles.names["owner"]
    migrations = config.example_migrations_dir()
    session = open_session(6, database_url=roles.owner, reports_dir=tmp_path, migrations_dir=migrations)
    with pytest.raises(
        PreflightFailed,
        match=f"--terminate-blockers-after needs pg_signal_backend to end another "
        f"role's session, and role {owner} does not have it; GRANT "
        f"pg_signal_backend TO {owner}, or run without",
    ):
        apply.run(session, terminate_blockers_after_s=1.0)
    with psycopg.connect(roles.owner) as conn:
        assert not ledger.state(conn, 6).applied
    with superuser_on(roles) as conn:
        conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(owner)))
    result = preflight.run(
        open_session(6, database_url=roles.owner, reports_dir=tmp_path, migrations_dir=migrations),
        terminate_blockers_after_s=1.0,
    )
    assert not result.privileges.lines(NOGO)
    assert any("cannot tell an idle session of another role from a busy one" in r for r in result.verdict.reasons)


def test_a_superusers_session_it_may_not_signal_is_named_and_waited_for(owned, tmp_path: Path) -> None:
    roles = owned()
    owner = roles.names["owner"]
    with superuser_on(roles) as conn:
        conn.execute(sql.SQL("GRANT pg_signal_backend, pg_read_all_stats TO {}").format(sql.Identifier(owner)))
    migrations = config.example_migrations_dir()
    apply.run(open_session(6, database_url=roles.owner, reports_dir=tmp_path, migrations_dir=migrations))
    blocker = psycopg.connect(conninfo.make_conninfo(roles.server, dbname=roles.database), application_name="dba")
    blocker.execute('SELECT count(*) FROM "Lead"')
    release = threading.Timer(1.0, blocker.rollback)
    release.start()
    try:
        result = apply.run(
            open_session(7, database_url=roles.owner, reports_dir=tmp_path, migrations_dir=migrations),
            terminate_blockers_after_s=0.1,
        )
    finally:
        release.join()
    assert blocker.execute("SELECT 1").fetchone() == (1,)  # still there: never terminated
    blocker.close()
    assert result.status == names.APPLIED
    [attempt] = [w for w in result.blocker_waits if w.outcome.startswith("not terminated")]
    # "permission denied to terminate process" (16+), "must be a superuser to terminate superuser process" (15)
    assert attempt.application == "dba" and attempt.outcome.startswith("not terminated: ")
    assert "permission denied" in attempt.outcome or "superuser" in attempt.outcome


def test_the_ledger_goes_where_the_role_may_write_and_is_never_moved_silently(
    owned, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The application role migrates here: it may create in public but not in the database (no runbook schema)."""
    roles = owned()
    app = roles.names["app"]
    with superuser_on(roles) as conn:
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(app)))
    migrations = batch_folder(tmp_path, 'CREATE TABLE "Note" (id int PRIMARY KEY);\n')
    result = preflight.run(session_as(roles.app, migrations, tmp_path))
    assert (
        f"role {app} cannot create runbook's ledger schema runbook (no CREATE on database {roles.database}); "
        f"GRANT CREATE ON DATABASE {roles.database} TO {app}, or set ledger_schema in runbook.toml (or "
        "--ledger-schema) to an existing schema it may create tables in"
    ) in result.verdict.reasons
    monkeypatch.setenv(ledger.SCHEMA_VARIABLE, "public")
    assert not preflight.run(session_as(roles.app, migrations, tmp_path)).privileges.lines(NOGO)
    assert apply.run(session_as(roles.app, migrations, tmp_path)).status == names.APPLIED
    with superuser_on(roles) as conn:
        assert conn.execute(
            "SELECT to_regclass('public.phase_run') IS NOT NULL, to_regnamespace('runbook')"
        ).fetchone() == (True, None)
        assert ledger.state(conn, 1).applied
    monkeypatch.delenv(ledger.SCHEMA_VARIABLE)
    with superuser_on(roles) as conn, pytest.raises(LedgerError) as moved:
        ledger.states(conn)
    assert str(moved.value).startswith("runbook's ledger is in schema public, but this run's ledger schema is runbook")
    assert 'set ledger_schema = "public"' in str(moved.value)


def test_runbook_toml_names_the_ledger_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "runbook.toml").write_text('migrations_dir = "migrations"\nledger_schema = "ops"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ledger.SCHEMA_VARIABLE, raising=False)
    assert ledger.schema_name() == "ops" and ledger.table() == '"ops".phase_run'
    monkeypatch.setenv(ledger.SCHEMA_VARIABLE, "cli")  # --ledger-schema wins
    assert ledger.schema_name() == "cli"
    (tmp_path / "runbook.toml").write_text('ledger_schema = ""\n')
    with pytest.raises(RunbookError, match="line 1: ledger_schema must name a schema"):
        config.find_project_file(tmp_path)


def test_status_and_check_as_a_read_only_role_create_nothing(owned, tmp_path: Path) -> None:
    roles = owned()
    migrations = config.example_migrations_dir()
    status = commands.status(Target(roles.reader), migrations)
    assert [m.applied for m in status.rows] == [False, False]
    checked = commands.check(Target(roles.reader), migrations)
    assert not checked.drifts
    with superuser_on(roles) as conn:
        assert conn.execute("SELECT to_regnamespace('runbook')").fetchone()[0] is None


def test_statistics_and_vacuum_owed_on_a_table_the_role_does_not_own_are_reported_not_failed(
    owned, tmp_path: Path
) -> None:
    """An online backfill of a table the application role owns (the owner role may UPDATE it): the ANALYZE
    before it and the VACUUM after it are PostgreSQL's to refuse; runbook says it did not, and applies."""
    roles = owned()
    owner, app = roles.names["owner"], roles.names["app"]
    with superuser_on(roles) as conn:
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, n int)")
        conn.execute("INSERT INTO item SELECT g, 0 FROM generate_series(1, 3000) g")
        conn.execute(sql.SQL("ALTER TABLE item OWNER TO {}").format(sql.Identifier(app)))
        conn.execute(sql.SQL("GRANT SELECT, UPDATE ON item TO {}").format(sql.Identifier(owner)))
    migrations = batch_folder(tmp_path, "UPDATE item SET n = n + 1 WHERE n >= 0;\n")
    result = apply.run(session_as(roles.owner, migrations, tmp_path), strategy="online")
    assert result.status == names.APPLIED
    [run] = result.backfills
    assert run.rows == 3000
    assert "item not analyzed: this role may not (it does not own it), autovacuum will" in run.analyzed
    assert run.vacuumed.startswith("did not vacuum item (this role may not vacuum it)")


def test_preflight_as_the_owner_names_a_hidden_session_that_holds_a_lock(owned, tmp_path: Path) -> None:
    roles = owned()
    app = roles.names["app"]
    migrations = batch_folder(tmp_path, 'ALTER TABLE "Lead" ADD COLUMN note text;\n')
    with psycopg.connect(roles.app, application_name="") as holder:
        holder.execute('SELECT count(*) FROM "Lead"')
        result = preflight.run(session_as(roles.owner, migrations, tmp_path))
        pid = holder.info.backend_pid
    [blocker] = result.blockers
    assert (blocker.pid, blocker.user, blocker.state) == (pid, app, "state hidden")
    assert f'session {pid} ({app}, state hidden) holds AccessShareLock on "Lead"' in "\n".join(result.verdict.reasons)


def test_the_projects_ledger_schema_reaches_the_notebooks_the_cli_runs(
    owned, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """runbook.toml beside the migrations, the command run from elsewhere: the kernel (in the run folder) writes
    the ledger where runbook.toml says, as the CLI process reads it."""
    from incli import cli

    roles = owned()
    project = tmp_path / "project"
    migrations = batch_folder(project, 'CREATE TABLE "Note" (id int PRIMARY KEY);\n')
    (project / "runbook.toml").write_text('migrations_dir = "migrations"\nledger_schema = "ops"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ledger.SCHEMA_VARIABLE, raising=False)
    done = cli(
        "apply", 1, "--migrations-dir", migrations, "--reports-dir", tmp_path / "reports", "--database-url", roles.owner
    )
    assert done.code == 0, done.err + done.out
    with psycopg.connect(roles.owner) as conn:
        assert conn.execute(
            "SELECT to_regclass('ops.phase_run') IS NOT NULL, to_regnamespace('runbook')"
        ).fetchone() == (True, None)
