"""Applying batch 7 as the schema's owner role, not a superuser, behind the application's idle transaction.

A role without pg_read_all_stats sees other roles' sessions in pg_stat_activity with their state, transaction
start and query hidden; runbook's look before it queues (execution/blockers.py) then judges a session by
pg_locks alone (the same transaction holding its conflicting lock across looks that span the blocker
threshold), and its live guard (execution/guard.py) reads pg_locks and pg_blocking_pids only.

For each size (the example CRM at N leads, loaded by the owner role, batch 6 applied by it, frozen), the
workload of benchmarks/workload.py runs as the APPLICATION's role (`app`: a login role with SELECT, INSERT,
UPDATE, DELETE on the tables and nothing else) while, behind an idle transaction of that same role (a session
that reads "Lead" and stays idle in transaction for --idle-seconds, 8 s, started just before the apply),
batch 7 is applied with `runbook_lib.phases.apply.run(open_session(7, ...))` (as `runbook apply 7`: no
preflight record in the run folder, so apply evaluates the gates itself) by
  (a) the superuser (postgres), as before;
  (b) the owner role (`mig`): owns the database, the public schema and the example's tables; not a superuser,
      no pg_read_all_stats, no pg_signal_backend;
each with the strategies in --strategies (direct: `runbook apply 7`'s default, one transaction; online: short
steps, the strategy the 20 ms target of section 1 is about), then
  (c) no migration: the workload and the idle transaction alone, as long as the last owner-role apply took
      (the disk's own flush stalls are not the migration's).
The cases run interleaved, their order rotated from run to run; each apply is followed by
`runbook_lib.phases.rollback.run` as the same role, the workload's rows are deleted, VACUUM ANALYZE, and the
catalog compared with the state before, so every run starts from the same state.

    python benchmarks/owner_role.py                                   # 100k and 1M leads, 3 runs
    python benchmarks/owner_role.py --sizes 10k --runs 1              # a quick look
    python benchmarks/owner_role.py --state-dir /dev/shm/runbook-bench-memory-$(id -u) \
        --out benchmarks/results/owner_role_memory.json               # the server's data on tmpfs

Writes benchmarks/results/owner_role.json (every run, medians with min and max, how it was measured);
benchmarks/report.py turns it into section 9 of RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import common  # puts the project on sys.path
import lock_impact  # the same database state checks, checkpoint and apply call as section 1
import psycopg
import workload
from common import DEFAULT_STATE, RESULTS_DIR, header, parse_size, server_url, size_label, spread
from psycopg import conninfo, sql

from runbook_lib.config import DEFAULTS, MAX_BACKOFF_S
from runbook_lib.db import connection as database
from runbook_lib.db import example
from runbook_lib.execution import live
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply
from runbook_lib.report.records import ExecutionResult

ROLES = ("superuser", "owner")
STRATEGIES = ("direct", "online")
MARKER = "runbook owner_role v1: example leads={leads} loaded by {owner}, batch 6 applied, frozen"
LABEL = {"superuser": "(a) superuser", "owner": "(b) owner role", "none": "(c) no migration"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- roles and the database --------------------------------------------------------------------------


def ensure_roles(server: str, owner: str, app: str) -> dict:
    """The two login roles (cluster-wide: created when absent); what each may do, as recorded."""
    with database.connect(server, autocommit=True) as conn:
        for role in (owner, app):
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        facts = {}
        for role in (owner, app):
            row = conn.execute(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls,"
                " pg_has_role(%(r)s, 'pg_read_all_stats', 'MEMBER'), pg_has_role(%(r)s, 'pg_signal_backend', 'MEMBER'),"
                " pg_has_role(%(r)s, 'pg_monitor', 'MEMBER') FROM pg_roles WHERE rolname = %(r)s",
                {"r": role},
            ).fetchone()
            facts[role] = dict(
                zip(
                    (
                        "superuser",
                        "createrole",
                        "createdb",
                        "bypassrls",
                        "pg_read_all_stats",
                        "pg_signal_backend",
                        "pg_monitor",
                    ),
                    row,
                    strict=True,
                )
            )
    if any(facts[owner][k] for k in ("superuser", "pg_read_all_stats", "pg_signal_backend", "pg_monitor")):
        raise SystemExit(
            f"The role {owner!r} is a superuser or may read all stats or signal backends: "
            f"{facts[owner]}; this benchmark is about a role that may not."
        )
    return facts


def as_role(url: str, role: str) -> str:
    return conninfo.make_conninfo(url, user=role)


def prepare(server: str, leads: int, *, owner: str, app: str, reload: bool, reports: Path) -> str:
    """The database of this size (owned by `owner`, loaded and migrated to batch 6 by it) before batch 7;
    reused from an earlier run when it is intact. Returns the superuser's URL of it."""
    name = f"bench_owner_{leads}"
    url = database.with_database(server, name)
    marker = MARKER.format(leads=leads, owner=owner)
    with database.connect(server, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(d.oid, 'pg_database'), pg_get_userbyid(d.datdba)"
            " FROM pg_database d WHERE datname = %s",
            (name,),
        ).fetchone()
    if row is not None and row[0] == marker and row[1] == owner and not reload:
        with database.connect(url, autocommit=True) as conn:
            workload.remove_inserted(conn)
        if lock_impact.is_before_7(url):
            grant(url, owner, app)
            log(f"{size_label(leads)}: reusing database {name}")
            return url
        log(f"{size_label(leads)}: database {name} is not at the state before batch 7; reloading it")
    started = time.monotonic()
    with database.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
    with database.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)))
    owner_url = as_role(url, owner)
    with database.connect(owner_url) as conn:
        loaded = example.load(conn, leads=leads)
        conn.commit()
    grant(url, owner, app)
    log(
        f"{size_label(leads)}: loaded {loaded.leads} leads, {loaded.jobs} jobs, {loaded.customers} customers "
        f"as {owner} in {loaded.seconds:.1f} s"
    )
    result = apply.run(open_session(6, database_url=owner_url, reports_dir=reports))
    log(f"{size_label(leads)}: batch 6 {result.status} as {owner} in {result.duration_s:.1f} s")
    with database.connect(url, autocommit=True) as conn:
        conn.execute('VACUUM (FREEZE, ANALYZE) "Customer", "Lead", "Job"')
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(marker)))
    log(f"{size_label(leads)}: ready in {time.monotonic() - started:.0f} s")
    return url


def grant(url: str, owner: str, app: str) -> None:
    """The application's privileges, granted by the owner: DML on every table in public, nothing else."""
    with database.connect(as_role(url, owner), autocommit=True) as conn:
        conn.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(
                sql.Identifier(app)
            )
        )


def ownership(url: str, owner: str) -> dict:
    """Who owns what the migration touches, and whether the owner role sees the application's sessions' state."""
    with database.connect(url) as conn:
        tables = dict(
            conn.execute(
                "SELECT relname, pg_get_userbyid(relowner) FROM pg_class"
                " WHERE relname IN ('Customer', 'Lead', 'Job') AND relkind = 'r'"
            ).fetchall()
        )
        db_owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]
        schema_owner = conn.execute(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'"
        ).fetchone()[0]
    return {"database": db_owner, "schema public": schema_owner, "tables": tables, "role": owner}


def hidden_from_owner(url: str, owner: str, app: str) -> dict:
    """What the owner role sees of an application session idle in transaction: pg_stat_activity and pg_locks."""
    with (
        psycopg.connect(as_role(url, app), application_name="bench visibility probe") as held,
        psycopg.connect(as_role(url, owner), autocommit=True) as look,
    ):
        held.execute('SELECT id FROM "Lead" LIMIT 1').fetchall()
        pid = held.info.backend_pid
        time.sleep(0.05)
        state, xact, query = look.execute(
            "SELECT state, xact_start, query FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        locks = look.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'relation'", (pid,)
        ).fetchone()[0]
        held.rollback()
    return {
        "state": state,
        "xact_start": xact.isoformat() if xact else None,
        "query": query,
        "relation_locks_in_pg_locks": locks,
    }


# -- the application's idle transaction --------------------------------------------------------------


class IdleTransaction:
    """A session of the application's role that reads "Lead" and sits idle in transaction for `hold_s`
    seconds from its start. A superuser watch connection polls pg_locks every 5 ms meanwhile for lock
    requests on "Lead" or "Job" not granted: who queued while it held (the migration, or the application
    behind a migration's pending request)."""

    def __init__(self, app_url: str, watch_url: str, hold_s: float) -> None:
        self.conn = psycopg.connect(app_url, application_name="bench idle transaction")
        self.watch = psycopg.connect(watch_url, autocommit=True, application_name="bench idle watch")
        self.hold_s = hold_s
        self.began = self.released = 0.0
        self.pid = 0
        self.queued: dict[str, float] = {}  # application_name -> longest seen waiting (s)
        self._thread: threading.Thread | None = None

    def begin(self) -> None:
        self.conn.execute('SELECT id FROM "Lead" LIMIT 1').fetchall()
        self.pid = self.conn.info.backend_pid
        self.began = time.monotonic()
        self._thread = threading.Thread(target=self._hold, daemon=True)
        self._thread.start()

    def _hold(self) -> None:
        first: dict[tuple[int, str], float] = {}
        while time.monotonic() < self.began + self.hold_s:
            rows = self.watch.execute(
                "SELECT l.pid, coalesce(a.application_name, '') FROM pg_locks l"
                " LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'relation' AND NOT l.granted"
                " AND l.relation IN ('\"Lead\"'::regclass, '\"Job\"'::regclass)"
            ).fetchall()
            now = time.monotonic()
            for pid, app_name in rows:
                since = first.setdefault((pid, app_name), now)
                self.queued[app_name] = max(self.queued.get(app_name, 0.0), now - since)
            time.sleep(0.005)
        self.conn.rollback()
        self.released = time.monotonic()

    def end(self) -> dict:
        if self._thread is not None:
            self._thread.join()
        self.conn.close()
        self.watch.close()
        return {
            "pid": self.pid,
            "held_s": round(self.released - self.began, 3),
            "queued_while_held": {k: round(v, 3) for k, v in sorted(self.queued.items())},
        }


# -- one measured run ----------------------------------------------------------------------------------


def apply_as(url: str, strategy: str, reports: Path, live_path: Path) -> tuple[dict, float, float]:
    """`runbook apply 7` as the role in `url`; what it did, and when the call started and ended."""
    session = lock_impact.runbook_session(url, reports, after_preflight=False)
    t0 = time.monotonic()
    applied = lock_impact.apply_runbook(session, strategy, live_path)
    t1 = time.monotonic()
    out = dataclasses.asdict(applied)
    out.pop("call_started", None)
    record = session.run.read("apply", ExecutionResult)
    if record is not None:
        out["steps"] = len(record.steps)
        out["retries"] = record.attempts - len(record.steps)  # attempts beyond one per step
        out["role"] = record.connection.user
        out["blocker_waits"] = [
            {
                "step": w.step,
                "pid": w.pid,
                "who": w.who,
                "user": w.user,
                "since": w.since,
                "lock": w.lock,
                "waited_s": w.waited_s,
                "outcome": w.outcome,
                "hidden": w.hidden,
            }
            for w in record.blocker_waits
        ]
    said = [e.text for e in live.Tail(live_path).read() if e.kind == live.WAITING] if live_path.exists() else []
    out["waiting_said"] = said[:2] + (said[-1:] if len(said) > 2 else [])  # what runbook told the operator
    return out, t0, t1


def over_20ms(ops: workload.Ops, t0: float, t1: float) -> int:
    return sum(1 for s, lat in zip(ops.started, ops.latency, strict=True) if lat > 0.020 and s <= t1 and s + lat >= t0)


def run_one(
    urls: dict,
    case: tuple[str, str | None],
    *,
    wl: workload.WorkloadProcess,
    reference: tuple,
    idle_s: float,
    baseline_s: float,
    args,
    reports: Path,
) -> dict:
    role, strategy = case
    url = urls["superuser"]
    if lock_impact.shape(url) != reference or not lock_impact.is_before_7(url):
        raise SystemExit(f"The database {database.redact(url)} is not at the state before batch 7; stopping.")
    lock_impact.checkpoint(url)
    live_path = reports / "live.jsonl"
    live_path.unlink(missing_ok=True)
    idle = IdleTransaction(urls["app"], url, idle_s)
    wl.start()
    time.sleep(args.warmup)
    idle.begin()
    if role == "none":
        t0 = time.monotonic()
        time.sleep(baseline_s)
        t1 = time.monotonic()
        applied = None
    else:
        applied, t0, t1 = apply_as(urls[role], strategy, reports, live_path)
    time.sleep(args.tail)
    held = idle.end()
    ops = wl.stop()
    during = workload.stats(ops, t0, t1)
    # from the idle transaction's end to the apply's: when the migration's own locks were taken (or, for (c),
    # the same stretch of the application alone); before it, runbook only looked at pg_locks and waited
    after_idle = workload.stats(ops, min(max(t0, idle.released), t1), t1)
    if applied is not None:
        lock_impact.undo(urls[role], strategy, lock_impact.Applied(applied["ok"], applied["wall_s"]), reports)
    lock_impact.cleanup(url)
    if lock_impact.shape(url) != reference:
        raise SystemExit(f"After rolling back the {role} {strategy} run the catalog differs from before; stopping.")
    return {
        "role": role,
        "strategy": strategy,
        "wall_s": round(t1 - t0, 3),
        "idle_transaction": held,
        "apply": applied,
        "during": dataclasses.asdict(during),
        "over_20ms": over_20ms(ops, t0, t1),
        "after_idle": dataclasses.asdict(after_idle),
        "after_idle_over_20ms": over_20ms(ops, min(max(t0, idle.released), t1), t1),
        "workload_ops_total": len(ops),
    }


def summarize(runs: list[dict]) -> list[dict]:
    order = [(r, s) for s in STRATEGIES for r in ROLES] + [("none", None)]
    rows = []
    for leads, role, strategy in sorted(
        {(r["leads"], r["role"], r["strategy"]) for r in runs}, key=lambda k: (k[0], order.index((k[1], k[2])))
    ):
        group = [r for r in runs if (r["leads"], r["role"], r["strategy"]) == (leads, role, strategy)]
        applies = [r["apply"] for r in group if r["apply"]]

        def of(key: str, applies: list[dict] = applies) -> dict:
            return spread([a.get(key) for a in applies])

        rows.append(
            {
                "leads": leads,
                "role": role,
                "strategy": strategy,
                "runs": len(group),
                "applies_failed": sum(1 for a in applies if not a["ok"]),
                "max_ms": spread([r["during"]["max_ms"] for r in group]),
                "p99_ms": spread([r["during"]["p99_ms"] for r in group]),
                "over_20ms": spread([r["over_20ms"] for r in group]),
                "after_idle_max_ms": spread([(r.get("after_idle") or {}).get("max_ms") for r in group]),
                "after_idle_over_20ms": spread([r.get("after_idle_over_20ms") for r in group]),
                "failed_ops": spread([r["during"]["failed"] for r in group]),
                "wall_s": spread([r["wall_s"] for r in group]),
                "attempts": of("attempts"),
                "retries": of("retries"),
                "blocker_wait_s": of("blocker_wait_s"),
                "guard_cancels": of("guard_cancels"),
                "write_block_ms": of("longest_write_block_ms"),
                "queued_behind_idle": sorted(
                    {name for r in group for name in r["idle_transaction"]["queued_while_held"]}
                ),
            }
        )
    return rows


def code_state() -> dict:
    """Which code was measured: the commit, and the files under runbook_lib/ changed on top of it (uncommitted
    work is measured as it was; each file's blob hash says which version)."""
    root = common.ROOT

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", *cmd], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "runbook_lib").splitlines() if line]
    return {
        "commit": git("rev-parse", "HEAD"),
        "uncommitted": {path: git("hash-object", path) for path in changed if (root / path).is_file()},
    }


def write(out: dict, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100k,1M", help="leads per size, comma-separated (k, M suffixes)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each case per size")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="some of direct,online")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=8.0,
        help="how long the application's idle transaction holds its lock, from just before the apply",
    )
    parser.add_argument("--owner-role", default="mig", help="the non-superuser role that owns the schema")
    parser.add_argument("--app-role", default="app", help="the application's role (DML only)")
    parser.add_argument("--connections", type=int, default=4, help="workload connections")
    parser.add_argument("--rate", type=float, default=50.0, help="operations per second per connection")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of workload before each apply")
    parser.add_argument("--tail", type=float, default=0.5, help="seconds of workload after each apply")
    parser.add_argument(
        "--server-url",
        help="a server to use, as a superuser (a database per size is created on "
        "it, and the roles when absent); default: an embedded PostgreSQL under --state-dir",
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    parser.add_argument("--reload", action="store_true", help="reload the databases even when intact")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "owner_role.json")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if unknown := [s for s in strategies if s not in STRATEGIES]:
        parser.error(f"unknown strategy {unknown[0]!r}")
    cases = [(role, strategy) for strategy in strategies for role in ROLES] + [("none", None)]

    server = server_url(args.server_url, args.state_dir)
    reports = args.state_dir / "reports-owner-role"
    shutil.rmtree(reports, ignore_errors=True)
    roles = ensure_roles(server, args.owner_role, args.app_role)
    config = workload.WorkloadConfig(connections=args.connections, rate_per_connection=args.rate, max_seconds=300)
    started = time.time()
    out = {
        **header("owner_role", argv, server),
        "state_dir": str(args.state_dir),
        "code": code_state(),
        "settings": {
            "sizes": sizes,
            "runs": args.runs,
            "strategies": strategies,
            "idle_seconds": args.idle_seconds,
            "owner_role": args.owner_role,
            "app_role": args.app_role,
            "roles": roles,
            "warmup_s": args.warmup,
            "tail_s": args.tail,
            "workload": dataclasses.asdict(config),
            "runbook_lock_timeout_ms": DEFAULTS.lock_timeout_ms,
            "runbook_max_attempts": DEFAULTS.max_attempts,
            "runbook_max_backoff_s": MAX_BACKOFF_S,
            "runbook_wait_for_blockers_s": DEFAULTS.wait_for_blockers_s,
            "runbook_blocker_threshold_ms": DEFAULTS.blocker_threshold_ms,
            "apply": "runbook_lib.phases.apply.run(open_session(7, ...), strategy=...) with no preflight "
            "record in the run folder (as `runbook apply 7`); rollback.run as the same role",
        },
        "sizes": [],
        "runs": [],
    }
    for leads in sizes:
        url = prepare(server, leads, owner=args.owner_role, app=args.app_role, reload=args.reload, reports=reports)
        urls = {"superuser": url, "owner": as_role(url, args.owner_role), "app": as_role(url, args.app_role)}
        with database.connect(url) as conn:
            counts = conn.execute(
                'SELECT (SELECT count(*) FROM "Lead"), (SELECT count(*) FROM "Job"),'
                ' (SELECT count(*) FROM "Customer"),'
                " pg_total_relation_size('\"Lead\"'), pg_total_relation_size('\"Job\"')"
            ).fetchone()
        out["sizes"].append(
            {
                "leads": counts[0],
                "jobs": counts[1],
                "customers": counts[2],
                "lead_bytes": counts[3],
                "job_bytes": counts[4],
                "requested": leads,
                "owners": ownership(url, args.owner_role),
                "owner_sees_of_app_idle_session": hidden_from_owner(url, args.owner_role, args.app_role),
            }
        )
        reference = lock_impact.shape(url)
        pools = workload.sample_pools(urls["app"])
        baseline_s = args.idle_seconds + 0.5  # until an owner-role apply has run: then as long as the last one
        with workload.WorkloadProcess(urls["app"], pools, config) as wl:
            for run in range(args.runs):
                order = cases[run % len(cases) :] + cases[: run % len(cases)]
                for case in order:
                    result = run_one(
                        urls,
                        case,
                        wl=wl,
                        reference=reference,
                        idle_s=args.idle_seconds,
                        baseline_s=baseline_s,
                        args=args,
                        reports=reports,
                    )
                    result.update(leads=leads, run=run + 1)
                    out["runs"].append(result)
                    if case[0] == "owner":
                        baseline_s = result["wall_s"]
                    a, d = result["apply"], result["during"]
                    log(
                        f"{size_label(leads)} run {run + 1} {case[0]:<9} {case[1] or '':<6} "
                        + (
                            f"apply {'ok' if a['ok'] else 'FAILED'} {a['wall_s']:.2f} s, attempts {a['attempts']}, "
                            f"waited for blockers {a['blocker_wait_s']} s, guard cancels {a['guard_cancels']}, "
                            if a
                            else f"no migration {result['wall_s']:.2f} s, "
                        )
                        + f"stall max {d['max_ms']:.1f} ms, over 20 ms {result['over_20ms']}, failed ops "
                        f"{d['failed']}, after the idle transaction ended {result['after_idle']['max_ms']:.1f} ms"
                        + (
                            f" [queued behind the idle transaction: {result['idle_transaction']['queued_while_held']}]"
                            if result["idle_transaction"]["queued_while_held"]
                            else ""
                        )
                        + (f" [lock timeouts: {'; '.join(a['lock_timeouts'])}]" if a and a["lock_timeouts"] else "")
                        + (f" [{a['message'][:400]}]" if a and a["message"] else "")
                        + (f" [errors: {'; '.join(d['errors'][:2])}]" if d["errors"] else "")
                    )
        out["summary"] = summarize(out["runs"])
        write(out, args.out)  # after each size: a long run keeps what it measured
    out["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out["elapsed_s"] = round(time.time() - started, 1)
    out["summary"] = summarize(out["runs"])
    write(out, args.out)
    log(f"wrote {args.out} ({out['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
