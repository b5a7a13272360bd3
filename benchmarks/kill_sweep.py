"""Exactly once, whatever is killed when: a non-increasing migration applied by a child process that is
SIGKILLed at a named point or a random moment, then applied again; the counter must have moved once.

The migration is not idempotent on purpose (`UPDATE counter SET n = n + 1`, an INSERT into `log`): a
rerun that repeats a committed step, or a record that says applied when nothing committed, shows.
`tests/phases/test_exactly_once.py` runs a few points of this; `python benchmarks/kill_sweep.py --points 60`
runs many (results in benchmarks/results/kill_sweep.json, summarised in RESULTS.md by report.py).

The child is forked from this process (runbook already imported, so a point costs the migration, not
Python's start-up) and killed with SIGKILL: no finally, no atexit, its connections simply end.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from common import DEFAULT_STATE, RESULTS_DIR, header, server_url  # first: it puts the checkout on sys.path
from psycopg import conninfo

from runbook_lib.db import ledger
from runbook_lib.errors import MigrationFailed
from runbook_lib.execution import executor
from runbook_lib.execution.session import open_session
from runbook_lib.layouts import prisma
from runbook_lib.phases import apply

DIRECT_SQL = """\
UPDATE counter SET n = n + 1;
SELECT pg_sleep(0.2);
INSERT INTO log VALUES (1, 'applied');
"""
# online: step 1 the UPDATE, steps 2-4 a's SET NOT NULL, steps 5-7 b's, step 8 the INSERT
ONLINE_SQL = """\
UPDATE counter SET n = n + 1;
ALTER TABLE item ALTER COLUMN a SET NOT NULL;
ALTER TABLE item ALTER COLUMN b SET NOT NULL;
INSERT INTO log VALUES (1, 'applied');
"""
# step 1 outside a transaction (it cannot commit with its ledger progress), step 2 the rest
CONCURRENT_SQL = """\
CREATE INDEX CONCURRENTLY item_a_idx ON item (a);
UPDATE counter SET n = n + 1;
INSERT INTO log VALUES (1, 'applied');
"""
SCENARIOS = {
    "direct": (DIRECT_SQL, "direct"),
    "online": (ONLINE_SQL, "online"),
    "concurrent": (CONCURRENT_SQL, "direct"),
}
# release: migrations 1-3 of one folder applied by `open_session("pending")`, each its own transaction;
# migration k adds one to the counter and writes log row k
RELEASE_SIZE = 3
RELEASE_SQL = """\
UPDATE counter SET n = n + 1;
SELECT pg_sleep(0.1);
INSERT INTO log VALUES ({k}, 'applied');
"""
RELEASE = "release"
# restart: the direct migration applied in this process on a server of its own, stopped at a random
# moment by another thread and started again (no process is killed: the server goes away under it)
RESTART = "restart"


@dataclass(frozen=True)
class Point:
    """Where the child is killed: `kind` is none | before_lock | in_statement | after_commit | before_commit |
    at_offset | terminate (pg_terminate_backend of an in-process apply's connection, no child) | stop_at
    (scenario restart: the server stopped at offset_s and started again, no child)."""

    scenario: str
    kind: str
    step: int = 0
    offset_s: float = 0.0
    nth: int = 1  # pause the nth time the hook sees `step` (a release: step 1 of its nth migration)

    @property
    def name(self) -> str:
        where = (
            f" step {self.step}"
            if self.step
            else f" {self.offset_s:.3f} s"
            if self.kind in ("at_offset", "stop_at")
            else ""
        )
        return f"{self.scenario}: {self.kind}{where}" + (f" of migration {self.nth}" if self.nth > 1 else "")

    @property
    def migrations(self) -> int:
        return RELEASE_SIZE if self.scenario == RELEASE else 1


@dataclass
class Outcome:
    point: str
    killed: bool  # False when the child finished before the kill (a late random offset)
    counter: int
    log_rows: int
    applied: bool
    prisma_finished: int
    prisma_failed: int
    advisory_locks: int
    running_rows: int
    extra: list[str] = field(default_factory=list)  # scenario checks that failed
    migrations: int = 1  # how many the point applies: counter, log rows and Prisma rows must all say this

    @property
    def exactly_once(self) -> bool:
        n = self.migrations
        return (
            self.counter == n
            and self.log_rows == n
            and self.applied
            and self.prisma_finished == n
            and not self.prisma_failed
            and not self.advisory_locks
            and not self.running_rows
            and not self.extra
        )


def prepare(url: str, root: Path, scenario: str) -> Path:
    """The tables the migration changes, Prisma's table, and the batch folder; returns the migrations folder."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE counter (n int NOT NULL); INSERT INTO counter VALUES (0);"
            " CREATE TABLE log (id int, note text);"
            " CREATE TABLE item (id int PRIMARY KEY, a int, b int);"
            " INSERT INTO item SELECT g, g, g FROM generate_series(1, 200) g"
        )
        conn.execute(prisma.DDL)
    if scenario == RELEASE:
        for k in range(1, RELEASE_SIZE + 1):
            folder = root / "migrations" / f"{k:03d}_step{k}"
            folder.mkdir(parents=True)
            (folder / "migration.sql").write_text(RELEASE_SQL.format(k=k))
        return root / "migrations"
    folder = root / "migrations" / "001_once"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text(textwrap.dedent(SCENARIOS[scenario if scenario != RESTART else "direct"][0]))
    return root / "migrations"


def _apply(url: str, migrations: Path, reports: Path, strategy: str):
    """One migration (batch 1), or with strategy 'release' every pending one (a new run folder each call)."""
    if strategy == RELEASE:
        return apply.run(
            open_session("pending", database_url=url, migrations_dir=migrations, reports_dir=reports),
            lock_timeout_ms=1000,
            max_attempts=20,
        )
    return apply.run(
        open_session(1, database_url=url, migrations_dir=migrations, reports_dir=reports),
        strategy=strategy,
        lock_timeout_ms=1000,
        max_attempts=20,
    )


def _strategy(scenario: str) -> str:
    return RELEASE if scenario == RELEASE else SCENARIOS["direct" if scenario == RESTART else scenario][1]


def _child(url: str, migrations: Path, reports: Path, point: Point, tell) -> None:
    """In the forked child: arrange the pause the point names, tell the parent when it is there, apply."""
    seen = [0]

    def pause(step: int = 0) -> None:
        if step == point.step:
            seen[0] += 1
            if seen[0] == point.nth:
                tell.send("pause")
                time.sleep(60)

    if point.kind == "after_commit":
        executor.AFTER_STEP_HOOKS.append(pause)
    elif point.kind == "before_commit":
        executor.BEFORE_COMMIT_HOOKS.append(pause)
    elif point.kind == "before_lock":
        locked = apply.migration_lock

        def late_lock(conn):
            pause()
            return locked(conn)

        apply.migration_lock = late_lock
    try:
        _apply(url, migrations, reports, _strategy(point.scenario))
    finally:
        tell.send("done")


def _wait_for_sleep(url: str, child: multiprocessing.Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline and child.is_alive():
            if conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%%'"
                " AND state = 'active' AND datname = current_database()"
            ).fetchone():
                return
            time.sleep(0.01)
    raise AssertionError("the child never reached its pg_sleep")


def _wait_quiet(url: str, timeout: float = 30.0) -> None:
    """Until the killed child's backends are gone (one mid-statement ends when the statement does)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'runbook%%'"
        ).fetchone()[0]:
            if time.monotonic() > deadline:
                raise AssertionError("the killed child's backends are still there")
            time.sleep(0.02)


def _terminate_mid_statement(url: str, migrations: Path, reports: Path, strategy: str) -> bool:
    """pg_terminate_backend of an in-process apply's connection during its pg_sleep; True when it failed so."""

    def terminate() -> None:
        deadline = time.monotonic() + 30
        with psycopg.connect(url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%%'"
                    " AND state = 'active' AND datname = current_database()"
                ).fetchone()
                if row:
                    conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    return
                time.sleep(0.01)

    killer = threading.Thread(target=terminate)
    killer.start()
    try:
        _apply(url, migrations, reports, strategy)
        return False
    except MigrationFailed:
        return True
    finally:
        killer.join()


def kill_child(url: str, migrations: Path, reports: Path, point: Point) -> bool:
    """Fork a child applying the batch, SIGKILL it at `point`, wait until its backends are gone.

    True when it was killed mid-run, False when it had finished (a late random offset, or kind none).
    """
    ctx = multiprocessing.get_context("fork")
    hear, tell = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(url, migrations, reports, point, tell), daemon=True)
    child.start()
    tell.close()
    if point.kind == "in_statement":
        _wait_for_sleep(url, child)
    elif point.kind == "at_offset":
        hear.poll(point.offset_s)
    elif point.kind != "none":
        assert hear.poll(60) and hear.recv() == "pause", f"{point.name}: the child never reached its pause"
    else:
        child.join(60)
    killed = child.is_alive() and not hear.poll(0)
    if child.exitcode is None:
        os.kill(child.pid, signal.SIGKILL)
    child.join()
    hear.close()
    _wait_quiet(url)
    return killed


def kill_at(url: str, root: Path, point: Point) -> Outcome:
    """Apply in a child killed at `point` (or terminated), apply again here, and read what the database holds."""
    migrations, reports = prepare(url, root, point.scenario), root / "reports"
    strategy = _strategy(point.scenario)
    if point.kind == "terminate":
        killed = _terminate_mid_statement(url, migrations, reports, strategy)
    else:
        killed = kill_child(url, migrations, reports, point)
    _rerun(url, migrations, reports, strategy)
    return observe(url, point, killed)


def _rerun(url: str, migrations: Path, reports: Path, strategy: str) -> None:
    result = _apply(url, migrations, reports, strategy)
    if strategy == RELEASE:  # a ReleaseApply: no status of its own, one result per migration it applied
        assert all(r.status in ("applied", "already applied") for r in result.results), result.message
    else:
        assert result.status in ("applied", "already applied"), result.message


def restart_at(state: Path, make_url, root: Path, point: Point) -> Outcome:
    """Apply the direct migration here while another thread stops the server (under `state`) at
    `point.offset_s` and starts it again; then apply again and read what the database holds.

    `make_url()` makes a fresh database on that server; `killed` says the first apply did not succeed.
    """
    from runbook_lib.db import embedded  # here: only this scenario needs it

    url = make_url()
    migrations, reports = prepare(url, root, RESTART), root / "reports"

    def stop_later() -> None:
        time.sleep(point.offset_s)
        embedded.stop(state)

    stopper = threading.Thread(target=stop_later)
    stopper.start()
    killed = False
    try:
        result = _apply(url, migrations, reports, "direct")
        killed = result.status not in ("applied", "already applied")
    except Exception:  # whatever the server's going away raised: the rerun must cope
        killed = True
    finally:
        stopper.join()
        embedded.start(state, stop_at_exit=False)
    _rerun(url, migrations, reports, "direct")
    return observe(url, point, killed)


def observe(url: str, point: Point, killed: bool) -> Outcome:
    with psycopg.connect(url) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        extra = []
        if point.scenario == "online":
            if (
                one("SELECT count(*) FROM information_schema.columns WHERE table_name = 'item' AND is_nullable = 'NO'")
                != 3
            ):
                extra.append("item.a or item.b still nullable")
            if one("SELECT count(*) FROM pg_constraint WHERE conrelid = 'item'::regclass AND contype = 'c'"):
                extra.append("a CHECK of the online strategy left behind")
        n = point.migrations
        if one("SELECT count(DISTINCT id) FROM log") != n:
            extra.append(f"log ids: {[r[0] for r in conn.execute('SELECT id FROM log ORDER BY id')]}")
        if point.scenario == "concurrent" and not one(
            "SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('item_a_idx')), false)"
        ):
            extra.append("item_a_idx missing or invalid")
        return Outcome(
            point.name,
            killed,
            counter=one("SELECT n FROM counter"),
            log_rows=one("SELECT count(*) FROM log"),
            applied=all(ledger.state(conn, k).applied for k in range(1, n + 1)),
            prisma_finished=one(
                "SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL"
            ),
            prisma_failed=one(
                "SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NULL AND rolled_back_at IS NULL"
            ),
            advisory_locks=one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"  # this database's only
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            running_rows=one("SELECT count(*) FROM runbook.phase_run WHERE status = 'running'"),
            extra=extra,
            migrations=n,
        )


OWNER_ROLE = "rb_kill_owner"  # --as-owner: the role that owns each database of the sweep, not a superuser


def ensure_owner_role(server: str) -> None:
    """The sweep's owner role, once per server (roles belong to the cluster)."""
    with psycopg.connect(server, autocommit=True) as conn:
        if not conn.execute("SELECT FROM pg_roles WHERE rolname = %s", (OWNER_ROLE,)).fetchone():
            conn.execute(f'CREATE ROLE "{OWNER_ROLE}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')


def named_points() -> list[Point]:
    """Every named point: the gaps the ledger used to leave, and the moments around them."""
    return [
        Point("direct", "before_lock"),
        Point("direct", "in_statement"),
        Point("direct", "before_commit", step=1),  # ledger and Prisma written, COMMIT not sent
        Point("direct", "after_commit", step=1),  # committed, where the old ledger write came after
        Point("direct", "terminate"),
        Point("online", "after_commit", step=3),  # mid-group: a's CHECK validated, SET NOT NULL not yet
        Point("online", "before_commit", step=8),
        Point("concurrent", "before_commit", step=1),  # index built, its progress not committed
    ]


def release_points() -> list[Point]:
    """The release's named points: between migrations (1 committed, 2 not begun), mid-migration 2."""
    return [
        Point(RELEASE, "after_commit", step=1),  # migration 1 committed, its successors not begun
        Point(RELEASE, "before_commit", step=1, nth=2),  # migration 2's records written, COMMIT not sent
        Point(RELEASE, "after_commit", step=1, nth=3),  # all 3 committed, the release not yet returned
    ]


def random_points(count: int, span_s: float, seed: int, scenarios: tuple[str, ...] = ("direct",)) -> list[Point]:
    rng = random.Random(seed)
    return [
        Point(scenarios[i % len(scenarios)], "at_offset", offset_s=round(rng.uniform(0, span_s), 3))
        for i in range(count)
    ]


def restart_points(count: int, span_s: float, seed: int) -> list[Point]:
    rng = random.Random(seed)
    return [Point(RESTART, "stop_at", offset_s=round(rng.uniform(0, span_s), 3)) for _ in range(count)]


def restart_baseline_s(make_url, root: Path) -> float:
    """How long an undisturbed in-process apply takes on the restart scenario's server."""
    url = make_url()
    migrations = prepare(url, root, RESTART)
    start = time.perf_counter()
    _rerun(url, migrations, root / "reports", "direct")
    took = time.perf_counter() - start
    outcome = observe(url, Point(RESTART, "none"), killed=False)
    assert outcome.exactly_once, outcome
    return took


def restart_sweep(root: Path, count: int, seed: int, record) -> float:
    """`count` restart points on a server of its own under `root`, each on a new database; its baseline."""
    import uuid

    from runbook_lib.db import embedded
    from runbook_lib.db.connection import with_database

    state = root / "own-server"
    admin = with_database(embedded.start(state, stop_at_exit=False).url, "postgres")

    def make_url() -> str:
        name = f"restart_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return with_database(admin, name)

    try:
        span = restart_baseline_s(make_url, root / "baseline")
        for n, point in enumerate(restart_points(count, span * 1.1, seed)):
            record(point, lambda n=n, point=point: restart_at(state, make_url, root / str(n), point))
    finally:
        embedded.stop(state)
    return span


def baseline_s(make_url, root: Path, scenario: str) -> float:
    """How long an unkilled child takes to apply (fork to exit): the span random offsets are drawn from."""
    url, point = make_url(), Point(scenario, "none")
    migrations = prepare(url, root, scenario)
    start = time.perf_counter()
    kill_child(url, migrations, root / "reports", point)
    took = time.perf_counter() - start
    outcome = observe(url, point, killed=False)
    assert outcome.exactly_once, outcome
    return took


def main(argv: list[str] | None = None) -> int:
    """`--points N`: the named points, then random offsets up to N in all, each on a database of its own;
    then `--release-points` random kills of a release and `--restart-points` server restarts (its own server)."""
    import argparse  # here, not at the top: the suite imports this module and never parses arguments
    import json
    import shutil
    import tempfile
    import uuid

    from runbook_lib.db.connection import with_database

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=60)
    parser.add_argument("--release-points", type=int, default=20, help="random moments in a 3-migration release")
    parser.add_argument("--restart-points", type=int, default=10, help="server stops at random moments")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--as-owner",
        action="store_true",
        help=f"migrate as {OWNER_ROLE}, a role that owns each database and is no superuser (the "
        "server restarts are left out: the superuser's business)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: results/kill_sweep.json (--as-owner: results/kill_sweep_owner.json)",
    )
    args = parser.parse_args(argv)
    args.out = args.out or RESULTS_DIR / ("kill_sweep_owner.json" if args.as_owner else "kill_sweep.json")
    server = server_url(args.database_url, DEFAULT_STATE)
    created: list[str] = []
    if args.as_owner:
        ensure_owner_role(server)
        args.restart_points = 0

    def make_url() -> str:
        name = f"kill_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' OWNER "{OWNER_ROLE}"' if args.as_owner else ""))
        created.append(name)
        url = with_database(server, name)
        return conninfo.make_conninfo(url, user=OWNER_ROLE) if args.as_owner else url

    work = Path(tempfile.mkdtemp(prefix="kill-sweep-"))
    started = time.perf_counter()
    try:
        spans = {s: baseline_s(make_url, work / s, s) for s in (*SCENARIOS, RELEASE)}
        points = named_points()
        left = max(args.points - len(points), 0)
        for i, scenario in enumerate(SCENARIOS):
            share = left // len(SCENARIOS) + (1 if i < left % len(SCENARIOS) else 0)
            points += random_points(share, spans[scenario] * 1.1, args.seed + i, (scenario,))
        points += release_points()
        points += random_points(args.release_points, spans[RELEASE] * 1.1, args.seed + len(SCENARIOS), (RELEASE,))
        outcomes = []

        def record(point: Point, measure) -> None:
            try:
                outcomes.append(measure())
            except Exception as exc:  # a sweep reports every point, a crash included
                outcomes.append(
                    Outcome(
                        point.name,
                        True,
                        -1,
                        -1,
                        False,
                        -1,
                        -1,
                        -1,
                        -1,
                        [f"error: {type(exc).__name__}: {str(exc).splitlines()[0]}"],
                        point.migrations,
                    )
                )
            print(("ok    " if outcomes[-1].exactly_once else "FAIL  ") + point.name, flush=True)

        for n, point in enumerate(points):
            record(point, lambda n=n, point=point: kill_at(make_url(), work / str(n), point))
        if args.restart_points:
            spans[RESTART] = restart_sweep(work / "restart", args.restart_points, args.seed, record)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            for name in created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)
    report = header("kill_sweep", argv, server) | {
        "role": f"{OWNER_ROLE}: owns each database, not a superuser" if args.as_owner else "the server's superuser",
        "seed": args.seed,
        "baseline_s": spans,
        "took_s": round(time.perf_counter() - started, 1),
        "points": [o.__dict__ | {"exactly_once": o.exactly_once} for o in outcomes],
    }
    args.out.write_text(json.dumps(report, indent=2, default=str))
    bad = [o for o in outcomes if not o.exactly_once]
    print(
        f"{len(outcomes)} points, {len(outcomes) - len(bad)} exactly once, "
        f"{sum(o.killed for o in outcomes)} killed mid-run; {args.out}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    import sys  # here: only the command line needs it

    sys.exit(main())
