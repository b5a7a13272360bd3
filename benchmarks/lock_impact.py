"""What applying batch 7 does to an application that keeps running: psql -1 -f versus runbook direct and online.

For each size (the example CRM at N leads, batch 6 applied, so batch 7 is GO), a steady workload
(runbook_lib.workload, in a process of its own: inserts and updates into "Lead" and "Job", reads by
id) runs while batch 7 is applied by
  (a) psql -X -q -v ON_ERROR_STOP=1 -1 -f migration.sql   (the reference document's way)
  (b) runbook_lib.phases.apply.run(session, strategy="direct")   (lock_timeout 200 ms, 10 attempts: the defaults)
  (c) runbook_lib.phases.apply.run(session, strategy="online")
each without and with a blocker (a session idle in transaction after reading "Lead", started just
before the apply and held --blocker-seconds). runbook's apply runs as `runbook run` runs it: after
preflight in the same run folder (not timed), so it relies on preflight's gates (--apply-alone: without).
After each apply batch 7 is rolled back the same way it was applied (psql -1 -f rollback.sql, or runbook
rollback), the workload's rows are deleted, and the catalog is compared with the state before, so every run
starts from the same state.
The three methods run interleaved in one session, their order rotated from run to run.

    python benchmarks/lock_impact.py                       # 100k, 1M, 5M leads, 3 runs each
    python benchmarks/lock_impact.py --sizes 10k --runs 1  # a quick look

Writes benchmarks/results/lock_impact.json (every run, and medians with min and max);
benchmarks/report.py turns it into RESULTS.md and the plot.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import common  # noqa: F401  (puts the project on sys.path)
import psycopg
import workload  # benchmarks/workload.py: the application load the benchmarks run
from common import (
    DEFAULT_STATE,
    RESULTS_DIR,
    header,
    parse_size,
    psql_binary,
    server_url,
    size_label,
    spread,
)
from psycopg import sql

from runbook_lib import config
from runbook_lib.config import DEFAULTS, MAX_BACKOFF_S
from runbook_lib.db import catalog, example, ledger
from runbook_lib.db import connection as database
from runbook_lib.errors import RunbookError
from runbook_lib.execution import live
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, preflight, rollback
from runbook_lib.report.records import ExecutionResult

METHODS = ("psql", "direct", "online")
TABLES = ["Customer", "Lead", "Job"]
BATCH7 = config.example_migrations_dir() / "007_tighten_constraints"
MARKER = "runbook lock_impact v1: example leads={leads}, batch 6 applied, frozen"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the database at each size ---------------------------------------------------------------------


def shape(url: str) -> tuple:
    """The catalog of the three tables without sizes or row counts: what must be equal between runs."""
    with database.connect(url) as conn:
        snap = catalog.snapshot(conn, TABLES, count_rows=False)
    return tuple(dataclasses.replace(t, bytes=0) for t in snap.tables)


def is_before_7(url: str) -> bool:
    with database.connect(url) as conn:
        if ledger.state(conn, 7).applied or ledger.partial(conn, 7) is not None:
            return False
        snap = catalog.snapshot(conn, ["Lead", "Job"], count_rows=False)
    for table in snap.tables:
        col = table.column("customer_id")
        fk = next((c for c in table.constraints if c.name == f"{table.name}_customer_id_fkey"), None)
        extra = [c for c in table.constraints if c.name.endswith("_rb")]
        if col is None or not col.nullable or fk is None or fk.on_delete != "SET NULL" or not fk.validated or extra:
            return False
    return True


def prepare(server: str, leads: int, *, reload: bool, reports: Path) -> str:
    """The database of this size at the state before batch 7; reused from an earlier run when it is intact."""
    name = f"bench_leads_{leads}"
    url = database.with_database(server, name)
    marker = MARKER.format(leads=leads)
    with database.connect(server, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    if row is not None and row[0] == marker and not reload:
        with database.connect(url, autocommit=True) as conn:
            workload.remove_inserted(conn)
        if is_before_7(url):
            log(f"{size_label(leads)}: reusing database {name}")
            return url
        log(f"{size_label(leads)}: database {name} is not at the state before batch 7; reloading it")
    started = time.monotonic()
    with database.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with database.connect(url) as conn:
        loaded = example.load(conn, leads=leads)
        conn.commit()
    log(
        f"{size_label(leads)}: loaded {loaded.leads} leads, {loaded.jobs} jobs, {loaded.customers} customers "
        f"in {loaded.seconds:.1f} s"
    )
    result = apply.run(open_session(6, database_url=url, reports_dir=reports))
    log(f"{size_label(leads)}: batch 6 {result.status} in {result.duration_s:.1f} s")
    with database.connect(url, autocommit=True) as conn:
        # Frozen and analyzed: autovacuum has nothing to do during the runs, and every run sees the same plans.
        conn.execute('VACUUM (FREEZE, ANALYZE) "Customer", "Lead", "Job"')
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(marker)))
    log(f"{size_label(leads)}: ready in {time.monotonic() - started:.0f} s")
    return url


def checkpoint(url: str) -> None:
    """A checkpoint before each run, so none lands inside one by chance (needs superuser; skipped otherwise)."""
    try:
        with database.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.Error:
        pass


# -- the blocker -----------------------------------------------------------------------------------


class Blocker:
    """A session idle in transaction after reading "Lead" (ACCESS SHARE).

    It holds the lock for `hold_s` seconds counted from the moment the migration first waits for it: psql
    queues behind it (a lock request on "Lead" that is not granted), runbook waits without queuing (its
    live WAITING event in `live_path`), so every method meets the same blocker. Released after
    `max_wait_s` if nothing ever waits.
    """

    def __init__(self, url: str, hold_s: float, max_wait_s: float = 120.0, live_path: Path | None = None) -> None:
        self.conn = psycopg.connect(url, application_name="bench blocker")
        self.watch = psycopg.connect(url, autocommit=True, application_name="bench blocker watch")
        self.lead_oid = self.watch.execute("""SELECT '"Lead"'::regclass::oid""").fetchone()[0]
        self.hold_s, self.max_wait_s = hold_s, max_wait_s
        self.thread: threading.Thread | None = None
        self.began = self.first_waiter = self.released = 0.0
        self.tail = live.Tail(live_path) if live_path else None
        self.waited_by = ""  # "queued" (a lock request not granted) or "runbook waited" (no request made)

    def begin(self) -> None:
        self.conn.execute('SELECT id FROM "Lead" LIMIT 1').fetchall()
        self.began = time.monotonic()
        self.thread = threading.Thread(target=self._hold, daemon=True)
        self.thread.start()

    def _hold(self) -> None:
        deadline = self.began + self.max_wait_s
        while time.monotonic() < deadline:
            waiting = self.watch.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' AND relation = %s AND NOT granted",
                (self.lead_oid,),
            ).fetchone()[0]
            runbook_waits = self.tail is not None and any(e.kind == live.WAITING for e in self.tail.read())
            if waiting or runbook_waits:
                self.first_waiter = time.monotonic()
                self.waited_by = "queued" if waiting else "runbook waited"
                time.sleep(max(0.0, self.hold_s - (time.monotonic() - self.first_waiter)))
                break
            time.sleep(0.005)
        self.conn.rollback()
        self.released = time.monotonic()

    def end(self) -> dict:
        if self.thread is not None:
            self.thread.join()
        self.conn.close()
        self.watch.close()
        return {
            "held_s": round(self.released - self.began, 3),
            "first_waiter_after_s": round(self.first_waiter - self.began, 3) if self.first_waiter else None,
            "waited_by": self.waited_by,
        }


# -- one apply, and undoing it ---------------------------------------------------------------------


@dataclasses.dataclass
class Applied:
    ok: bool
    wall_s: float
    message: str = ""
    attempts: int | None = None
    longest_write_block_ms: float | None = None  # runbook's own figure (n/a for psql)
    steps: int | None = None
    record_duration_s: float | None = None
    checks_before_s: float | None = None  # from the call to the first statement: preflight checks, catalog snapshot
    statements_s: float | None = None  # first statement's start to the last one's end (retries and backoff included)
    lock_timeouts: list[str] = dataclasses.field(default_factory=list)  # "step 1 statement 2 attempt 1 ..."
    call_started: float | None = None  # time.monotonic() when apply.run was called (after open_session)
    blocker_wait_s: float | None = None  # how long runbook waited for blockers without queuing
    guard_cancels: int | None = None  # lock requests cancelled because an application session queued behind them
    gates_from: str = ""  # the preflight record apply relied on ("": it evaluated the gates itself)


def apply_psql(url: str) -> Applied:
    started = time.monotonic()
    done = subprocess.run(
        [psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(BATCH7 / "migration.sql"), "-d", url],
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    message = " ".join(line.strip() for line in (done.stderr or "").strip().splitlines()) if done.returncode else ""
    return Applied(done.returncode == 0, wall, message)


def runbook_session(url: str, reports: Path, *, after_preflight: bool):
    """The session apply will run in; with `after_preflight`, preflight has written its record there first,
    as `runbook run` does (apply then relies on its gates); not timed, and before the workload starts."""
    session = open_session(7, database_url=url, reports_dir=reports)
    if after_preflight:
        preflight.run(session)
    return session


def apply_runbook(session, strategy: str, live_path: Path) -> Applied:
    started = time.monotonic()
    try:
        with live.to_file(live_path):
            result = apply.run(session, strategy=strategy)
        ok, message = True, ""
    except RunbookError as exc:
        result = session.run.read("apply", ExecutionResult)
        ok, message = False, str(exc)
    wall = time.monotonic() - started
    if result is None:
        return Applied(False, wall, message)
    applied = Applied(
        ok,
        wall,
        message,
        result.attempts,
        round(result.longest_write_block_s * 1000, 3),
        len(result.plan),
        result.duration_s,
        call_started=started,
        blocker_wait_s=result.blocker_wait_s,
        guard_cancels=result.guard_cancels,
        gates_from=result.gates_from,
    )
    if result.statements and result.statements_started_at:
        before = (
            datetime.fromisoformat(result.statements_started_at) - datetime.fromisoformat(result.started_at)
        ).total_seconds()
        applied.checks_before_s = round(before, 6)
        applied.statements_s = round(max(s.started_offset_s + s.duration_s for s in result.statements), 6)
    applied.lock_timeouts = [
        f"step {s.step} statement {s.index} ({s.sql.splitlines()[0][:80]}) attempt {s.attempt}"
        for s in result.statements
        if s.status == "lock timeout"
    ]
    return applied


def undo(url: str, method: str, applied: Applied, reports: Path) -> None:
    """Batch 7 rolled back the way it was applied; a failed apply leaves nothing to undo, or part of an online plan."""
    if method == "psql":
        if applied.ok:
            done = subprocess.run(
                [
                    psql_binary(),
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-1",
                    "-f",
                    str(BATCH7 / "rollback.sql"),
                    "-d",
                    url,
                ],
                capture_output=True,
                text=True,
            )
            if done.returncode:
                raise SystemExit(f"psql rollback.sql failed: {done.stderr.strip()}")
        return
    if not applied.ok:
        with database.connect(url) as conn:
            part = ledger.partial(conn, 7)
        if part is None:
            return
        log(f"  {method} apply stopped after step {part.steps_done}/{part.steps_total}; finishing it to roll back")
        apply.run(open_session(7, database_url=url, reports_dir=reports), strategy=method)
    rollback.run(open_session(7, database_url=url, reports_dir=reports))


def cleanup(url: str) -> None:
    with database.connect(url, autocommit=True) as conn:
        workload.remove_inserted(conn)
        conn.execute('VACUUM (ANALYZE) "Lead", "Job"')


# -- one measured run --------------------------------------------------------------------------------


def run_one(
    url: str, method: str, with_blocker: bool, *, wl: workload.WorkloadProcess, reference: tuple, args, reports: Path
) -> dict:
    if shape(url) != reference or not is_before_7(url):
        raise SystemExit(f"The database {database.redact(url)} is not at the state before batch 7; stopping.")
    checkpoint(url)
    live_path = reports / "live.jsonl"
    live_path.unlink(missing_ok=True)
    session = None if method == "psql" else runbook_session(url, reports, after_preflight=not args.apply_alone)
    blocker = Blocker(url, args.blocker_seconds, live_path=live_path) if with_blocker else None
    wl_started = wl.start()
    time.sleep(args.warmup)
    if blocker:
        blocker.begin()
    t0 = time.monotonic()
    applied = apply_psql(url) if method == "psql" else apply_runbook(session, method, live_path)
    t1 = time.monotonic()
    time.sleep(args.tail)
    blocked = blocker.end() if blocker else None
    ops = wl.stop()
    during = workload.stats(ops, t0, t1)
    # While the DDL ran: psql's whole call; runbook's statements, after its checks.
    if applied.statements_s is not None:
        ddl_start = applied.call_started + applied.checks_before_s
        during_ddl = workload.stats(ops, ddl_start, ddl_start + applied.statements_s)
    else:
        during_ddl = during
    quiet = workload.stats(ops, wl_started + 0.2, t0 - 0.05)
    undo(url, method, applied, reports)
    cleanup(url)
    if shape(url) != reference:
        raise SystemExit(f"After rolling back the {method} run the catalog differs from before; stopping.")
    return {
        "method": method,
        "blocker": with_blocker,
        "blocker_timing": blocked,
        "apply": dataclasses.asdict(applied),
        "during": dataclasses.asdict(during),
        "during_ddl": dataclasses.asdict(during_ddl),
        "quiet": dataclasses.asdict(quiet),
        "workload_ops_total": len(ops),
        # every operation that overlapped the apply, for percentiles pooled over the runs
        "window_latencies_ms": sorted(
            round(ops.latency[i] * 1000, 2)
            for i in range(len(ops))
            if ops.started[i] <= t1 and ops.started[i] + ops.latency[i] >= t0
        ),
    }


def add_steady(run: dict, interval_s: float) -> dict:
    """The run's operations as steady arrivals would have seen them (see workload.at_steady_arrival)."""
    lat = [v / 1000 for v in run.get("window_latencies_ms", [])]
    run["steady"] = dataclasses.asdict(workload.steady_arrival_stats(lat, interval_s))
    return run


def _pooled(group: list[dict]) -> dict:
    """p99 and p99.9 over every run's operations together: one run's window alone is often too short for them."""
    lat = sorted(v for r in group for v in r.get("window_latencies_ms", []))
    return {"ops": len(lat), "p99_ms": workload.percentile(lat, 99), "p999_ms": workload.percentile(lat, 99.9)}


def summarize(runs: list[dict]) -> list[dict]:
    rows = []
    keys = sorted(
        {(r["leads"], r["method"], r["blocker"]) for r in runs}, key=lambda k: (k[0], k[2], METHODS.index(k[1]))
    )
    for leads, method, blocker in keys:
        group = [r for r in runs if (r["leads"], r["method"], r["blocker"]) == (leads, method, blocker)]
        rows.append(
            {
                "leads": leads,
                "method": method,
                "blocker": blocker,
                "runs": len(group),
                "applies_failed": sum(1 for r in group if not r["apply"]["ok"]),
                "apply_s": spread([r["apply"]["wall_s"] for r in group]),
                "max_ms": spread([r["during"]["max_ms"] for r in group]),
                "max_ddl_ms": spread([r["during_ddl"]["max_ms"] for r in group if "during_ddl" in r]),
                "checks_before_s": spread([r["apply"].get("checks_before_s") for r in group]),
                "p99_ms": spread([r["during"]["p99_ms"] for r in group]),
                "p999_ms": spread([r["during"]["p999_ms"] for r in group]),
                "failed_ops": spread([r["during"]["failed"] for r in group]),
                "ops": spread([r["during"]["ops"] for r in group]),
                "runbook_write_block_ms": spread([r["apply"]["longest_write_block_ms"] for r in group]),
                "attempts": spread([r["apply"]["attempts"] for r in group]),
                "blocker_wait_s": spread([r["apply"].get("blocker_wait_s") for r in group]),
                "guard_cancels": spread([r["apply"].get("guard_cancels") for r in group]),
                "pooled": _pooled(group),
                "steady_p99_ms": spread([r["steady"]["p99_ms"] for r in group if "steady" in r]),
                "steady_p999_ms": spread([r["steady"]["p999_ms"] for r in group if "steady" in r]),
                "steady_over_100ms": spread([r["steady"]["over_threshold"] for r in group if "steady" in r]),
                "quiet_p99_ms": spread([r["quiet"]["p99_ms"] for r in group]),
                "quiet_max_ms": spread([r["quiet"]["max_ms"] for r in group]),
            }
        )
    return rows


def write(out: dict, target: Path, state_dir: Path) -> None:
    """The results without every operation's latency (those go to the state dir: large, and summarized already)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "lock_impact_raw.json").write_text(json.dumps(out))
    slim = {**out, "runs": [{k: v for k, v in r.items() if k != "window_latencies_ms"} for r in out["runs"]]}
    target.write_text(json.dumps(slim, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100k,1M,5M", help="leads per size, comma-separated (k, M suffixes)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each method and blocker case per size")
    parser.add_argument("--methods", default=",".join(METHODS), help="subset of psql,direct,online")
    parser.add_argument("--no-blocker", action="store_true", help="skip the runs with a blocker")
    parser.add_argument("--blocker-seconds", type=float, default=3.0)
    parser.add_argument(
        "--apply-alone",
        action="store_true",
        help="runbook's apply without a preflight record in its run folder (it evaluates the gates)",
    )
    parser.add_argument("--connections", type=int, default=4, help="workload connections")
    parser.add_argument("--rate", type=float, default=50.0, help="operations per second per connection")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of workload before each apply")
    parser.add_argument("--tail", type=float, default=0.5, help="seconds of workload after each apply")
    parser.add_argument(
        "--server-url",
        help="a server to use (a database per size is created on it); "
        "default: an embedded PostgreSQL under --state-dir",
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    parser.add_argument("--reload", action="store_true", help="reload the databases even when intact")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "lock_impact.json")
    parser.add_argument(
        "--from-raw",
        action="store_true",
        help="measure nothing: recompute the statistics from the last run's raw results in --state-dir",
    )
    args = parser.parse_args(argv)
    if args.from_raw:
        raw = json.loads((args.state_dir / "lock_impact_raw.json").read_text())
        interval = 1.0 / raw["settings"]["workload"]["rate_per_connection"]
        for run in raw["runs"]:
            add_steady(run, interval)
        raw["summary"] = summarize(raw["runs"])
        write(raw, args.out, args.state_dir)
        log(f"recomputed {args.out} from {args.state_dir / 'lock_impact_raw.json'}")
        return 0
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if unknown := [m for m in methods if m not in METHODS]:
        parser.error(f"unknown method {unknown[0]!r}")
    blockers = (False,) if args.no_blocker else (False, True)

    server = server_url(args.server_url, args.state_dir)
    reports = args.state_dir / "reports-lock-impact"
    shutil.rmtree(reports, ignore_errors=True)
    config = workload.WorkloadConfig(connections=args.connections, rate_per_connection=args.rate, max_seconds=300)
    started = time.time()
    out = {
        **header("lock_impact", argv, server),
        "settings": {
            "sizes": sizes,
            "runs": args.runs,
            "methods": methods,
            "blockers": list(blockers),
            "blocker_seconds": args.blocker_seconds,
            "warmup_s": args.warmup,
            "tail_s": args.tail,
            "workload": dataclasses.asdict(config),
            "runbook_lock_timeout_ms": 200,
            "runbook_max_attempts": inspect.signature(apply.run).parameters["max_attempts"].default,
            "runbook_max_backoff_s": MAX_BACKOFF_S,
            "runbook_apply_after_preflight": not args.apply_alone,
            "runbook_wait_for_blockers_s": DEFAULTS.wait_for_blockers_s,
            "runbook_blocker_threshold_ms": DEFAULTS.blocker_threshold_ms,
            "psql_command": "psql -X -q -v ON_ERROR_STOP=1 -1 -f migration.sql (rollback: -f rollback.sql)",
        },
        "sizes": [],
        "runs": [],
    }
    for leads in sizes:
        url = prepare(server, leads, reload=args.reload, reports=reports)
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
            }
        )
        reference = shape(url)
        pools = workload.sample_pools(url)
        with workload.WorkloadProcess(url, pools, config) as wl:
            for run in range(args.runs):
                order = methods[run % len(methods) :] + methods[: run % len(methods)]
                for with_blocker in blockers:
                    for method in order:
                        result = run_one(
                            url, method, with_blocker, wl=wl, reference=reference, args=args, reports=reports
                        )
                        add_steady(result, 1.0 / args.rate)
                        result.update(leads=leads, run=run + 1)
                        out["runs"].append(result)
                        a, d = result["apply"], result["during"]
                        log(
                            f"{size_label(leads)} run {run + 1} {method:<6} "
                            f"blocker={'yes' if with_blocker else 'no ':<3} apply {'ok' if a['ok'] else 'FAILED'} "
                            f"{a['wall_s']:.3f} s, stall max {d['max_ms']:.1f} ms, p99 {d['p99_ms']:.1f} ms, p99.9 "
                            f"{d['p999_ms']:.1f} ms, failed ops {d['failed']}"
                            + (
                                f", runbook write block {a['longest_write_block_ms']:.1f} ms, attempts {a['attempts']}"
                                if a["longest_write_block_ms"] is not None
                                else ""
                            )
                            + (f", while DDL ran {result['during_ddl']['max_ms']:.1f} ms" if a["statements_s"] else "")
                            + (
                                f", waited for blockers {a['blocker_wait_s']:.2f} s, guard cancels {a['guard_cancels']}"
                                if a["blocker_wait_s"] or a["guard_cancels"]
                                else ""
                            )
                            + (f" [lock timeouts: {'; '.join(a['lock_timeouts'])}]" if a["lock_timeouts"] else "")
                            + (f" [{a['message'][:400]}]" if a["message"] else "")
                            + (f" [errors: {'; '.join(d['errors'][:2])}]" if d["errors"] else "")
                        )
        out["summary"] = summarize(out["runs"])
        write(out, args.out, args.state_dir)  # after each size: a long run keeps what it measured
    out["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out["elapsed_s"] = round(time.time() - started, 1)
    write(out, args.out, args.state_dir)
    log(f"wrote {args.out} ({out['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
