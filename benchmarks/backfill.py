"""What backfilling batch 6 does to an application that keeps running: psql -1 versus runbook direct and online.

For each size (the example CRM at N leads, at its state before batch 6: one lead in ten without a customer),
the lock-impact workload (benchmarks/workload.py: 4 connections inserting, updating and reading "Lead" and "Job")
runs with one more client, in a process of its own, updating a random lead that has no customer yet every
5 ms (`UPDATE "Lead" SET phone = phone WHERE id = $1 AND customer_id IS NULL`: the rows the backfill is about
to change), while batch 6 is applied by
  (a) psql -X -q -v ON_ERROR_STOP=1 -1 -f migration.sql
  (b) runbook_lib.phases.apply.run(session, strategy="direct")     one transaction
  (c) runbook_lib.phases.apply.run(session, strategy="online")     data statements in batches, 10 ms target (default)
  (d) the same with backfill_batch_ms=50: larger batches, faster, each row locked longer
then, after the application has gone on for --after-s seconds (40: the kernel writes back what the apply left
dirty within 30 s, and a stall then is the migration's too, counted apart), rolled back with rollback.sql (psql -1,
or runbook rollback), and the end state compared with the one
before, so every run starts from the same state, after a CHECKPOINT and the OS's sync (no run shares the disk
with the write-back of the one before). Then, per size:
  (0) the same workload and client with no migration at all, as long as each online apply took: this
      machine's own longest stall over that time (a WAL fsync now and then takes tens of ms here, migration
      or not), the floor any method's "longest stall" sits on;
  (-) the disk alone, as long as each online apply took, with no PostgreSQL work: an 8 KiB write and
      fdatasync every 5 ms in the benchmark's state directory (a small commit's WAL flush, without PostgreSQL);
and the online apply is SIGKILLed at random moments (--kills, a forked child) and resumed by a new apply: each
must end in the one-transaction end state.

Which stalls are the migration's: a third process samples pg_stat_activity every 5 ms for the application's
statements running longer than 5 ms, what each waits for (wait_event) and, on a heavyweight lock (a row or a
table), who blocks it (pg_blocking_pids). A lock wait on a session that is not the application's own is a wait
on the migration; its length is counted up to the sample after it was last seen (an upper bound). The wait
events of the statements that ran over 20 ms say what the other long stalls were (the WAL, a data file, CPU).

    python benchmarks/backfill.py                          # 100k, 1M, 5M leads, 3 runs each
    python benchmarks/backfill.py --sizes 100k --runs 1    # a quick look

Writes benchmarks/results/backfill.json; benchmarks/report.py turns it into its section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import common  # noqa: F401  (puts the project on sys.path)
import psycopg
import workload
from common import (
    DEFAULT_STATE,
    RESULTS_DIR,
    disk_commit_latency,
    header,
    parse_size,
    psql_binary,
    server_url,
    size_label,
    spread,
)
from psycopg import sql

from runbook_lib import config
from runbook_lib.db import connection as database
from runbook_lib.db import example
from runbook_lib.errors import RunbookError
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, rollback
from runbook_lib.report.records import ExecutionResult

METHODS = {
    "psql": {},
    "direct": {"strategy": "direct"},
    "online": {"strategy": "online"},
    "online-50ms": {"strategy": "online", "backfill_batch_ms": 50},
    "online-flush-first": {"strategy": "online", "backfill_flush_from_mb": 0.01},  # from its first batch on
    "online-pause-10ms": {"strategy": "online", "backfill_pause_ms": 10},
}
DEFAULT_METHODS = ("psql", "direct", "online", "online-50ms")  # section 7; the others are trials (7f, Also measured)
BATCH6 = config.example_migrations_dir() / "006_backfill_customers"
MARKER = "runbook backfill v1: example leads={leads}, before batch 6, frozen"
# the end state, compared without the times NOW() writes: which customers exist, every lead's and job's customer
STATE_SQL = f"""
SELECT (SELECT count(*) FROM "Customer"), (SELECT count(*) FROM "Lead" WHERE customer_id IS NULL),
       (SELECT count(*) FROM "Job" WHERE customer_id IS NULL),
       (SELECT sum(hashtextextended(id || ':' || coalesce(email, ''), 0)::numeric) FROM "Customer"),
       (SELECT sum(hashtextextended(id || ':' || coalesce(customer_id, ''), 0)::numeric) FROM "Lead"
         WHERE id NOT LIKE '{workload.ID_PREFIX}%%'),
       (SELECT sum(hashtextextended(id || ':' || coalesce(customer_id, ''), 0)::numeric) FROM "Job"
         WHERE id NOT LIKE '{workload.ID_PREFIX}%%'),
       to_regclass('"_runbook_backfill_006"') IS NOT NULL
"""  # the workload's own rows (it inserts leads and jobs with a customer) left out


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def state(url: str) -> tuple:
    with database.connect(url) as conn:
        return tuple(str(v) for v in conn.execute(STATE_SQL).fetchone())


def prepare(server: str, leads: int, *, reload: bool) -> str:
    """The example at this size before batch 6, frozen; reused when an earlier run left it intact."""
    name = f"bench_backfill_{leads}"
    url = database.with_database(server, name)
    with database.connect(server, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if row is not None and row[0] == MARKER.format(leads=leads) and not reload and _pristine(url):
            log(f"{size_label(leads)}: reusing database {name}")
            return url
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with database.connect(url) as conn:
        loaded = example.load(conn, leads=leads)
        conn.commit()
    with database.connect(url, autocommit=True) as conn:
        conn.execute('VACUUM (FREEZE, ANALYZE) "Customer", "Lead", "Job"')
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(MARKER.format(leads=leads))
            )
        )
    log(f"{size_label(leads)}: loaded {loaded.leads:,} leads ({loaded.leads_without_customer:,} without a customer)")
    return url


def _pristine(url: str) -> bool:
    """Still at its state before batch 6, with no ledger: a run stopped midway (killed, interrupted) leaves
    leads backfilled or a partial apply that the next apply would resume instead of starting over."""
    with database.connect(url) as conn:
        if not conn.execute("""SELECT to_regclass('"_runbook_backfill_006"') IS NULL
                                 AND EXISTS (SELECT 1 FROM "Lead" WHERE customer_id IS NULL)""").fetchone()[0]:
            return False
        if conn.execute("SELECT to_regclass('runbook.phase_run')").fetchone()[0] is None:
            return True
        return not conn.execute(
            "SELECT EXISTS (SELECT 1 FROM runbook.phase_run WHERE batch = 6 AND status IN ('running', 'failed'))"
        ).fetchone()[0]


def _backfill_client(url: str, ids: list[str], interval_s: float, pipe) -> None:
    """A process of its own: every interval, one not-yet-backfilled lead updated; latencies back on stop."""
    random.seed(19)
    started, latency = [], []
    with psycopg.connect(url, autocommit=True, application_name="bench backfill client") as conn:
        pipe.send("ready")
        pipe.recv()  # go
        next_at = time.monotonic()
        while not pipe.poll():
            t = time.monotonic()
            conn.execute('UPDATE "Lead" SET phone = phone WHERE id = %s AND customer_id IS NULL', (random.choice(ids),))
            started.append(t)
            latency.append(time.monotonic() - t)
            next_at = max(next_at + interval_s, time.monotonic())  # a steady schedule, no catch-up burst
            time.sleep(max(0.0, next_at - time.monotonic()))
    pipe.recv()  # stop
    pipe.send((started, latency))


WAITS_SQL = """
SELECT w.pid, extract(epoch FROM clock_timestamp() - w.query_start), w.application_name,
       coalesce(w.wait_event_type || ':' || w.wait_event, 'CPU'),
       (SELECT array_agg(b.application_name) FROM pg_stat_activity AS b WHERE b.pid = ANY(pg_blocking_pids(w.pid)))
FROM pg_stat_activity AS w
WHERE w.state = 'active' AND w.application_name = ANY(%s) AND w.datname = current_database()
  AND clock_timestamp() - w.query_start > interval '5 ms'
"""
APPLICATION = (
    "runbook workload",
    "bench backfill client",
)  # the application's sessions; any other blocker is the migration's
SAMPLE_S = 0.005


def _sample_statements(url: str, pipe) -> None:
    """A process of its own: every 5 ms, the application's statements running longer than 5 ms, what they wait
    for and on whom; on stop, each (its pid and start) as (start, upper-bound seconds, wait events, blockers)."""
    seen: dict[tuple[int, float], list] = {}
    with psycopg.connect(url, autocommit=True, application_name="bench lock sampler") as conn:
        pipe.send("ready")
        while not pipe.poll():
            now = time.monotonic()
            for pid, elapsed, _app, event, blockers in conn.execute(WAITS_SQL, (list(APPLICATION),)):
                start = round(now - float(elapsed), 3)  # the same statement, sample after sample
                entry = seen.setdefault((pid, start), [start, 0.0, Counter(), set()])
                entry[1] = max(entry[1], float(elapsed) + SAMPLE_S)
                entry[2][event] += 1
                if event.startswith("Lock:"):
                    entry[3].update(b or "" for b in blockers or ())
            time.sleep(SAMPLE_S)
    pipe.recv()  # stop
    pipe.send([(start, length, dict(events), sorted(blockers)) for start, length, events, blockers in seen.values()])


def _overlaps(start: float, length: float, t0: float, t1: float) -> bool:
    return start <= t1 and start + length >= t0


def _slow_waits(waits: list, t0: float, t1: float) -> dict:
    """What the application's statements that ran over 20 ms during [t0, t1] waited for: samples per wait event."""
    events: Counter = Counter()
    for start, length, seen, _blockers in waits:
        if length > 0.020 and _overlaps(start, length, t0, t1):
            events.update(seen)
    return dict(events.most_common())


def _longest_statement(waits: list, t0: float, t1: float) -> dict:
    """The application's longest sampled statement overlapping [t0, t1]: how long, and what it waited for."""
    inside = [(length, events) for start, length, events, _blockers in waits if _overlaps(start, length, t0, t1)]
    if not inside:
        return {}
    length, events = max(inside, key=lambda item: item[0])
    return {"ms": round(length * 1000, 2), "events": events}


def _migration_wait_ms(waits: list, t0: float, t1: float) -> float:
    """The longest wait of an application statement, overlapping [t0, t1], on a session not the application's."""
    inside = [
        length
        for start, length, _events, blockers in waits
        if _overlaps(start, length, t0, t1) and any(b not in APPLICATION for b in blockers)
    ]
    return round(max(inside, default=0.0) * 1000, 2)


def _over_20ms(started: list[float], latency: list[float], t0: float, t1: float) -> int:
    """How many operations that overlapped [t0, t1] took over 20 ms: how often, where the longest says how bad."""
    return sum(1 for s, lat in zip(started, latency, strict=True) if lat > 0.020 and _overlaps(s, lat, t0, t1))


def _after(started: list[float], latency: list[float], t1: float, until: float) -> list[float]:
    """The latencies of the operations that started after the apply ended, up to `until`."""
    return [lat for s, lat in zip(started, latency, strict=True) if t1 < s <= until]


def _max_ms(started: list[float], latency: list[float], t0: float, t1: float) -> float | None:
    inside = [lat for s, lat in zip(started, latency, strict=True) if _overlaps(s, lat, t0, t1)]
    return round(max(inside) * 1000, 2) if inside else None


def apply_once(url: str, method: str, reports: Path, *, idle_s: float = 0.0) -> dict:
    if method == "none":  # the application alone, as long as an online apply took
        t0 = time.monotonic()
        time.sleep(idle_s)
        return {"ok": True, "t0": t0, "t1": time.monotonic(), "message": ""}
    if method == "psql":
        t0 = time.monotonic()
        done = subprocess.run(
            [psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(BATCH6 / "migration.sql"), "-d", url],
            capture_output=True,
            text=True,
        )
        return {"ok": done.returncode == 0, "t0": t0, "t1": time.monotonic(), "message": done.stderr.strip()[:300]}
    session = open_session(6, database_url=url, reports_dir=reports)
    t0 = time.monotonic()
    try:
        result, message = apply.run(session, **METHODS[method]), ""
    except RunbookError as exc:
        result, message = session.run.read("apply", ExecutionResult), str(exc)
    out = {"ok": not message, "t0": t0, "t1": time.monotonic(), "message": message[:300]}
    if result is not None:
        out.update(
            write_block_ms=round(result.longest_write_block_s * 1000, 2),
            batches=sum(b.batches for b in result.backfills),
            longest_batch_ms=round(max((b.batch_longest_s for b in result.backfills), default=0) * 1000, 2),
            median_batch_ms=round(max((b.batch_median_s for b in result.backfills), default=0) * 1000, 2),
            lock_timeouts=sum(b.lock_timeouts for b in result.backfills),
            vacuum_s=round(sum(b.vacuum_s for b in result.backfills), 2),
            vacuumed=[b.table for b in result.backfills if b.vacuum_s],
            wal_mb_per_s=next((b.wal_mb_per_s for b in result.backfills), 0.0),
            wal_pause_s=round(sum(b.wal_pause_s for b in result.backfills), 2),
            flush_from_mb=next((b.flush_from_mb for b in result.backfills if b.flush_from_mb is not None), None),
            flush_threshold_mb=next(
                (b.flush_threshold_mb for b in result.backfills if b.flush_threshold_mb is not None), None
            ),
        )
    return out


@dataclasses.dataclass(frozen=True)
class Background:
    """The server so far: the WAL it wrote (all sessions: the migration's, the workload's, autovacuum's), each
    table's autovacuums and autoanalyzes, its checkpoints."""

    wal: int  # bytes
    tables: dict[str, tuple[int, int]]
    checkpoints: int

    def since(self, before: Background) -> dict:
        """What it did by itself between `before` and this reading: the tables autovacuum worked on, checkpoints."""

        def grew(i: int) -> list[str]:
            return sorted(t for t, n in self.tables.items() if n[i] > before.tables.get(t, (0, 0))[i])

        return {
            "autovacuum_tables": grew(0),
            "autoanalyze_tables": grew(1),
            "checkpoints": self.checkpoints - before.checkpoints,
        }


def background(url: str) -> Background:
    with database.connect(url, autocommit=True) as conn:
        checkpoints = (
            "SELECT num_timed + num_requested FROM pg_stat_checkpointer"
            if conn.info.server_version >= 170000
            # pg_stat_checkpointer from 17 on
            else "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
        )
        wal = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()[0]
        tables = conn.execute("SELECT relname, autovacuum_count, autoanalyze_count FROM pg_stat_user_tables").fetchall()
        return Background(
            int(wal), {t: (int(v), int(a)) for t, v, a in tables}, int(conn.execute(checkpoints).fetchone()[0])
        )


def undo(url: str, method: str, reports: Path) -> None:
    if method == "none":
        pass  # nothing applied: only the workload's rows go
    elif method == "psql":
        subprocess.run(
            [psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(BATCH6 / "rollback.sql"), "-d", url],
            check=True,
            capture_output=True,
        )
    else:
        rollback.run(open_session(6, database_url=url, reports_dir=reports))
    with database.connect(url, autocommit=True) as conn:
        workload.remove_inserted(conn)
        conn.execute('VACUUM (ANALYZE) "Customer", "Lead", "Job"')


def settle(url: str) -> None:
    """No run pays for the one before it: the pages that run and its rollback dirtied are written and on disk
    (CHECKPOINT, then the OS's sync). Without this, a run shared the disk with the checkpoint and the kernel's
    write-back of the last rollback's gigabytes (at 5M, runs with no migration at all stalled up to 150 ms)."""
    with database.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    os.sync()


def _kill_child(url: str, reports: str) -> None:
    apply.run(open_session(6, database_url=url, reports_dir=Path(reports)), strategy="online")


def kill_and_resume(url: str, after_s: float, reports: Path) -> dict:
    """The online apply (a forked child) SIGKILLed `after_s` after its first batch committed, then resumed."""
    child = multiprocessing.get_context("fork").Process(target=_kill_child, args=(url, str(reports)))
    child.start()
    deadline = time.monotonic() + 120
    with database.connect(url, autocommit=True) as conn:
        while (
            child.is_alive()
            and time.monotonic() < deadline
            and not conn.execute(
                "SELECT to_regclass('runbook.phase_run') IS NOT NULL AND EXISTS (SELECT 1 FROM runbook.phase_run"
                " WHERE batch = 6 AND status = 'running' AND backfill IS NOT NULL)"
            ).fetchone()[0]
        ):
            time.sleep(0.005)
    child.join(after_s)
    killed = child.is_alive()
    if killed:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    # Its backend ends when it next talks to the client; one killed in a VACUUM (run after a step, see
    # execution/upkeep.py) finishes it first, holding the migration lock meanwhile: wait for it.
    with database.connect(url, autocommit=True) as conn:
        while (
            time.monotonic() < deadline + 120
            and conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'runbook apply%%'"
                " AND datname = current_database()"
            ).fetchone()[0]
        ):
            time.sleep(0.1)
    result = apply.run(open_session(6, database_url=url, reports_dir=reports), strategy="online")
    return {
        "after_s": round(after_s, 3),
        "killed": killed,
        "resumed": result.status,
        "message": result.message[:300],
        "end_state": state(url),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100k,1M,5M")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"some of {', '.join(METHODS)} (default: {','.join(DEFAULT_METHODS)})",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the runs with no migration")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of the online apply per size (then resumed)")
    parser.add_argument(
        "--after-s",
        type=float,
        default=40.0,
        help="how long the application goes on being measured after each apply, before its rollback",
    )
    parser.add_argument("--client-interval-ms", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--server-url")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    parser.add_argument("--reload", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "backfill.json")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    if unknown := [m for m in methods if m not in METHODS]:
        parser.error(f"unknown method {unknown[0]!r}; use some of {', '.join(METHODS)}")
    server = server_url(args.server_url, args.state_dir)
    reports = args.state_dir / "reports-backfill"
    shutil.rmtree(reports, ignore_errors=True)
    wl_config = workload.WorkloadConfig(connections=args.connections, rate_per_connection=args.rate, max_seconds=600)
    out = {
        **header("backfill", argv, server),
        "settings": {
            "runs": args.runs,
            "methods": methods,
            "kills": args.kills,
            "client_interval_ms": args.client_interval_ms,
            "after_s": args.after_s,
            "workload": dataclasses.asdict(wl_config),
        },
        "sizes": [],
        "runs": [],
        "kills": [],
        "summary": [],
    }
    started = time.time()
    for leads in [parse_size(s) for s in args.sizes.split(",") if s.strip()]:
        url = prepare(server, leads, reload=args.reload)
        before = state(url)
        with database.connect(url) as conn:
            ids = [r[0] for r in conn.execute('SELECT id FROM "Lead" WHERE customer_id IS NULL')]
            jobs = conn.execute('SELECT count(*) FROM "Job" WHERE customer_id IS NULL').fetchone()[0]
        out["sizes"].append({"leads": leads, "leads_without_customer": len(ids), "jobs_without_customer": jobs})
        pools = workload.sample_pools(url)
        expected = None
        walls = []
        with workload.WorkloadProcess(url, pools, wl_config) as wl:
            rounds = [methods[run % len(methods) :] + methods[: run % len(methods)] for run in range(args.runs)]
            if "online" in methods and not args.no_baseline:
                rounds += [["none"] for _ in range(args.runs)]  # after the online runs: as long as they took
            for run, method in ((i % args.runs, m) for i, round_ in enumerate(rounds) for m in round_):
                settle(url)
                parent, child_end = multiprocessing.Pipe()
                client = multiprocessing.Process(
                    target=_backfill_client, args=(url, ids, args.client_interval_ms / 1000, child_end)
                )
                client.start()
                sampler_end, sampler_child = multiprocessing.Pipe()
                sampler = multiprocessing.Process(target=_sample_statements, args=(url, sampler_child))
                sampler.start()
                parent.recv()
                sampler_end.recv()
                wl.start()
                parent.send("go")
                time.sleep(1.0)
                online_walls = [r["wall_s"] for r in out["runs"] if r["leads"] == leads and r["method"] == "online"]
                bg_before = background(url)
                applied = apply_once(url, method, reports, idle_s=online_walls[run] if run < len(online_walls) else 0.0)
                bg_applied = background(url)
                applied["wal_mb"] = round((bg_applied.wal - bg_before.wal) / 1e6, 3)
                # the application goes on while the kernel writes back what the run left dirty (within
                # vm.dirty_expire_centisecs, 30 s by default) and before the rollback writes its own
                time.sleep(max(0.5, args.after_s))
                bg_after = background(url)
                parent.send("stop")
                sampler_end.send("stop")
                c_started, c_latency = parent.recv()
                client.join()
                waits = sampler_end.recv()
                sampler.join()
                ops = wl.stop()
                t0, t1 = applied.pop("t0"), applied.pop("t1")
                end = state(url)
                expected = expected or (end if method != "none" else None)
                row = {
                    "leads": leads,
                    "run": run + 1,
                    "method": method,
                    "wall_s": round(t1 - t0, 3),
                    "rows_per_s": round((len(ids) + jobs) / (t1 - t0)) if method != "none" else None,
                    "client_max_ms": _max_ms(c_started, c_latency, t0, t1),
                    "client_updates": sum(1 for s in c_started if t0 <= s <= t1),
                    "workload": dataclasses.asdict(workload.stats(ops, t0, t1)),
                    "same_end_state": end == expected if method != "none" else end == before,
                    "migration_lock_wait_ms": _migration_wait_ms(waits, t0, t1),
                    "slow_statement_waits": _slow_waits(waits, t0, t1),
                    "longest_statement": _longest_statement(waits, t0, t1),
                    **applied,
                }
                row["stall_ms"] = max(v for v in (row["client_max_ms"], row["workload"]["max_ms"]) if v is not None)
                row["over_20ms"] = _over_20ms(c_started, c_latency, t0, t1) + _over_20ms(
                    ops.started, ops.latency, t0, t1
                )
                after = _after(c_started, c_latency, t1, t1 + args.after_s) + _after(
                    ops.started, ops.latency, t1, t1 + args.after_s
                )
                row["after_s"] = args.after_s
                row["after_stall_ms"] = round(max(after) * 1000, 2) if after else None
                row["after_over_20ms"] = sum(1 for lat in after if lat > 0.020)
                row["after_slow_waits"] = _slow_waits(waits, t1, t1 + args.after_s)
                row["background"] = bg_applied.since(bg_before)
                row["after_background"] = bg_after.since(bg_applied)
                out["runs"].append(row)
                if method.startswith("online"):
                    walls.append(t1 - t0)
                log(
                    f"{size_label(leads)} run {run + 1} {method:<11} {'ok' if applied['ok'] else 'FAILED'} "
                    f"{t1 - t0:.2f} s, stall {row['stall_ms']:.1f} ms (client {row['client_max_ms']} ms), "
                    f"waited on the migration's locks {row['migration_lock_wait_ms']} ms, "
                    f"write block {applied.get('write_block_ms')} ms, batches {applied.get('batches')}"
                    + (f" [{applied['message']}]" if applied["message"] else "")
                )
                undo(url, method, reports)
                if state(url) != before:
                    raise SystemExit(f"After rolling back the {method} run the data differs from before; stopping.")
        online_walls = [r["wall_s"] for r in out["runs"] if r["leads"] == leads and r["method"] == "online"]
        for run, wall in enumerate(online_walls if not args.no_baseline else []):  # the floor under (0)
            settle(url)
            probe = disk_commit_latency(args.state_dir, wall)
            out["runs"].append(
                {
                    "leads": leads,
                    "run": run + 1,
                    "method": "disk",
                    "wall_s": round(wall, 3),
                    "ok": True,
                    "same_end_state": True,
                    "stall_ms": probe["max_ms"],
                    "over_20ms": probe["over_20ms"],
                    "disk": probe,
                    "message": "",
                }
            )
            log(
                f"{size_label(leads)} run {run + 1} the disk alone {wall:.2f} s: {probe['syncs']} syncs, "
                f"longest {probe['max_ms']} ms, {probe['over_20ms']} over 20 ms"
            )
        rng = random.Random(16 + leads)
        span = sorted(walls)[len(walls) // 2] if walls else 2.0
        for _ in range(args.kills):
            outcome = kill_and_resume(url, rng.uniform(0.0, 0.6) * span, reports)
            outcome["exactly_once"] = outcome["end_state"] == expected if expected else None
            outcome["leads"] = leads
            out["kills"].append(outcome)
            log(
                f"{size_label(leads)} kill at {outcome['after_s']} s: killed={outcome['killed']}, "
                f"resumed {outcome['resumed']}, end state as one transaction: {outcome['exactly_once']}"
            )
            undo(url, "online", reports)
        out["summary"] = summarize(out["runs"])
        write(out, args.out)
    out["elapsed_s"] = round(time.time() - started, 1)
    write(out, args.out)
    log(f"wrote {args.out} ({out['elapsed_s']:.0f} s)")
    return 0


def summarize(runs: list[dict]) -> list[dict]:
    rows = []
    order = ["disk", "none", *METHODS]
    for leads, method in sorted({(r["leads"], r["method"]) for r in runs}, key=lambda k: (k[0], order.index(k[1]))):
        group = [r for r in runs if (r["leads"], r["method"]) == (leads, method)]
        rows.append(
            {
                "leads": leads,
                "method": method,
                "runs": len(group),
                "failed": sum(1 for r in group if not r["ok"]),
                "different_end_state": sum(1 for r in group if not r["same_end_state"]),
                **{
                    k: spread([r.get(k) for r in group])
                    for k in (
                        "wall_s",
                        "rows_per_s",
                        "stall_ms",
                        "over_20ms",
                        "client_max_ms",
                        "migration_lock_wait_ms",
                        "write_block_ms",
                        "batches",
                        "wal_mb",
                        "vacuum_s",
                        "wal_pause_s",
                        "after_stall_ms",
                        "after_over_20ms",
                        "longest_batch_ms",
                        "median_batch_ms",
                    )
                },
                "workload_max_ms": spread([r["workload"]["max_ms"] for r in group if r.get("workload")]),
            }
        )
    return rows


def write(out: dict, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(main())
