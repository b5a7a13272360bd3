"""A data statement run in batches by keyset, each batch a short transaction that commits its position with it.

One UPDATE of a million rows holds a million row locks until it commits: every application write to any of
them waits for the whole statement. Here each batch takes the next keys of the table's primary key (from its
index, LIMIT n: a keyset, never OFFSET), runs the statement narrowed to that key range (`sql.batching`), writes
the last key done into the ledger row and commits, all in one transaction: whatever is killed when, the
position in the ledger is exactly the work in the database, and a rerun goes on after it (no row twice, none
skipped, whatever the SET does). Before the first batch, tables the statement reads whose statistics
misdescribe them (a backup table an earlier step filled, never analyzed or since grown) are analyzed, and after
the last, a table it changed enough for autovacuum to analyze is vacuumed first (`upkeep`). Between batches:
the size adapts toward a target transaction time, a batch that waits lock_timeout for a row is retried smaller
after a pause, a throttle, a WAL budget (`walrate`) and replica lag may pause it, and progress goes to the
notebook and the terminal (`live`); past a checkpoint's worth of WAL the session writes back as it goes
(`writeback`).
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
import psycopg.errors
from psycopg import sql

from runbook_lib import names
from runbook_lib.config import DEFAULTS, MAX_BACKOFF_S, Options
from runbook_lib.db import catalog
from runbook_lib.execution import live, replica, upkeep, walrate, writeback
from runbook_lib.execution.failure import GaveUp, server_message
from runbook_lib.report.records import BackfillRun, ExecutionResult, HeldLock, StatementRun, StepRun
from runbook_lib.sql import batching, plan

FIRST_SIZE = 500  # keys in the first batch; the size then follows the measured time
MIN_SIZE, MAX_SIZE = 10, 200_000
ROW_LOCKS = "row locks"  # HeldLock.mode of the rows a transaction changed (held to its COMMIT)

# A batch reaches its few thousand rows through the key's index and index probes. Planned for its own range,
# a batch whose range the planner overestimates (histograms of text keys are coarse) picks a plan for a big
# job instead: a hash join over all of a joined table, a bitmap of another index over the whole table. At 1M
# leads every fourth batch of batch 6 did, taking 25 ms instead of 8 with its rows locked. Within a batch's
# transaction those plans cost more than anything else (PostgreSQL still uses them where there is no other way).
_BATCH_SETTINGS = (
    "SELECT set_config('synchronous_commit', %s, true), set_config('enable_seqscan', 'off', true), "
    "set_config('enable_bitmapscan', 'off', true), set_config('enable_hashjoin', 'off', true), "
    f"set_config('enable_mergejoin', 'off', true), {walrate.POSITION_SQL}"
)


# Called with (step, batch) inside each batch's transaction, after its position is written and before its
# COMMIT. Production never adds to it: the kill tests stop a backfill there and SIGKILL it.
BEFORE_BATCH_COMMIT_HOOKS: list[Callable[[int, int], None]] = []


@dataclass(frozen=True)
class Settings:
    """How hard a backfill may push: the batch time it aims at, a throttle, the replica lag it tolerates."""

    target_ms: int = DEFAULTS.backfill_batch_ms
    rows_per_s: int = DEFAULTS.backfill_rows_per_s  # 0: no limit
    pause_ms: int = DEFAULTS.backfill_pause_ms
    max_replica_lag_ms: int = DEFAULTS.max_replica_lag_ms  # 0: replicas are not watched
    wal_mb_per_s: float = DEFAULTS.backfill_wal_mb_per_s  # 0: no limit
    flush_from_mb: float | None = DEFAULTS.backfill_flush_from_mb  # None: the server's checkpoint distance; 0: never

    @classmethod
    def of(cls, options: Options) -> Settings:
        return cls(
            options.backfill_batch_ms,
            options.backfill_rows_per_s,
            options.backfill_pause_ms,
            options.max_replica_lag_ms,
            options.backfill_wal_mb_per_s,
            options.backfill_flush_from_mb,
        )


@dataclass
class Context:
    """What the executor hands a batched step: its settings, where a stopped run got to, how to record it."""

    settings: Settings = field(default_factory=Settings)
    resume: dict | None = None  # the ledger's position: {"step", "after", "rows", "keys", "batches", "wal"}
    record_position: Callable[[psycopg.Connection, dict], None] | None = None
    lag: Callable[[psycopg.Connection], float | None] | None = None  # None: the server's (replica.LagWatch.measure)
    writeback: writeback.Writeback = field(init=False)  # the migration's WAL across its batched steps

    def __post_init__(self) -> None:
        # a resumed migration goes on counting from the WAL its stopped run's batches had written ("wal", bytes)
        wal = int((self.resume or {}).get("wal", 0))
        self.writeback = writeback.Writeback(self.settings.flush_from_mb, written=wal)


def next_size(size: int, took_s: float, target_s: float) -> int:
    """The next batch's key count: scaled toward the target time, at most halved or doubled at once."""
    factor = 2.0 if took_s <= 0 else min(2.0, max(0.5, target_s / took_s))
    return int(min(MAX_SIZE, max(MIN_SIZE, size * factor)))


def key_for(conn: psycopg.Connection, step: plan.Step) -> batching.Key | None:
    """The primary key a batched step walks; None runs the step whole (not batched, or no key by now)."""
    if step.backfill is None:
        return None
    key = batching.primary_key(conn, step.backfill.table)
    conn.commit()
    return key


def row_lock_holds(runs: list[StatementRun], end: float, step: int) -> list[HeldLock]:
    """The rows a transaction's UPDATE / DELETE changed stay locked to its COMMIT: writers of them wait that long."""
    first: dict[str, tuple[float, int]] = {}
    for run in runs:
        if run.status != names.OK or run.rowcount <= 0 or not run.kind.startswith(("UPDATE", "DELETE", "MERGE")):
            continue
        table = next(
            (
                part.split(" on ", 1)[1]
                for part in run.expected_locks.split(", ")
                if part.startswith("ROW EXCLUSIVE on ")
            ),
            "",
        )
        if table:
            since, rows = first.get(table, (run.started_offset_s, 0))
            first[table] = (since, rows + run.rowcount)
    return [
        HeldLock(table, ROW_LOCKS, True, round(end - since, 6), step, rows) for table, (since, rows) in first.items()
    ]


def _estimate(conn: psycopg.Connection, table: str) -> int:
    """Rows in the table, from the planner's statistics (progress needs an order of magnitude, not a count)."""
    name = catalog.regclass_text(table)
    row = conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", (name,)).fetchone()
    if row is not None and row[0] < 0:  # never analyzed (a table the migration just filled): count it once
        row = conn.execute(f"SELECT count(*) FROM {name}").fetchone()
    conn.commit()
    return max(int(row[0]), 0) if row else 0


def _eta(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


@dataclass
class _Tally:
    """What the batches of this run did, for the record and the live line."""

    rows: int = 0
    keys: int = 0
    batches: int = 0
    lock_timeouts: int = 0
    throttle_s: float = 0.0
    durations: list[float] = field(default_factory=list)
    holds: list[float] = field(default_factory=list)
    rows_per_batch: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Run:
    """One batched step as this run takes it up: what it runs, where an earlier run stopped, what it analyzed."""

    step: plan.Step
    key: batching.Key
    settings: Settings
    resumed: dict | None  # the ledger's position when this run resumed a stopped one
    before: dict  # rows, keys and batches done before this run (0 without a resume)
    analyzed: list[str]  # tables given fresh statistics first, each with why
    started: float
    pace: walrate.WalPace  # the server's WAL while the batches ran, and the pauses that kept it in budget
    writeback: writeback.Writeback  # whether the session writes back as it goes, from how much WAL on

    @property
    def found(self) -> batching.Candidate:
        found = self.step.backfill
        assert found is not None  # a step is batched for its backfill (key_for)
        return found

    @property
    def stmt(self) -> plan.PlannedStatement:
        return self.step.statements[0]


def run_step(
    conn: psycopg.Connection,
    step: plan.Step,
    key: batching.Key,
    *,
    context: Context,
    result: ExecutionResult,
    clock: Callable[[], float],
    record: Callable[[psycopg.Connection], None] | None,
    record_position: Callable[[psycopg.Connection, dict], None] | None,
    before_commit: list[Callable[[int], None]],
    max_attempts: int,
    backoff_ms: int,
) -> StepRun:
    """Every batch of one step; the transaction that finds no key left records the step itself (`record`).

    A lock timeout (or deadlock) retries the batch half as large after a backoff, up to `max_attempts` in a
    row; any other error stops the step with every committed batch kept, and raises.
    """
    found, stmt, settings = step.backfill, step.statements[0], context.settings
    assert found is not None  # a step is batched for its backfill: key_for gave it a key
    resumed = context.resume if context.resume and context.resume.get("step") == step.number else None
    after: list[str] | None = list(resumed["after"]) if resumed else None
    done_before = {k: int(resumed.get(k, 0)) for k in ("rows", "keys", "batches")} if resumed else {}
    what = f"step {step.number}, {found.kind} {found.table}"
    lag = replica.LagWatch(settings.max_replica_lag_ms, read=context.lag)
    analyzed = upkeep.fresh_statistics(conn, [table for table, _mode in stmt.table_locks])
    total = _estimate(conn, key.table)
    pace = walrate.WalPace(settings.wal_mb_per_s)
    name = f"runbook_backfill_{uuid.uuid4().hex[:12]}"
    with conn.transaction():
        conn.execute(f"PREPARE {name} ({', '.join(key.types * 2)}) AS {batching.batch_sql(found, key)}")
        # each batch is planned for its own range: a generic plan could pick a scan of the whole table
        conn.execute("SELECT set_config('plan_cache_mode', 'force_custom_plan', false)")
    tally = _Tally()
    size, in_a_row, status = FIRST_SIZE, 0, "stopped"
    started, t0 = clock(), time.perf_counter()
    run = _Run(step, key, settings, resumed, done_before, analyzed, started, pace, context.writeback)
    try:
        while True:
            if tally.batches:
                lag.wait(conn, what)
            tally.sizes.append(size)
            began = time.perf_counter()
            try:
                with conn.transaction():
                    bounds, _ = batching.bounds_sql(key, after=after is not None, limit=size)
                    row = conn.execute(bounds, after or ()).fetchone()
                    assert row is not None  # three scalar subqueries: always one row
                    first, last, count = row
                    # A batch's rows stay locked until its COMMIT returns: not waiting there for the WAL flush
                    # keeps that short. A crash may then lose the last few batches, but each with its position
                    # (one transaction): a resume redoes exactly those. The step's last transaction, which
                    # records it done, waits for the flush, and with it for every batch before it.
                    settings_row = conn.execute(_BATCH_SETTINGS, ("on" if first is None else "off",)).fetchone()
                    assert settings_row is not None  # a SELECT without FROM: always one row
                    position_now = settings_row[-1]
                    if first is None:  # nothing left: the step is done, recorded in this transaction
                        if record is not None:
                            record(conn)
                            for hook in before_commit:  # empty in production (executor.BEFORE_COMMIT_HOOKS)
                                hook(step.number)
                        tally.sizes.pop()
                        break
                    dml = time.perf_counter()
                    cur = conn.execute(
                        sql.SQL("EXECUTE {} ({})").format(
                            sql.Identifier(name), sql.SQL(", ").join(sql.Literal(v) for v in first + last)
                        )
                    )
                    changed = max(cur.rowcount, 0)
                    position = {
                        "step": step.number,
                        "after": last,
                        "rows": done_before.get("rows", 0) + tally.rows + changed,
                        "keys": done_before.get("keys", 0) + tally.keys + count,
                        "batches": done_before.get("batches", 0) + tally.batches + 1,
                        "wal": context.writeback.written,
                    }  # the migration's, up to the last batch
                    if record_position is not None:
                        record_position(conn, position)
                    for batch_hook in BEFORE_BATCH_COMMIT_HOOKS:  # empty in production
                        batch_hook(step.number, tally.batches + 1)
                ended = time.perf_counter()
            except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
                tally.sizes.pop()
                tally.lock_timeouts += 1
                in_a_row += 1
                if in_a_row >= max_attempts:
                    raise GaveUp(in_a_row, exc) from None
                size = max(MIN_SIZE, size // 2)  # fewer rows locked, for less time, next try
                time.sleep(min(backoff_ms / 1000 * 2 ** (in_a_row - 1) * random.uniform(0.5, 1.5), MAX_BACKOFF_S))
                continue
            in_a_row = 0
            after = last
            took = ended - began
            tally.batches += 1
            tally.rows += changed
            tally.keys += count
            tally.durations.append(took)
            tally.holds.append(ended - dml)
            tally.rows_per_batch.append(changed)
            if count >= size:
                size = next_size(size, took, settings.target_ms / 1000)
            _progress(what, tally, done_before, total, time.perf_counter() - t0)
            context.writeback.add(conn, pace.note(int(position_now)))
            _throttle(settings, tally, changed, took)
            pace.pause()
        status = "completed"
    except (GaveUp, psycopg.Error) as exc:
        _finish(
            result,
            run,
            tally,
            after=after,
            ended=clock(),
            status=status,
            paused_s=lag.paused_s,
            error=server_message(exc.exc if isinstance(exc, GaveUp) else exc),
        )
        raise
    finally:
        _deallocate(conn, name)
    ended = clock()
    vacuumed = None
    if found.kind in ("UPDATE", "DELETE"):  # each row it changed left a dead version in the table and its indexes
        vacuumed = upkeep.vacuum_after(conn, key.table, done_before.get("rows", 0) + tally.rows, what)
    _finish(result, run, tally, after=after, ended=ended, status=status, paused_s=lag.paused_s, vacuumed=vacuumed)
    live.emit(
        live.BACKFILL,
        f"{what}: {tally.rows:,} rows in {tally.batches:,} batches",
        done=tally.keys,
        total=max(total, tally.keys),
        unit="rows",
        final=True,
    )
    # inserted rows are invisible to other sessions until the commit: no application write waits for them
    longest = max(tally.holds, default=0.0) if found.kind != "INSERT … SELECT" else 0.0
    return StepRun(
        step.number,
        step.purpose,
        True,
        names.COMMITTED,
        1 + tally.lock_timeouts,
        round(clock() - started, 6),
        round(longest, 6),
    )


def _progress(what: str, tally: _Tally, before: dict, total: int, elapsed: float) -> None:
    keys = before.get("keys", 0) + tally.keys
    rate = tally.rows / elapsed if elapsed > 0 else 0.0
    key_rate = tally.keys / elapsed if elapsed > 0 else 0.0
    total = max(total, keys)
    left = f", about {_eta((total - keys) / key_rate)} left" if key_rate > 0 and total > keys else ""
    live.emit(
        live.BACKFILL,
        f"{what}: {before.get('rows', 0) + tally.rows:,} rows changed, {keys:,} of ~{total:,} "
        f"scanned, {rate:,.0f} rows/s{left}",
        done=keys,
        total=total,
        unit="rows",
    )


def _throttle(settings: Settings, tally: _Tally, changed: int, took: float) -> None:
    """The pause between batches: the fixed one, or what keeps the rate under rows_per_s, whichever is longer."""
    pause = settings.pause_ms / 1000
    if settings.rows_per_s > 0 and changed:
        pause = max(pause, changed / settings.rows_per_s - took)
    if pause > 0:
        time.sleep(pause)
        tally.throttle_s += pause


def _deallocate(conn: psycopg.Connection, name: str) -> None:
    if conn.closed or conn.broken:
        return
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.rollback()
        conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))
        conn.commit()
    except psycopg.Error:
        conn.rollback()  # the statement went with a failed connection; nothing to free


def _finish(
    result: ExecutionResult,
    run: _Run,
    tally: _Tally,
    *,
    after: list[str] | None,
    ended: float,
    status: str,
    paused_s: float,
    error: str = "",
    vacuumed: upkeep.Vacuumed | None = None,
) -> None:
    """The step's record: one timeline entry for all its batches, its row locks, and the batch figures."""
    step, stmt, found, key, started = run.step, run.stmt, run.found, run.key, run.started
    longest = round(max(tally.holds, default=0.0), 6)
    result.backfills.append(
        BackfillRun(
            step.number,
            stmt.index,
            found.kind,
            found.table,
            key.label,
            status,
            tally.rows,
            tally.keys,
            tally.batches,
            round(statistics.median(tally.rows_per_batch), 1) if tally.rows_per_batch else 0.0,
            max(tally.rows_per_batch, default=0),
            round(statistics.median(tally.durations), 6) if tally.durations else 0.0,
            round(max(tally.durations, default=0.0), 6),
            longest,
            run.settings.target_ms,
            tally.sizes[0] if tally.sizes else 0,
            tally.sizes[-1] if tally.sizes else 0,
            tally.lock_timeouts,
            round(paused_s, 3),
            round(tally.throttle_s, 3),
            round(ended - started, 6),
            ", ".join(run.resumed["after"]) if run.resumed else "",
            run.before.get("rows", 0),
            ", ".join(after or []),
            "; ".join(run.analyzed),
            vacuumed.text if vacuumed else "",
            vacuumed.seconds if vacuumed else 0.0,
            round(run.pace.written / walrate.MB, 1),
            run.pace.mb_per_s,
            round(run.pace.paused_s, 3),
            run.writeback.since_mb,
            run.writeback.setting,
            run.writeback.kept,
            run.writeback.threshold_mb,
            run.writeback.threshold,
        )
    )
    result.attempts += 1 + tally.lock_timeouts
    kind = f"{stmt.kind} in {tally.batches:,} batch(es) by keyset on {found.table} ({key.label})"
    result.statements.append(
        StatementRun(
            stmt.index,
            stmt.line,
            kind,
            stmt.sql,
            1,
            started,
            round(ended - started, 6),
            tally.rows,
            names.OK if not error else names.FAILED,
            f"{ROW_LOCKS} on at most {max(tally.rows_per_batch, default=0):,} rows per batch, "
            f"{longest * 1000:.1f} ms at most",
            error,
            step.number,
            stmt.locks,
        )
    )
    if tally.holds:
        worst = tally.holds.index(max(tally.holds))
        result.locks_before_commit.append(
            HeldLock(
                found.table if found.kind != "INSERT … SELECT" else stmt.table_locks[0][0],
                ROW_LOCKS,
                found.kind != "INSERT … SELECT",
                longest,
                step.number,
                tally.rows_per_batch[worst],
            )
        )
