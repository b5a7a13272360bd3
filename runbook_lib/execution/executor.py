"""Running a plan of steps: each step under lock_timeout with bounded retries, measured as it runs.

The executor knows statements, steps and locks; what a failure leaves behind and how a rerun resumes is
`resume`, and the ledger and Prisma records around a run are `recording`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace

import psycopg
import psycopg.errors
from psycopg.rows import dict_row

from runbook_lib import names
from runbook_lib.batch import blocks as sqlblocks
from runbook_lib.config import BACKOFF_MS, DEFAULTS, MAX_BACKOFF_S
from runbook_lib.db import catalog, reader
from runbook_lib.errors import MigrationFailed
from runbook_lib.execution import backfill, blockers, guard, resume, watch
from runbook_lib.execution.failure import (
    GaveUp,
    VerificationFailed,
    fail,
    server_message,
)
from runbook_lib.execution.session import Session
from runbook_lib.report import records
from runbook_lib.report.records import ExecutionResult, HeldLock, StatementRun, StepRun
from runbook_lib.sql import analysis, linked_locks, locks, plan

# Called with a step's number after it commits. Production code never adds to it: the fault tests do,
# to stop a run at a known point between two steps and kill it there.
AFTER_STEP_HOOKS: list[Callable[[int], None]] = []
# Called with a step's number inside its transaction, after its ledger progress and Prisma row are
# written and before its COMMIT; production never adds to it either (the kill tests stop a run there).
BEFORE_COMMIT_HOOKS: list[Callable[[int], None]] = []

# Told, inside a committed step's transaction (before its COMMIT), how many steps stay and whether it is the last.
StepRecorder = Callable[[psycopg.Connection, int, int, bool], None]


def _as_runbook(conn: psycopg.Connection, search_path: str) -> None:
    """Undo, for the rest of this transaction only, what the migration's SQL set: runbook's records resolve
    their tables with the search_path the run started with, as the session user (the migration's own
    settings come back after COMMIT, until the RESET ALL at the end)."""
    # one round trip: set_config('role', 'none', true) is SET LOCAL ROLE NONE
    conn.execute("SELECT set_config('search_path', %s, true), set_config('role', 'none', true)", (search_path,))


_HELD_LOCKS_SQL = (
    "SELECT c.relname, n.nspname, l.mode FROM pg_locks l"
    " JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted"
    " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND c.relkind IN ('r', 'p')"
    " ORDER BY c.relname, l.mode"
)


def _held_locks(conn: psycopg.Connection) -> list[tuple[str, str]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_HELD_LOCKS_SQL).fetchall()
    return [
        (r["relname"] if r["nspname"] == "public" else f"{r['nspname']}.{r['relname']}", locks.from_pg_locks(r["mode"]))
        for r in rows
    ]


class _Clock:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return round(time.perf_counter() - self.t0, 6)


# The tables (by their names for to_regclass), as regclass text in the order given; tables not there yet are left out.
_REGCLASS_SQL = (
    "SELECT u.i, c.oid::regclass::text FROM unnest(%s::text[]) WITH ORDINALITY u(name, i)"
    " JOIN pg_class c ON c.oid = to_regclass(u.name) ORDER BY u.i"
)
# The foreign keys among the same tables: (referencing, referenced) as regclass text.
_FK_PAIRS_SQL = """
WITH t AS (SELECT array_agg(to_regclass(name)::oid) AS oids FROM unnest(%s::text[]) name)
SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c, t
WHERE c.contype = 'f' AND c.conrelid = ANY(t.oids) AND c.confrelid = ANY(t.oids) AND c.conrelid <> c.confrelid
"""


def lock_order(conn: psycopg.Connection, step: plan.Step) -> list[tuple[str, str]]:
    """The write-blocking locks to take first, in the application's order: referencing tables before the
    tables they reference (an INSERT into "Job" locks "Job", then "Lead" for its foreign key).

    Taking "Lead" first and "Job" later, as a migration may be written, deadlocks with such an INSERT.
    Only tables linked by a foreign key within the step are locked ahead: locking an unrelated table
    early would only hold it longer.
    """
    wanted: dict[str, str] = {}
    for stmt in step.statements:
        for table, mode in stmt.table_locks:
            if locks.blocks_writes(mode):
                wanted[table] = locks.strongest([mode, wanted.get(table, mode)])
    if len(wanted) < 2:
        return []
    tables = list(wanted)
    names = [catalog.regclass_text(table) for table in tables]
    with conn.pipeline():  # both queries in one round trip
        found = conn.cursor().execute(_REGCLASS_SQL, (names,))
        pairs = conn.cursor().execute(_FK_PAIRS_SQL, (names,))
    written = {regclass: tables[i - 1] for i, regclass in found.fetchall()}  # -> the name as the SQL wrote it
    edges = [(written[a], written[b]) for a, b in pairs.fetchall() if a in written and b in written]
    linked = [t for t in wanted if any(t in edge for edge in edges)]
    if len(linked) < 2:
        return []
    ordered: list[str] = []
    pending = list(linked)
    while pending:  # referencing before referenced; a cycle falls back to the order of the SQL
        ready = [
            t for t in pending if not any(child in pending and child != t and parent == t for child, parent in edges)
        ]
        pick = ready[0] if ready else pending[0]
        ordered.append(pick)
        pending.remove(pick)
    return [(t, wanted[t]) for t in ordered]


def _status(exc: psycopg.Error, watcher: guard.Guard | None) -> tuple[str, str]:
    """A statement's status and error: a lock timeout, or a request the live guard cancelled, counts as waited."""
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return names.LOCK_TIMEOUT, server_message(exc)
    if isinstance(exc, psycopg.errors.QueryCanceled) and watcher is not None and watcher.settle():
        return names.LOCK_TIMEOUT, f"cancelled by runbook's guard: {watcher.fired}"
    return names.FAILED, server_message(exc)


def _run_statements(
    conn: psycopg.Connection,
    step: plan.Step,
    attempt: int,
    clock: _Clock,
    runs: list[StatementRun],
    acquired: dict[tuple[str, str], float],
    url: str | None = None,
    watcher: guard.Guard | None = None,
) -> list[tuple[str, str]] | None:
    """The step's statements; returns the locks held after the last one (None outside a transaction)."""
    held: list[tuple[str, str]] | None = None
    if not conn.autocommit:
        ahead = lock_order(conn, step)
        if ahead:
            start = clock()
            # mode is one of locks.LOCK_MODES and the name is quoted: nothing here comes from input unescaped
            commands = [f"LOCK TABLE {catalog.regclass_text(t)} IN {mode} MODE" for t, mode in ahead]
            text = "; ".join(commands)
            try:
                for command in commands:
                    conn.execute(command)
            except psycopg.Error as exc:
                status, error = _status(exc, watcher)
                runs.append(
                    StatementRun(
                        0,
                        0,
                        "LOCK TABLE (runbook: the step's locks, in the application's order)",
                        text,
                        attempt,
                        start,
                        round(clock() - start, 6),
                        0,
                        status,
                        "",
                        error,
                        step.number,
                        ", ".join(f"{m} on {t}" for t, m in ahead),
                    )
                )
                raise
            taken: list[tuple[str, str]] = [lock for lock in _held_locks(conn) if lock not in acquired]
            for lock in taken:
                acquired[lock] = start
            runs.append(
                StatementRun(
                    0,
                    0,
                    "LOCK TABLE (runbook: the step's locks, in the application's order)",
                    text,
                    attempt,
                    start,
                    round(clock() - start, 6),
                    0,
                    names.OK,
                    ", ".join(f"{mode} on {rel}" for rel, mode in taken),
                    "",
                    step.number,
                    ", ".join(f"{m} on {t}" for t, m in ahead),
                )
            )
    for stmt in step.statements:
        start = clock()
        try:
            with watch.statement(
                url, conn, f"step {step.number}, {stmt.kind}" + (f" ({stmt.locks})" if stmt.locks else "")
            ):
                # not in a pipeline with the read of its locks: a backend terminated mid-statement would then
                # say only that the connection closed, not why (57P01)
                cur = conn.execute(stmt.sql)
        except psycopg.Error as exc:
            status, error = _status(exc, watcher)
            runs.append(
                StatementRun(
                    stmt.index,
                    stmt.line,
                    stmt.kind,
                    stmt.sql,
                    attempt,
                    start,
                    round(clock() - start, 6),
                    0,
                    status,
                    "",
                    error,
                    step.number,
                    stmt.locks,
                )
            )
            raise
        duration = round(clock() - start, 6)
        taken = []
        if not conn.autocommit:
            # Which locks this statement took, measured in pg_locks (not guessed from the SQL).
            held = _held_locks(conn)
            taken = [lock for lock in held if lock not in acquired]
            for lock in taken:
                acquired[lock] = start
        measured = ", ".join(f"{mode} on {rel}" for rel, mode in taken) or ("none new" if not conn.autocommit else "")
        runs.append(
            StatementRun(
                stmt.index,
                stmt.line,
                stmt.kind,
                stmt.sql,
                attempt,
                start,
                duration,
                max(cur.rowcount, 0),
                names.OK,
                measured,
                "",
                step.number,
                stmt.locks,
            )
        )
    return held


def _modes(lock_text: str) -> list[str]:
    return [part.split(" on ")[0] for part in lock_text.split(", ") if " on " in part]


def _run_step(
    conn: psycopg.Connection,
    step: plan.Step,
    *,
    clock: _Clock,
    dry_run: bool,
    result: ExecutionResult,
    tables_touched: list[str],
    max_attempts: int,
    backoff_ms: int,
    verify: Callable[[psycopg.Connection], list[sqlblocks.BlockResult]] | None,
    last: bool,
    record: Callable[[psycopg.Connection], None] | None = None,
    url: str | None = None,
    lookout: blockers.Lookout | None = None,
    watcher: guard.Guard | None = None,
) -> StepRun:
    """One step with its retries; returns the StepRun, raises psycopg errors other than lock timeouts.

    `record` writes the step's ledger progress (and Prisma's row): inside the step's transaction, before
    its COMMIT, so the database never holds the step's effect without the ledger knowing it, nor the
    reverse; a step outside a transaction is recorded in a transaction of its own right after it.
    """
    started = clock()
    for attempt in range(1, max_attempts + 1):
        result.attempts += 1
        runs: list[StatementRun] = []
        acquired: dict[tuple[str, str], float] = {}
        try:
            if step.transactional:
                if lookout is not None:
                    lookout.clear(conn, step)  # wait for blockers without queuing behind them
                with conn.transaction(force_rollback=dry_run):
                    with watcher.watching() if watcher is not None else nullcontext():
                        held = _run_statements(conn, step, attempt, clock, runs, acquired, url, watcher)
                    if verify is not None and last:
                        result.verification = verify(conn)
                        failed = [b for b in result.verification if not b.passed]
                        if failed:
                            raise VerificationFailed(failed)
                        held = None  # the tests ran since: read again
                    if held is None:
                        held = _held_locks(conn)
                    if dry_run:
                        result.after = catalog.snapshot(conn, tables_touched)
                    elif record is not None:
                        record(conn)
                        for hook in BEFORE_COMMIT_HOOKS:  # empty in production: see BEFORE_COMMIT_HOOKS
                            hook(step.number)
                end = clock()
                new = {t.name for t in result.before.tables if not t.exists} if result.before else set()
                holds = _lock_holds(held, acquired, end, step.number, new) + backfill.row_lock_holds(
                    runs, end, step.number
                )
            else:
                conn.autocommit = True
                try:
                    _run_statements(conn, step, attempt, clock, runs, acquired, url)
                finally:
                    conn.autocommit = False
                if record is not None and not dry_run:
                    with conn.transaction():  # a resume re-checks the step itself (plan.Step.done_check)
                        record(conn)
                        for hook in BEFORE_COMMIT_HOOKS:  # empty in production: see BEFORE_COMMIT_HOOKS
                            hook(step.number)
                holds = []
            result.statements += runs
            result.locks_before_commit += holds
            longest = max((h.held_s or 0.0 for h in holds if h.blocks_writes), default=0.0)
            status = names.ROLLED_BACK_DRY_RUN if dry_run else names.COMMITTED
            return StepRun(
                step.number, step.purpose, step.transactional, status, attempt, round(clock() - started, 6), longest
            )
        except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled) as exc:
            if isinstance(exc, psycopg.errors.QueryCanceled) and not (watcher is not None and watcher.fired):
                result.statements += runs
                raise  # statement_timeout, or a cancel from outside: a failure, not a wait
            result.statements += runs
            # While its lock request waited, every writer queued behind it: that wait blocked writes too.
            waited = [r for r in runs if r.status == names.LOCK_TIMEOUT]
            if waited and any(locks.blocks_writes(m) for m in _modes(waited[-1].expected_locks)):
                result.longest_queue_wait_s = max(result.longest_queue_wait_s, waited[-1].duration_s)
            if attempt == max_attempts:
                raise GaveUp(attempt, exc) from None
            delay = backoff_ms / 1000 * (2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            time.sleep(min(delay, MAX_BACKOFF_S))
        except VerificationFailed:
            result.statements += [replace(r, status=names.ROLLED_BACK) for r in runs]
            raise
        except psycopg.Error:
            result.statements += runs
            raise
    raise AssertionError("unreachable")


def execute(
    session: Session,
    *,
    phase: str,
    sql_text: str,
    filename: str,
    tables_touched: list[str],
    dry_run: bool = False,
    strategy: str = plan.DIRECT,
    lock_timeout_ms: int = DEFAULTS.lock_timeout_ms,
    statement_timeout_ms: int = DEFAULTS.statement_timeout_ms,
    max_attempts: int = DEFAULTS.max_attempts,
    backoff_ms: int = BACKOFF_MS,
    resume_after: int | None = None,
    resume_steps: tuple[str, ...] | None = None,
    verify: Callable[[psycopg.Connection], list[sqlblocks.BlockResult]] | None = None,
    on_step: Callable[[int, int, tuple[str, ...]], None] | None = None,
    record_step: StepRecorder | None = None,
    statements: list | None = None,
    result: ExecutionResult,
    conn: psycopg.Connection,
    blocker_policy: blockers.Policy | None = None,
    on_terminated: Callable[[records.BlockerWait], None] | None = None,
    backfill_context: backfill.Context | None = None,
    resume_exact: bool = False,
    stop_after: int | None = None,
) -> ExecutionResult:
    """Run `sql_text` step by step; each step is retried whole when a lock is not granted in time.

    `resume_after` (None: a fresh run) skips the steps an earlier run committed, which must read as they
    did (`resume_steps`, that run's step fingerprints; None: not recorded); the group it resumes
    in starts over, after its clean-up removes what a killed run may have left half made; a step outside
    a transaction that a killed run completed is not redone (`resume.skip_done`). `on_step(kept, total,
    fingerprints)` is told the plan before anything runs; `record_step(conn, kept, total, last)` is called inside
    every step's transaction before its COMMIT (never in a dry run). `blocker_policy` (None: neither looks
    nor guards) makes each step wait for blockers before it requests its locks and cancel a request that
    an application session queues behind; `on_terminated` is told of each session it terminated.
    `backfill_context`: how the online strategy's batched steps run, and where a stopped one resumes
    (`execution.backfill`).
    `stop_after`: stop, on purpose, once that step has committed (a runbook notebook runs one step per cell);
    `resume_exact`: the run resumed stopped so (`ledger.PAUSED`), so nothing of its group is half made and
    the run goes on at the very next step instead of redoing the group.
    """
    if statements is None:  # the caller usually parsed the file already, to refuse it before anything ran
        statements = analysis.analyze(sql_text, filename=filename, server_major=session.facts.major)
    # the far end of a foreign key a drop removes: locked in order with the rest, watched for blockers
    conn.commit()
    with reader.outside_transaction(conn):
        statements = linked_locks.refine(conn, statements)
    steps = plan.build(statements, strategy)
    if dry_run:
        whole = plan.single_transaction(steps)
        if whole is None:
            first = next(s for s in steps if not s.transactional)
            raise MigrationFailed(
                f"{filename}: a dry run executes everything in one transaction and rolls it back, but "
                f"{first.label} cannot run in a transaction; dry-run the other statements in a batch of their own."
            )
        steps = [whole]
    result.strategy, result.plan = strategy, plan.describe(steps)
    result.lock_timeout_ms, result.statement_timeout_ms = lock_timeout_ms, statement_timeout_ms
    with reader.outside_transaction(conn):
        row = conn.execute(
            "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false),"
            " current_setting('search_path')",
            (f"{lock_timeout_ms}ms", f"{statement_timeout_ms}ms"),
        ).fetchone()
    assert row is not None  # a SELECT without FROM: always one row
    search_path = row[2]
    with reader.committed(conn):  # nothing uncommitted here: a release reads these on its catalog reader
        tables_touched = catalog.tables_of(conn, tables_touched)  # an index dropped or altered: its table
        result.before = catalog.snapshot(conn, tables_touched)
    conn.commit()
    clock = _Clock()
    result.statements_started_at = records.now_iso()
    done: list[plan.Step] = []
    context = backfill_context or backfill.Context()
    if resume_after is not None and not dry_run:
        if resume_steps is not None:
            resume.require_unchanged(
                steps, resume_after, resume_steps, in_step=context.resume is not None, filename=filename, phase=phase
            )
        if not resume_exact:
            resume_after = resume.group_start(steps, resume_after + 1) - 1
            resume_after = resume.skip_done(conn, steps, resume_after, result)
            resume.clean_leftovers(conn, steps, resume_after + 1, result, session.url)
    resume_after = resume_after or 0
    if on_step is not None and not dry_run:
        on_step(resume_after, len(steps), tuple(s.fingerprint for s in steps))  # on record before anything commits

    def recorder(number: int) -> Callable[[psycopg.Connection], None] | None:
        if record_step is None or dry_run:
            return None

        def record(c: psycopg.Connection) -> None:
            _as_runbook(c, search_path)
            record_step(c, resume.kept(steps, number), len(steps), number == len(steps))

        return record

    def position_recorder(c: psycopg.Connection, position: dict) -> None:
        if context.record_position is not None:
            _as_runbook(c, search_path)
            context.record_position(c, position)

    if resume_after >= len(steps) and (record := recorder(len(steps))) is not None:
        with conn.transaction():  # every step was done already (a resumed run): only the record is missing
            record(conn)
    with _protection(session, conn, blocker_policy, result, on_terminated) as (lookout, watcher):
        for step in steps:
            if stop_after is not None and step.number > stop_after:
                break
            if step.number <= resume_after:
                result.steps.append(StepRun(step.number, step.purpose, step.transactional, names.SKIPPED))
                done.append(step)
                continue
            try:
                key = backfill.key_for(conn, step) if not dry_run else None
                if key is not None:  # its batches take row locks and ROW EXCLUSIVE, and back off on their own
                    result.steps.append(
                        backfill.run_step(
                            conn,
                            step,
                            key,
                            context=context,
                            result=result,
                            clock=clock,
                            record=recorder(step.number),
                            record_position=position_recorder,
                            before_commit=BEFORE_COMMIT_HOOKS,
                            max_attempts=max_attempts,
                            backoff_ms=backoff_ms,
                        )
                    )
                else:
                    result.steps.append(
                        _run_step(
                            conn,
                            step,
                            clock=clock,
                            dry_run=dry_run,
                            result=result,
                            tables_touched=tables_touched,
                            max_attempts=max_attempts,
                            backoff_ms=backoff_ms,
                            verify=verify,
                            last=step is steps[-1],
                            record=recorder(step.number),
                            url=session.url,
                            lookout=lookout,
                            watcher=watcher,
                        )
                    )
                done.append(step)
                for hook in AFTER_STEP_HOOKS:  # empty in production: see AFTER_STEP_HOOKS
                    hook(step.number)
            except (GaveUp, VerificationFailed, blockers.BlockedTooLong, psycopg.Error) as exc:
                result.steps.append(
                    StepRun(step.number, step.purpose, step.transactional, names.FAILED, result.attempts)
                )
                fail(conn, result, steps, done, step, exc, filename, lock_timeout_ms, session.url)
    result.steps_kept = 0 if dry_run else min(len(steps), stop_after or len(steps))
    result.longest_write_block_s = max([s.longest_write_block_s for s in result.steps] + [result.longest_queue_wait_s])
    if not dry_run:
        # Settings the migration made (search_path, timeouts, roles) must not follow runbook's own queries.
        conn.commit()
        with reader.outside_transaction(conn):
            conn.execute("RESET ALL")
        with reader.committed(conn):  # every step committed
            result.after = catalog.snapshot(conn, tables_touched)
        conn.commit()
    assert result.after is not None  # taken just above, or by the dry run's one step (which raised if it failed)
    result.changes = catalog.diff(result.before, result.after)
    return result


@contextmanager
def _protection(
    session: Session,
    conn: psycopg.Connection,
    policy: blockers.Policy | None,
    result: ExecutionResult,
    on_terminated: Callable[[records.BlockerWait], None] | None,
) -> Iterator[tuple[blockers.Lookout | None, guard.Guard | None]]:
    """The run's look-before (blockers) and live guard, when a policy asks for them; the guard's thread ends with it."""
    if policy is None:
        yield None, None
        return
    pid = conn.info.backend_pid
    shared = guard.shared_for(session.url, pid) if session.url else None  # a release's, kept for its next run
    watcher = shared or (guard.Guard(session.url, pid) if session.url else None)
    cancels_before = watcher.cancels if watcher is not None else 0
    try:
        yield blockers.Lookout(policy, result, on_terminated), watcher
    finally:
        if watcher is not None:
            if shared is None:
                watcher.close()
            result.guard_cancels = watcher.cancels - cancels_before


def _lock_holds(
    held: list[tuple[str, str]],
    acquired: dict[tuple[str, str], float],
    end: float,
    step: int,
    new: set[str] | frozenset[str] = frozenset(),
) -> list[HeldLock]:
    """Each table locked at commit: its strongest mode, held from the statement that first took a lock on it.

    A table in `new` did not exist before the migration: no application could be writing it, so its lock
    blocked no write (batch 6's backup table held ACCESS EXCLUSIVE longest, and was the 'write block')."""
    by_relation: dict[str, list[str]] = {}
    for relation, mode in held:
        by_relation.setdefault(relation, []).append(mode)
    result = []
    for relation, modes in by_relation.items():
        mode = locks.strongest(modes)
        # held since the first mode that blocks writes; when none does, since the mode shown was taken
        # (an ACCESS SHARE taken statements earlier would otherwise lend its time to a later ROW EXCLUSIVE)
        blocking = [acquired.get((relation, m), 0.0) for m in modes if locks.blocks_writes(m)]
        since = min(blocking) if blocking else acquired.get((relation, mode), 0.0)
        result.append(
            HeldLock(relation, mode, locks.blocks_writes(mode) and relation not in new, round(end - since, 6), step)
        )
    return result
