"""The whole journey as production runs it: a non-superuser role that owns the database, an application role
beside it with DML grants only, a person who logs in as themselves and acts as the owner (--role), and a
read-only role for status and check. No role here has pg_read_all_stats or pg_signal_backend.

Runs on every server (not a kernel test): what a role may see and do is the server's business. One
module-scoped journey; the tests read what it left.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from fix_roles import Roles, owned_database
from incli import Cli
from incli import cli as run_cli
from psycopg import conninfo, sql

from runbook_lib import config
from runbook_lib.db import ledger

pytestmark = pytest.mark.versions

MIGRATIONS = str(config.example_migrations_dir())
TABLES = ("Customer", "Lead", "Job")


def cli(*argv: object, url: str) -> Cli:
    return run_cli(*argv, "--database-url", url)


class Writer(threading.Thread):
    """The application: an UPDATE of one lead every 5 ms, as the app role, each one's duration kept."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.took, self.errors = url, threading.Event(), [], []
        self.start()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True, application_name="app writer") as conn:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    conn.execute('UPDATE "Lead" SET updated_at = now() WHERE id = (SELECT min(id) FROM "Lead")')
                except psycopg.Error as exc:
                    self.errors.append(exc.sqlstate)
                self.took.append(time.perf_counter() - started)
                time.sleep(0.005)


@dataclass
class Journey:
    roles: Roles
    load: Cli
    run6: Cli
    run7: Cli
    run7_data: dict
    writer_errors: list
    blocked_by_migration: int
    validate7: Cli
    status: Cli
    check: Cli
    ledger_owner: str
    rollback7: Cli
    rollback6: Cli
    deploy: Cli
    app_grants_after: list


def _runbook_looking(conn: psycopg.Connection) -> bool:
    """Whether runbook is reading pg_locks for blockers now (execution.blockers' look)."""
    return (
        conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'runbook%%'"
            " AND query LIKE '%%FROM pg_locks l LEFT JOIN pg_stat_activity%%'"
        ).fetchone()[0]
        > 0
    )


def _runbook_waiting_for(conn: psycopg.Connection, pid: int) -> int:
    """Whether a runbook session now waits for a lock that session `pid` holds: the request that every
    writer would queue behind (seen as the superuser sees it)."""
    return conn.execute(
        "SELECT count(*) FROM pg_stat_activity a WHERE a.application_name LIKE 'runbook%%'"
        " AND %s = ANY(pg_blocking_pids(a.pid))",
        (pid,),
    ).fetchone()[0]


@pytest.fixture(scope="module")
def journey(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    reports = tmp_path_factory.mktemp("owner_reports")
    common = ("--migrations-dir", MIGRATIONS, "--reports-dir", reports)
    with owned_database(server_url) as roles:
        load = cli("example", "load", url=roles.owner)
        with psycopg.connect(roles.owner, autocommit=True) as conn:
            conn.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(
                    sql.Identifier(roles.names["app"])
                )
            )
        run6 = cli("run", 6, *common, "--format", "json", url=roles.owner)
        # batch 7 as a person acting as the owner, while the application holds "Lead" idle in a transaction
        # (as the superuser sees it: state hidden from the owner role) and writes every 5 ms
        writer = Writer(roles.app)
        holder = psycopg.connect(roles.app, application_name="app report")
        holder.execute('SELECT count(*) FROM "Lead"')
        blocked = [0]
        stop_watch = threading.Event()
        idle_pid = holder.info.backend_pid

        def watch() -> None:
            """As the superuser: whether runbook ever waits for the idle session; and once runbook has been
            looking for blockers a while (however long the kernel took to start), the idle session ends."""
            looking_since = None
            with psycopg.connect(conninfo.make_conninfo(server_url, dbname=roles.database), autocommit=True) as conn:
                while not stop_watch.is_set():
                    blocked[0] = max(blocked[0], _runbook_waiting_for(conn, idle_pid))
                    if looking_since is None and _runbook_looking(conn):
                        looking_since = time.monotonic()
                    if looking_since is not None and time.monotonic() - looking_since > 0.5 and not holder.closed:
                        holder.rollback()
                    time.sleep(0.005)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            run7 = cli("apply", 7, *common, "--role", roles.names["owner"], "--format", "json", url=roles.person)
        finally:
            stop_watch.set()
            watcher.join()
            writer.stop.set()
            writer.join()
            holder.close()
        validate7 = cli("validate", 7, *common, url=roles.owner)
        status = cli("status", "--migrations-dir", MIGRATIONS, "--format", "json", url=roles.reader)
        check = cli("check", "--migrations-dir", MIGRATIONS, url=roles.reader)
        with psycopg.connect(roles.owner) as conn:
            ledger_owner = conn.execute(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass", (ledger.table(),)
            ).fetchone()[0]
        rollback7 = cli("rollback", 7, *common, url=roles.owner)
        rollback6 = cli("rollback", 6, *common, url=roles.owner)
        deploy = cli("deploy", *common, url=roles.owner)
        with psycopg.connect(roles.owner) as conn:
            grants = conn.execute(
                "SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type)"
                " FROM information_schema.role_table_grants WHERE grantee = %s GROUP BY 1 ORDER BY 1",
                (roles.names["app"],),
            ).fetchall()
        applied7 = run7.json["records"]["apply"] if run7.code == 0 else {}
        yield Journey(
            roles,
            load,
            run6,
            run7,
            applied7,
            writer.errors,
            blocked[0],
            validate7,
            status,
            check,
            ledger_owner,
            rollback7,
            rollback6,
            deploy,
            grants,
        )


def test_the_owner_role_loads_runs_and_owns_the_ledger(journey: Journey) -> None:
    assert journey.load.code == 0, journey.load.err
    assert journey.run6.code == 0, journey.run6.err + journey.run6.out
    assert journey.ledger_owner == journey.roles.names["owner"]


def test_preflight_says_what_the_owner_role_cannot_see_and_the_grant(journey: Journey) -> None:
    text = json.dumps(journey.run6.json["records"]["preflight"]["verdict"])
    owner = journey.roles.names["owner"]
    assert f"role {owner} cannot see other roles' session state" in text
    assert f"GRANT pg_read_all_stats TO {owner} shows names and queries" in text


def test_apply_as_the_owner_never_queues_behind_a_hidden_idle_transaction(journey: Journey) -> None:
    run = journey.run7
    assert run.code == 0, run.err + run.out
    data = journey.run7_data
    assert data["status"] == "applied", data
    # never a lock_timeout: it did not ask while the idle transaction held "Lead"; a request the writer's own
    # UPDATE made wait a moment may have been cancelled by the guard as the next UPDATE queued, and retried
    errors = [s["error"] for s in data["statements"] if s.get("error")]
    assert all(e.startswith("cancelled by runbook's guard") for e in errors), errors
    assert data["steps"][0]["attempts"] == 1 + data["guard_cancels"]
    [wait] = [w for w in data["blocker_waits"]]
    assert wait["state"] == "state hidden" and wait["user"] == journey.roles.names["app"]
    assert wait["since"].startswith("transaction ") and wait["outcome"] == "ended"
    assert journey.blocked_by_migration == 0  # runbook never waited for the idle session's lock
    assert journey.writer_errors == []


def test_acting_as_the_owner_is_recorded_with_who_logged_in(journey: Journey) -> None:
    owner, person = journey.roles.names["owner"], journey.roles.names["person"]
    assert journey.run7_data["connection"]["user"] == f"{owner} (logged in as {person})"
    with psycopg.connect(journey.roles.owner) as conn:
        users = {
            r[0] for r in conn.execute(f"SELECT db_user FROM {ledger.table()} WHERE batch = 7 AND phase = 'apply'")
        }
    assert owner in users  # the ledger's db_user is the role acted as


def test_validate_status_check_rollback_deploy_as_the_owner(journey: Journey) -> None:
    assert journey.validate7.code == 0, journey.validate7.err + journey.validate7.out
    assert journey.status.code == 0, journey.status.err
    applied = {b["number"]: b["applied"] for b in journey.status.json["migrations"]}
    assert applied[6] and applied[7]
    assert journey.check.code == 0, journey.check.err + journey.check.out
    for done in (journey.rollback7, journey.rollback6, journey.deploy):
        assert done.code == 0, done.err + done.out
    with psycopg.connect(journey.roles.owner) as conn:
        assert {n: s.applied for n, s in ledger.states(conn).items()} == {6: True, 7: True}
        assert conn.execute(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = '\"Lead\"'::regclass AND attname = 'customer_id'"
        ).fetchone()[0]


def test_the_application_keeps_its_grants_through_the_journey(journey: Journey) -> None:
    grants = dict(journey.app_grants_after)
    for table in TABLES:
        assert grants[table] == "DELETE,INSERT,SELECT,UPDATE"


def test_baseline_as_the_owner_records_without_running(owned, tmp_path) -> None:
    roles = owned()
    done = cli("baseline", 6, "--yes", "--migrations-dir", MIGRATIONS, "--reports-dir", tmp_path, url=roles.owner)
    assert done.code == 0, done.err + done.out
    with psycopg.connect(roles.owner) as conn:
        assert ledger.state(conn, 6).applied
        assert conn.execute('SELECT count(*) FROM "Lead" WHERE customer_id IS NULL').fetchone()[0] > 0  # not run


def test_a_fleet_of_owner_role_targets_runs(owned, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = owned(), owned()
    monkeypatch.setenv("RB_OWNER_A", first.owner)
    monkeypatch.setenv("RB_OWNER_B", second.owner)
    toml = tmp_path / "fleet.toml"
    toml.write_text(
        '[[target]]\nname = "a"\nurl_env = "RB_OWNER_A"\n\n[[target]]\nname = "b"\nurl_env = "RB_OWNER_B"\n'
    )
    done = run_cli(
        "fleet",
        "run",
        6,
        "--targets",
        toml,
        "--workers",
        1,
        "--reports-dir",
        tmp_path / "reports",
        "--migrations-dir",
        MIGRATIONS,
    )
    assert done.code == 0, done.err + done.out
    for roles in (first, second):
        with psycopg.connect(roles.owner) as conn:
            assert ledger.state(conn, 6).applied
            assert conn.execute('SELECT count(*) FROM "Lead" WHERE customer_id IS NULL').fetchone()[0] == 0
