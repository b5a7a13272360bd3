"""A steady application workload on the example CRM, and what a migration did to it: every operation's latency.

Several connections, each at a fixed rate, cycle through inserts and updates into "Lead" and "Job"
and reads by primary key, in autocommit as an application would. Every operation's start
(time.monotonic, comparable across processes on one machine) and latency is kept, and failures with
the server's message. Bounded in time, in operations and per statement (statement_timeout).

`WorkloadProcess` runs it in a process of its own, so the latencies are not those of the caller's
interpreter (the migration runs there); `stats` turns the operations that overlapped a time window
into the numbers a report shows: the longest stall, p99, p99.9, failures.

    pools = workload.sample_pools(url)
    with workload.WorkloadProcess(url, pools) as wl:
        wl.start(); ...run the migration...; ops = wl.stop()
    print(workload.stats(ops, start, end))
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import threading
import time
from dataclasses import dataclass, field

import psycopg

KINDS = ("insert Lead", "update Lead", "read Lead", "insert Job", "update Job", "read Job")
ID_PREFIX = "wl_"  # inserted rows' ids start with it, so they can be removed afterwards


@dataclass(frozen=True)
class WorkloadConfig:
    connections: int = 4
    rate_per_connection: float = 50.0  # operations per second per connection, a steady schedule
    max_seconds: float = 120.0  # one run stops by itself after this long...
    max_ops: int = 200_000  # ...or this many operations
    statement_timeout_ms: int = 30_000  # no single operation waits longer than this
    application_name: str = "runbook workload"


@dataclass(frozen=True)
class Pools:
    """Existing rows the workload reads and updates: (lead id, its customer id), job ids."""

    leads: tuple[tuple[str, str], ...]
    jobs: tuple[str, ...]


@dataclass
class Ops:
    """Every operation of one run, column-wise (compact to send between processes)."""

    kind: list[int] = field(default_factory=list)
    started: list[float] = field(default_factory=list)  # time.monotonic() at the start
    latency: list[float] = field(default_factory=list)  # seconds
    ok: list[bool] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the first few failures' messages

    def extend(self, other: Ops) -> None:
        self.kind += other.kind
        self.started += other.started
        self.latency += other.latency
        self.ok += other.ok
        self.errors += other.errors[: max(0, 20 - len(self.errors))]

    def __len__(self) -> int:
        return len(self.kind)


@dataclass(frozen=True)
class LatencyStats:
    """What the application saw while something ran (the operations that overlapped the window)."""

    ops: int
    failed: int
    max_ms: float  # the longest single stall
    p50_ms: float
    p99_ms: float
    p999_ms: float
    worst_kind: str
    worst_started_s: float  # the worst operation's start, seconds after the window opened
    errors: tuple[str, ...] = ()


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was observed, never interpolated."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(round(q * len(sorted_values) / 100.0, 9)))  # round: 99.9 * 1000 / 100 is not 999.0
    return sorted_values[min(rank, len(sorted_values)) - 1]


def stats(ops: Ops, window_start: float, window_end: float) -> LatencyStats:
    """The operations that were running at any moment in [window_start, window_end] (monotonic seconds)."""
    picked = [
        i for i in range(len(ops)) if ops.started[i] <= window_end and ops.started[i] + ops.latency[i] >= window_start
    ]
    if not picked:
        return LatencyStats(0, 0, math.nan, math.nan, math.nan, math.nan, "", math.nan)
    lat = sorted(ops.latency[i] for i in picked)
    worst = max(picked, key=lambda i: ops.latency[i])
    return LatencyStats(
        ops=len(picked),
        failed=sum(1 for i in picked if not ops.ok[i]),
        max_ms=round(lat[-1] * 1000, 3),
        p50_ms=round(percentile(lat, 50) * 1000, 3),
        p99_ms=round(percentile(lat, 99) * 1000, 3),
        p999_ms=round(percentile(lat, 99.9) * 1000, 3),
        worst_kind=KINDS[ops.kind[worst]],
        worst_started_s=round(ops.started[worst] - window_start, 3),
        errors=tuple(ops.errors[:5]),
    )


def at_steady_arrival(latencies_s: list[float], interval_s: float) -> list[float]:
    """The latencies requests arriving on the schedule would have seen (HdrHistogram's correction for
    coordinated omission): a connection stalled for L issued nothing in the meantime, so the operation
    also stands for the requests that would have arrived during it, which waited L - interval,
    L - 2 * interval, ... (down to one interval)."""
    out: list[float] = []
    for value in latencies_s:
        out.append(value)
        missing = value - interval_s
        while missing >= interval_s:
            out.append(missing)
            missing -= interval_s
    return out


@dataclass(frozen=True)
class SteadyArrivalStats:
    """Percentiles over the corrected latencies, and how many requests waited longer than a threshold."""

    requests: int
    p99_ms: float
    p999_ms: float
    over_threshold: int
    threshold_ms: float


def steady_arrival_stats(
    latencies_s: list[float], interval_s: float, threshold_ms: float = 100.0
) -> SteadyArrivalStats:
    values = sorted(at_steady_arrival(latencies_s, interval_s))
    if not values:
        return SteadyArrivalStats(0, math.nan, math.nan, 0, threshold_ms)
    return SteadyArrivalStats(
        len(values),
        round(percentile(values, 99) * 1000, 3),
        round(percentile(values, 99.9) * 1000, 3),
        sum(1 for v in values if v * 1000 > threshold_ms),
        threshold_ms,
    )


def sample_pools(url: str, *, leads: int = 4000, jobs: int = 4000) -> Pools:
    """Rows spread over the whole tables, chosen by a hash of their id (a stable choice whatever the physical
    layout: after many backfill-and-rollback cycles a TABLESAMPLE of fixed seed found only leads without a
    customer), in a stable order; leads that have a customer."""
    with psycopg.connect(url, autocommit=True) as conn:
        total_leads = conn.execute(
            "SELECT greatest(reltuples, 1) FROM pg_class WHERE oid = '\"Lead\"'::regclass"
        ).fetchone()[0]
        total_jobs = conn.execute(
            "SELECT greatest(reltuples, 1) FROM pg_class WHERE oid = '\"Job\"'::regclass"
        ).fetchone()[0]
        every_l = max(1, int(total_leads / (2 * leads)))
        every_j = max(1, int(total_jobs / (2 * jobs)))
        lead_rows = conn.execute(
            f'SELECT id, customer_id FROM "Lead" WHERE hashtext(id) %% {every_l} = 0'
            f" AND customer_id IS NOT NULL AND id NOT LIKE '{ID_PREFIX}%%' ORDER BY md5(id) LIMIT %s",
            (leads,),
        ).fetchall()
        job_rows = conn.execute(
            f'SELECT id FROM "Job" WHERE hashtext(id) %% {every_j} = 0'
            f" AND id NOT LIKE '{ID_PREFIX}%%' ORDER BY md5(id) LIMIT %s",
            (jobs,),
        ).fetchall()
    return Pools(tuple((r[0], r[1]) for r in lead_rows), tuple(r[0] for r in job_rows))


def remove_inserted(conn: psycopg.Connection) -> tuple[int, int]:
    """Delete the rows the workload inserted (jobs first: they reference leads)."""
    jobs = conn.execute(f"""DELETE FROM "Job" WHERE id LIKE '{ID_PREFIX}%%'""").rowcount
    leads = conn.execute(f"""DELETE FROM "Lead" WHERE id LIKE '{ID_PREFIX}%%'""").rowcount
    return leads, jobs


_SQL = (
    'INSERT INTO "Lead" (id, customer_id, channel, name, email, updated_at)'
    " VALUES (%s, %s, 'web', 'Workload Lead', NULL, now())",
    'UPDATE "Lead" SET updated_at = now() WHERE id = %s',
    'SELECT id, customer_id, channel, name, email, updated_at FROM "Lead" WHERE id = %s',
    'INSERT INTO "Job" (id, customer_id, lead_id, window_start, window_end, status, updated_at)'
    " VALUES (%s, %s, %s, now(), now() + interval '1 hour', 'scheduled', now())",
    'UPDATE "Job" SET updated_at = now() WHERE id = %s',
    'SELECT id, customer_id, lead_id, status, updated_at FROM "Job" WHERE id = %s',
)


def _params(kind: int, conn_index: int, n: int, run: int, pools: Pools, step: int):
    lead, customer = pools.leads[(n * step + conn_index) % len(pools.leads)]
    job = pools.jobs[(n * step + conn_index) % len(pools.jobs)]
    new_id = f"{ID_PREFIX}{run}_{conn_index}_{n}"
    return (
        (new_id, customer),
        (lead,),
        (lead,),
        (new_id, customer, lead),
        (job,),
        (job,),
    )[kind]


def _worker(
    conn: psycopg.Connection,
    conn_index: int,
    config: WorkloadConfig,
    pools: Pools,
    run: int,
    stop: threading.Event,
    deadline: float,
    budget: list[int],
    lock: threading.Lock,
    out: Ops,
) -> None:
    interval = 1.0 / config.rate_per_connection
    # Spread the connections over one interval, and over the kinds, so they do not move in lockstep.
    next_at = time.monotonic() + interval * conn_index / config.connections
    step = config.connections
    n = 0
    while not stop.is_set():
        now = time.monotonic()
        if now >= deadline:
            break
        if next_at > now:
            time.sleep(next_at - now)
        with lock:
            if budget[0] <= 0:
                break
            budget[0] -= 1
        kind = (n + conn_index) % len(KINDS)
        params = _params(kind, conn_index, n, run, pools, step)
        started = time.monotonic()
        ok, error = True, ""
        try:
            cur = conn.execute(_SQL[kind], params)
            if cur.description is not None:
                cur.fetchall()
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            ok, error = False, f"{KINDS[kind]}: {exc.diag.sqlstate or ''} {first}"
        ended = time.monotonic()
        out.kind.append(kind)
        out.started.append(started)
        out.latency.append(ended - started)
        out.ok.append(ok)
        if error and len(out.errors) < 20:
            out.errors.append(error)
        if conn.closed or conn.broken:
            break  # the server ended this connection; run() replaces it for the next run
        n += 1
        # A steady schedule: an operation that stalled does not cause a burst to catch up.
        next_at = max(next_at + interval, ended)


class Workload:
    """The workload in this process: `connect`, then any number of `run`s, then `close`."""

    def __init__(self, url: str, pools: Pools, config: WorkloadConfig = WorkloadConfig()) -> None:
        if not pools.leads or not pools.jobs:
            raise ValueError("The workload needs existing leads (with a customer) and jobs to work on.")
        self.url, self.pools, self.config = url, pools, config
        self.conns: list[psycopg.Connection] = []
        self.runs = 0

    def connect(self) -> None:
        for _ in range(self.config.connections):
            conn = psycopg.connect(self.url, autocommit=True, application_name=self.config.application_name)
            conn.execute(
                "SELECT set_config('statement_timeout', %s, false)", (f"{self.config.statement_timeout_ms}ms",)
            )
            self.conns.append(conn)

    def run(self, stop: threading.Event) -> Ops:
        """Run until `stop` is set or a bound is reached; every connection's operations, merged."""
        if not self.conns:
            self.connect()
        self.runs += 1
        deadline = time.monotonic() + self.config.max_seconds
        budget, lock = [self.config.max_ops], threading.Lock()
        outs = [Ops() for _ in self.conns]
        threads = [
            threading.Thread(
                target=_worker,
                daemon=True,
                args=(conn, i, self.config, self.pools, self.runs, stop, deadline, budget, lock, outs[i]),
            )
            for i, conn in enumerate(self.conns)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        merged = Ops()
        for o in outs:
            merged.extend(o)
        # Replace broken connections for the next run.
        for i, conn in enumerate(self.conns):
            if conn.closed or conn.broken:
                self.conns[i] = psycopg.connect(
                    self.url, autocommit=True, application_name=self.config.application_name
                )
        return merged

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.conns = []


def _serve(url: str, pools: Pools, config: WorkloadConfig, pipe) -> None:
    workload = Workload(url, pools, config)
    try:
        workload.connect()
        pipe.send(("ready", None))
        while True:
            command = pipe.recv()
            if command == "close":
                break
            if command != "start":
                continue
            stop = threading.Event()
            result: list[Ops] = []
            runner = threading.Thread(
                target=lambda result=result, stop=stop: result.append(workload.run(stop)), daemon=True
            )
            runner.start()
            pipe.send(("started", time.monotonic()))
            while runner.is_alive():
                if pipe.poll(0.05) and pipe.recv() == "stop":
                    stop.set()
            runner.join()
            pipe.send(("ops", result[0]))
    except Exception as exc:  # tell the parent rather than leave it waiting
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        workload.close()


class WorkloadProcess:
    """The workload in a process of its own, driven from this one: start() ... stop() -> Ops."""

    def __init__(self, url: str, pools: Pools, config: WorkloadConfig = WorkloadConfig()) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipe, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(url, pools, config, child), daemon=True)
        self.config = config

    def __enter__(self) -> WorkloadProcess:
        self._process.start()
        self._expect("ready", 30)
        return self

    def _expect(self, what: str, timeout: float):
        if not self._pipe.poll(timeout):
            raise RuntimeError(f"The workload process did not answer {what!r} within {timeout:g} s.")
        tag, value = self._pipe.recv()
        if tag == "error":
            raise RuntimeError(f"The workload process failed: {value}")
        if tag != what:
            raise RuntimeError(f"The workload process said {tag!r}, expected {what!r}.")
        return value

    def start(self) -> float:
        """Start a run; returns the moment (monotonic) it started."""
        self._pipe.send("start")
        return self._expect("started", 30)

    def stop(self) -> Ops:
        self._pipe.send("stop")
        return self._expect("ops", self.config.statement_timeout_ms / 1000 + 30)

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self._pipe.send("close")
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
