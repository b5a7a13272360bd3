"""Never queue behind a blocker: apply waits for it without requesting its locks, and the application does not
stall; a request an application session queues behind is cancelled at once; terminating is opt-in only.

Real sessions on a real server: a blocker is a connection idle in transaction after reading "Lead".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from runbook_lib import config, names
from runbook_lib.errors import MigrationFailed, PreflightFailed
from runbook_lib.execution import live
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, preflight, rollback
from runbook_lib.report import terminal
from runbook_lib.report.records import ExecutionResult

pytestmark = pytest.mark.versions

INSERT = (
    'INSERT INTO "Lead" (id, customer_id, channel, name, updated_at)'
    " VALUES (%s, (SELECT min(id) FROM \"Customer\"), 'web', 'app', now())"
)


@pytest.fixture
def session_for(crm_url: str, tmp_path: Path):
    """A session for batch N of the example (or of `migrations`), with batch 6 applied."""

    def make(number: int, migrations: Path | None = None, run_dir: Path | None = None):
        return open_session(
            number,
            database_url=crm_url,
            reports_dir=tmp_path / "reports",
            run_dir=run_dir,
            migrations_dir=migrations or config.example_migrations_dir(),
        )

    apply.run(make(6))
    return make


@contextmanager
def idle_in_transaction(url: str, application: str = "report") -> Iterator[psycopg.Connection]:
    """A session that read "Lead" and sits idle in its transaction: it holds ACCESS SHARE until it ends."""
    conn = psycopg.connect(url, application_name=application)
    conn.execute('SELECT id FROM "Lead" LIMIT 1')
    try:
        yield conn
    finally:
        if not conn.closed:
            conn.rollback()
            conn.close()


class Background(threading.Thread):
    """A phase run in a thread, its result or error kept."""

    def __init__(self, call) -> None:
        super().__init__(daemon=True)
        self.call, self.result, self.error = call, None, None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.call()
        except BaseException as exc:  # the test reads it
            self.error = exc


def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def waiting_event(path: Path) -> bool:
    return any(e.kind == live.WAITING and not e.final for e in live.Tail(path).read())


def timed(url: str, sql: str, params=None) -> float:
    """How long one application statement took (autocommit), in seconds."""
    with psycopg.connect(url, autocommit=True, application_name="app") as conn:
        started = time.perf_counter()
        conn.execute(sql, params)
        return time.perf_counter() - started


def catalog_of_lead(url: str) -> list:
    with psycopg.connect(url) as conn:
        return (
            conn.execute(
                "SELECT conname, convalidated FROM pg_constraint WHERE conrelid = '\"Lead\"'::regclass ORDER BY 1"
            ).fetchall()
            + conn.execute(
                "SELECT attname, attnotnull FROM pg_attribute WHERE attrelid = '\"Lead\"'::regclass AND attnum > 0"
                " ORDER BY 1"
            ).fetchall()
        )


@pytest.mark.parametrize("strategy", ["direct", "online"])
def test_apply_waits_for_an_idle_transaction_without_queuing_and_names_it(
    session_for, crm_url: str, tmp_path: Path, strategy: str
) -> None:
    with idle_in_transaction(crm_url) as blocker, live.to_file(tmp_path / "live.jsonl") as events:
        pid = blocker.info.backend_pid
        # a lock_timeout of 3 s: had apply requested its ACCESS EXCLUSIVE, the application would queue for seconds
        run = Background(lambda: apply.run(session_for(7), strategy=strategy, lock_timeout_ms=3000))
        wait_for(lambda: waiting_event(events))
        # apply waits without requesting its ACCESS EXCLUSIVE: the application reads and writes "Lead" freely
        stalls = [timed(crm_url, INSERT, (f"app_{i}",)) for i in range(3)] + [
            timed(crm_url, 'SELECT * FROM "Lead" LIMIT 1')
        ]
        assert max(stalls) < 1.0, stalls
        time.sleep(0.3)
        assert run.is_alive() and not blocker.closed  # still waiting; never terminated without the option
        blocker.rollback()
        run.join(30)
    assert run.error is None, run.error
    result = run.result
    assert result.status == names.APPLIED
    assert not any(s.status == names.LOCK_TIMEOUT for s in result.statements)  # it never queued
    assert result.attempts == len(result.plan)  # one attempt per step
    waited = [w for w in result.blocker_waits if w.pid == pid]
    assert waited and waited[0].application == "report" and waited[0].state == "idle in transaction"
    assert waited[0].lock == "ACCESS SHARE on Lead" and waited[0].outcome == "ended" and waited[0].waited_s >= 0.3
    assert 'FROM "Lead"' in waited[0].query and result.terminated == [] and result.blocker_wait_s >= 0.3


def test_a_transaction_younger_than_the_threshold_is_not_a_blocker(session_for, crm_url: str) -> None:
    """A session busy in a young transaction is let finish: apply requests its lock and gets it after it."""
    busy = psycopg.connect(crm_url, application_name="short work")
    busy.execute('SELECT id FROM "Lead" LIMIT 1')
    work = Background(lambda: busy.execute("SELECT pg_sleep(0.4)") and busy.commit())
    try:
        result = apply.run(session_for(7), blocker_threshold_ms=10_000, lock_timeout_ms=3000)
    finally:
        work.join()
        busy.close()
    assert result.status == names.APPLIED and result.blocker_waits == []


def test_the_wait_budget_ends_in_a_clean_failure_naming_the_blocker(session_for, crm_url: str) -> None:
    before = catalog_of_lead(crm_url)
    session = session_for(7)
    with idle_in_transaction(crm_url) as blocker:
        pid = blocker.info.backend_pid
        started = time.perf_counter()
        with pytest.raises(
            MigrationFailed,
            match=rf"waited \d\.\d s \(--wait-for-blockers 0.4\) for session {pid} "
            r"\(report, idle in transaction\).*holding ACCESS SHARE on Lead",
        ):
            apply.run(session, wait_for_blockers_s=0.4)
        assert time.perf_counter() - started < 5
    assert catalog_of_lead(crm_url) == before
    with psycopg.connect(crm_url) as conn:
        status, message = conn.execute(
            "SELECT status, message FROM runbook.phase_run WHERE batch = 7 AND phase = 'apply' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert status == "failed" and f"session {pid}" in message and "--wait-for-blockers" in message
    record = session.run.read(names.APPLY, ExecutionResult)
    assert [w.outcome for w in record.blocker_waits if w.pid == pid] == ["budget spent"]


def test_rollback_waits_for_blockers_the_same_way(session_for, crm_url: str) -> None:
    apply.run(session_for(7))
    with (
        idle_in_transaction(crm_url) as blocker,
        pytest.raises(MigrationFailed, match=rf"for session {blocker.info.backend_pid} \(report"),
    ):
        rollback.run(session_for(7), wait_for_blockers_s=0.3)


def test_the_guard_cancels_a_request_the_application_queues_behind(session_for, crm_url: str) -> None:
    """A blocker the look missed (here: young by a high threshold, and busy) makes apply's request wait; the
    moment an application INSERT queues behind that request, the guard cancels it, long before lock_timeout."""
    holder = psycopg.connect(crm_url, application_name="late blocker")
    holder.execute('SELECT id FROM "Lead" LIMIT 1')
    hold = Background(lambda: holder.execute("SELECT pg_sleep(1.2)") and holder.commit())
    run = Background(lambda: apply.run(session_for(7), blocker_threshold_ms=60_000, lock_timeout_ms=5000))
    try:
        with psycopg.connect(crm_url, autocommit=True) as watch:
            wait_for(
                lambda: (
                    watch.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE"
                        " 'runbook apply%%' AND wait_event_type = 'Lock'"
                    ).fetchone()[0]
                    > 0
                )
            )
        queued = timed(crm_url, INSERT, ("queued_app",))
    finally:
        hold.join()
        holder.close()
        run.join(30)
    assert queued < 0.5, f"the application queued {queued:.3f} s behind apply's request (lock_timeout 5 s)"
    assert run.error is None, run.error
    result = run.result
    assert result.status == names.APPLIED and result.guard_cancels >= 1
    assert any(s.error.startswith("cancelled by runbook's guard: session") for s in result.statements)


def test_terminate_blockers_after_ends_an_idle_session_and_records_who(session_for, crm_url: str) -> None:
    session = session_for(7)
    with idle_in_transaction(crm_url) as blocker:
        pid = blocker.info.backend_pid
        result = apply.run(session, terminate_blockers_after_s=0.2)
        with pytest.raises(psycopg.OperationalError):
            blocker.execute("SELECT 1")
    assert result.status == names.APPLIED
    [gone] = result.terminated
    assert (gone.pid, gone.application, gone.user) == (pid, "report", gone.user) and gone.user
    assert 'FROM "Lead"' in gone.query and gone.since and gone.waited_s >= 0.2
    with psycopg.connect(crm_url) as conn:
        terminated, message = conn.execute(
            "SELECT terminated, message FROM runbook.phase_run WHERE batch = 7"
            " AND phase = 'apply' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert [t["pid"] for t in terminated] == [pid] and terminated[0]["application"] == "report"
    assert f"terminated session {pid}" in message
    # the headline and the record (--format json carries it as written) say it too
    assert any(
        line.strip().startswith(f"step 1: terminated session {pid} (report")
        for line in terminal.execution_lines(result)
    )
    assert session.run.read_data(names.APPLY)["blocker_waits"][0]["outcome"] == "terminated"


def test_apply_in_a_run_relies_on_its_preflight_and_refuses_another_checksum(
    session_for, crm_url: str, migrations: Path, monkeypatch
) -> None:
    session = session_for(7, migrations)
    preflight.run(session)  # GO: no NULL customer_id once batch 6 is applied
    with psycopg.connect(crm_url) as conn:  # data the gates would refuse, after preflight passed
        conn.execute("INSERT INTO \"Lead\" (id, channel, name, updated_at) VALUES ('orphan', 'web', 'x', now())")
    evaluated = []
    real_evaluate = preflight.evaluate  # observed, not replaced: it still runs against the server
    monkeypatch.setattr(preflight, "evaluate", lambda *a, **k: evaluated.append(1) or real_evaluate(*a, **k))
    # the same migration.sql: apply relies on preflight.json and does not scan again; the DDL still protects
    same = open_session(7, database_url=crm_url, migrations_dir=migrations, run_dir=session.run.path)
    with pytest.raises(MigrationFailed, match="23502"):
        apply.run(same)
    assert evaluated == []
    assert same.run.read(names.APPLY, ExecutionResult).gates_from.startswith("preflight.json of this run (GO")
    # another migration.sql than preflight judged: apply evaluates the gates again, and refuses
    sql = migrations / "007_tighten_constraints" / "migration.sql"
    sql.write_text(sql.read_text() + "\n-- changed after preflight\n")
    changed = open_session(7, database_url=crm_url, migrations_dir=migrations, run_dir=session.run.path)
    with pytest.raises(PreflightFailed, match="NO-GO"):
        apply.run(changed)
    assert evaluated == [1]
