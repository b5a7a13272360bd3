"""Running a SQL file as a migration: a plan of steps, lock_timeout with bounded retries, evidence.

apply and rollback are thin phases over `recorded`; both hold the per-database advisory lock so only
one runbook changes a database at a time. The default plan is one transaction (all or nothing).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import psycopg
import psycopg.errors
from psycopg.rows import dict_row

from runbook_lib.sql import analysis
from runbook_lib.db import catalog
from runbook_lib.db import ledger
from runbook_lib.sql import locks
from runbook_lib.sql import plan
from runbook_lib.orm import prisma_history as prisma
from runbook_lib.report import records
from runbook_lib.batch import blocks as sqlblocks
from runbook_lib.batch.model import BatchInfo
from runbook_lib.config import BACKOFF_MS, DEFAULTS, MAX_BACKOFF_S
from runbook_lib.errors import LockBusy, MigrationFailed, RunbookError
from runbook_lib.phases.session import Session
from runbook_lib.report.records import ExecutionResult, HeldLock, StatementRun, StepRun


# One advisory lock key per database for every runbook apply/rollback ("RUNBOOK" in ASCII).
ADVISORY_KEY = 0x52554E424F4F4B


@contextmanager
def migration_lock(conn: psycopg.Connection) -> Iterator[None]:
    """Hold the per-database advisory lock, or fail at once naming who holds it."""
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)).fetchone()[0]
    conn.commit()
    if not got:
        holder = conn.execute(
            "SELECT a.pid, coalesce(a.application_name, ''), a.backend_start FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (ADVISORY_KEY >> 32, ADVISORY_KEY & 0xFFFFFFFF),
        ).fetchone()
        conn.commit()
        who = (f"pid {holder[0]} ({holder[1] or 'no application_name'}, connected since "
               f"{holder[2].isoformat(timespec='seconds')})") if holder else "another session"
        raise LockBusy(
            f"Another runbook apply or rollback is running on this database: {who}; "
            "wait for it to finish, or stop it with pg_terminate_backend if it is stuck."
        )
    try:
        yield
    finally:
        try:
            if not conn.closed:
                conn.rollback()
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
                conn.commit()
        except psycopg.OperationalError:
            pass  # the connection died (terminated, server restart): the server released the lock with it


def _held_locks(conn: psycopg.Connection) -> list[tuple[str, str]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT c.relname, n.nspname, l.mode FROM pg_locks l"
            " JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND c.relkind IN ('r', 'p')"
            " ORDER BY c.relname, l.mode"
        ).fetchall()
    return [(r["relname"] if r["nspname"] == "public" else f"{r['nspname']}.{r['relname']}", locks.from_pg_locks(r["mode"]))
            for r in rows]


class _VerificationFailed(Exception):
    def __init__(self, failed: list[sqlblocks.BlockResult]) -> None:
        self.failed = failed


class _Clock:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return round(time.perf_counter() - self.t0, 6)


_FK_PAIRS_SQL = """
SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c
WHERE c.contype = 'f' AND c.conrelid = ANY(%(oids)s::oid[]) AND c.confrelid = ANY(%(oids)s::oid[])
  AND c.conrelid <> c.confrelid
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
    names: dict[str, str] = {}  # regclass text -> the name as the SQL wrote it
    oids = []
    for table in wanted:
        row = conn.execute("SELECT oid, oid::regclass::text FROM pg_class WHERE oid = to_regclass(%s)",
                           (catalog.regclass_text(table),)).fetchone()
        if row is not None:
            oids.append(row[0])
            names[row[1]] = table
    edges = [(names[a], names[b]) for a, b in conn.execute(_FK_PAIRS_SQL, {"oids": oids}).fetchall()
             if a in names and b in names]
    linked = [t for t in wanted if any(t in edge for edge in edges)]
    if len(linked) < 2:
        return []
    ordered: list[str] = []
    pending = list(linked)
    while pending:  # referencing before referenced; a cycle falls back to the order of the SQL
        ready = [t for t in pending if not any(child in pending and child != t and parent == t for child, parent in edges)]
        pick = ready[0] if ready else pending[0]
        ordered.append(pick)
        pending.remove(pick)
    return [(t, wanted[t]) for t in ordered]


def _run_statements(conn: psycopg.Connection, step: plan.Step, attempt: int, clock: _Clock,
                    runs: list[StatementRun], acquired: dict[tuple[str, str], float]) -> None:
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
                status = "lock timeout" if isinstance(exc, psycopg.errors.LockNotAvailable) else "failed"
                runs.append(StatementRun(0, 0, "LOCK TABLE (runbook: the step's locks, in the application's order)",
                                         text, attempt, start, round(clock() - start, 6), 0, status, "",
                                         _server_message(exc), step.number,
                                         ", ".join(f"{m} on {t}" for t, m in ahead)))
                raise
            taken = [lock for lock in _held_locks(conn) if lock not in acquired]
            for lock in taken:
                acquired[lock] = start
            runs.append(StatementRun(0, 0, "LOCK TABLE (runbook: the step's locks, in the application's order)",
                                     text, attempt, start, round(clock() - start, 6), 0, "ok",
                                     ", ".join(f"{mode} on {rel}" for rel, mode in taken), "", step.number,
                                     ", ".join(f"{m} on {t}" for t, m in ahead)))
    for stmt in step.statements:
        start = clock()
        try:
            cur = conn.execute(stmt.sql)
        except psycopg.Error as exc:
            status = "lock timeout" if isinstance(exc, psycopg.errors.LockNotAvailable) else "failed"
            runs.append(StatementRun(stmt.index, stmt.line, stmt.kind, stmt.sql, attempt, start,
                                     round(clock() - start, 6), 0, status, "", _server_message(exc), step.number,
                                     stmt.locks))
            raise
        duration = round(clock() - start, 6)
        taken: list[tuple[str, str]] = []
        if not conn.autocommit:
            # Which locks this statement took, measured in pg_locks (not guessed from the SQL).
            taken = [lock for lock in _held_locks(conn) if lock not in acquired]
            for lock in taken:
                acquired[lock] = start
        measured = ", ".join(f"{mode} on {rel}" for rel, mode in taken) or ("none new" if not conn.autocommit else "")
        runs.append(StatementRun(stmt.index, stmt.line, stmt.kind, stmt.sql, attempt, start, duration,
                                 max(cur.rowcount, 0), "ok", measured, "", step.number, stmt.locks))


def _modes(lock_text: str) -> list[str]:
    return [part.split(" on ")[0] for part in lock_text.split(", ") if " on " in part]


def _run_step(conn, step, *, clock, dry_run, result, tables_touched, max_attempts, backoff_ms, verify, last):
    """One step with its retries; returns the StepRun, raises psycopg errors other than lock timeouts."""
    started = clock()
    for attempt in range(1, max_attempts + 1):
        result.attempts += 1
        runs: list[StatementRun] = []
        acquired: dict[tuple[str, str], float] = {}
        try:
            if step.transactional:
                with conn.transaction(force_rollback=dry_run):
                    _run_statements(conn, step, attempt, clock, runs, acquired)
                    if verify is not None and last:
                        result.verification = verify(conn)
                        failed = [b for b in result.verification if not b.passed]
                        if failed:
                            raise _VerificationFailed(failed)
                    held = _held_locks(conn)
                    if dry_run:
                        result.after = catalog.snapshot(conn, tables_touched)
                end = clock()
                holds = _lock_holds(held, acquired, end, step.number)
            else:
                conn.autocommit = True
                try:
                    _run_statements(conn, step, attempt, clock, runs, acquired)
                finally:
                    conn.autocommit = False
                holds = []
            result.statements += runs
            result.locks_before_commit += holds
            longest = max((h.held_s or 0.0 for h in holds if h.blocks_writes), default=0.0)
            status = "rolled back (dry run)" if dry_run else "committed"
            return StepRun(step.number, step.purpose, step.transactional, status, attempt,
                           round(clock() - started, 6), longest)
        except psycopg.errors.LockNotAvailable as exc:
            result.statements += runs
            # While its lock request waited, every writer queued behind it: that wait blocked writes too.
            waited = [r for r in runs if r.status == "lock timeout"]
            if waited and any(locks.blocks_writes(m) for m in _modes(waited[-1].expected_locks)):
                result.longest_queue_wait_s = max(result.longest_queue_wait_s, waited[-1].duration_s)
            if attempt == max_attempts:
                raise _GaveUp(attempt, exc) from None
            delay = backoff_ms / 1000 * (2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            time.sleep(min(delay, MAX_BACKOFF_S))
        except _VerificationFailed:
            result.statements += [replace(r, status="rolled back") for r in runs]
            raise
        except psycopg.Error:
            result.statements += runs
            raise
    raise AssertionError("unreachable")


class _GaveUp(Exception):
    def __init__(self, attempts: int, exc: psycopg.Error) -> None:
        self.attempts = attempts
        self.exc = exc


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
    verify: Callable[[psycopg.Connection], list[sqlblocks.BlockResult]] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    statements: list | None = None,
    result: ExecutionResult,
    conn: psycopg.Connection,
) -> ExecutionResult:
    """Run `sql_text` step by step; each step is retried whole when a lock is not granted in time.

    `resume_after` (None: a fresh run) skips the steps an earlier run committed; the group it resumes
    in starts over, after its clean-up removes what a killed run may have left half made. `on_step(kept, total)` is told
    after every committed step.
    """
    if statements is None:  # the caller usually parsed the file already, to refuse it before anything ran
        statements = analysis.analyze(sql_text, filename=filename, server_major=session.facts.major)
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
    conn.execute("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                 (f"{lock_timeout_ms}ms", f"{statement_timeout_ms}ms"))
    conn.commit()
    result.before = catalog.snapshot(conn, tables_touched)
    conn.commit()
    clock = _Clock()
    result.statements_started_at = records.now_iso()
    done: list[plan.Step] = []
    if resume_after is not None and not dry_run:
        resume_after = _group_start(steps, resume_after + 1) - 1
        _clean_leftovers(conn, steps, resume_after + 1, result, session.url)
    resume_after = resume_after or 0
    if on_step is not None and not dry_run:
        on_step(resume_after, len(steps))  # the plan's size is on record before anything commits
    for step in steps:
        if step.number <= resume_after:
            result.steps.append(StepRun(step.number, step.purpose, step.transactional, "skipped"))
            done.append(step)
            continue
        try:
            result.steps.append(_run_step(
                conn, step, clock=clock, dry_run=dry_run, result=result, tables_touched=tables_touched,
                max_attempts=max_attempts, backoff_ms=backoff_ms, verify=verify, last=step is steps[-1]))
            done.append(step)
            if on_step is not None and not dry_run and step.number < len(steps):
                on_step(_kept(steps, step.number), len(steps))
            _fault_pause(step.number)
        except (_GaveUp, _VerificationFailed, psycopg.Error) as exc:
            result.steps.append(StepRun(step.number, step.purpose, step.transactional, "failed", result.attempts))
            _fail(conn, result, steps, done, step, exc, filename, lock_timeout_ms, session.url)
    result.steps_kept = 0 if dry_run else len(steps)
    result.longest_write_block_s = max([s.longest_write_block_s for s in result.steps] + [result.longest_queue_wait_s])
    if not dry_run:
        # Settings the migration made (search_path, timeouts, roles) must not follow runbook's own queries.
        conn.execute("RESET ALL")
        result.after = catalog.snapshot(conn, tables_touched)
        conn.commit()
    result.changes = catalog.diff(result.before, result.after)
    return result


def _fault_pause(step_number: int) -> None:
    """Fault injection for the test suite: RUNBOOK_FAULT_PAUSE_AFTER_STEP=N pauses after step N commits,
    so a test can kill the process between two steps of a plan at a known point."""
    import os

    if os.environ.get("RUNBOOK_FAULT_PAUSE_AFTER_STEP") == str(step_number):
        time.sleep(float(os.environ.get("RUNBOOK_FAULT_PAUSE_SECONDS", "60")))


def _group_start(steps: list[plan.Step], number: int) -> int:
    """The first step of the group that step `number` belongs to."""
    if number > len(steps):
        return number
    group = steps[number - 1].group
    return min(s.number for s in steps if s.group == group)


def _kept(steps: list[plan.Step], done_through: int) -> int:
    """Steps that stay if the run stops now: complete groups only (a half group is cleaned up or redone)."""
    return _group_start(steps, done_through + 1) - 1


def _clean_leftovers(conn: psycopg.Connection, steps: list[plan.Step], first: int, result: ExecutionResult,
                     url: str) -> None:
    """Before resuming in a group, remove what a killed run may have left of it (each clean-up is IF EXISTS)."""
    group = [s for s in steps if s.group == steps[first - 1].group] if first <= len(steps) else []
    _run_cleanups(conn, [sql for s in reversed(group) for sql in s.cleanup], result, url, prefix="leftover: ")


def _run_cleanups(conn: psycopg.Connection, statements: list[str], result: ExecutionResult, url: str,
                  prefix: str = "") -> None:
    if not statements:
        return
    if conn.closed or conn.broken:
        # The connection died with the failure (terminated, server restart): clean up on a new one.
        try:
            from runbook_lib.db.connection import connect

            conn = connect(url, autocommit=True)
        except RunbookError as exc:
            result.cleanup.append(f"{prefix}not cleaned up, the server could not be reached: {exc}")
            return
    conn.autocommit = True
    try:
        for cleanup_sql in statements:
            try:
                conn.execute(cleanup_sql)
                result.cleanup.append(prefix + cleanup_sql)
            except psycopg.Error as cleanup_exc:
                result.cleanup.append(f"{prefix}FAILED: {cleanup_sql}: {_server_message(cleanup_exc)}")
    finally:
        if not conn.closed:
            conn.autocommit = False


def _fail(conn, result: ExecutionResult, steps, done, step: plan.Step, exc: BaseException, filename: str,
          lock_timeout_ms: int, url: str) -> None:
    """Clean up what the plan added so far, say how far it got, and raise MigrationFailed."""
    if not conn.closed and not conn.broken and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()
    # Undo the failing step's group (an online change half made); earlier groups are complete and stay.
    group = [s for s in done + [step] if s.group == step.group]
    _run_cleanups(conn, [sql for s in reversed(group) for sql in s.cleanup], result, url)
    first_of_group = min(s.number for s in steps if s.group == step.group)
    committed = [s for s in done if s.number < first_of_group]
    result.steps_kept = len(committed)
    if isinstance(exc, _GaveUp):
        cause = (f"could not get its locks in {exc.attempts} attempts of lock_timeout={lock_timeout_ms} ms "
                 f"({_server_message(exc.exc)})")
        fix = "find the blocking session with `runbook preflight` and retry, or raise --lock-timeout / --max-attempts"
    elif isinstance(exc, _VerificationFailed):
        names = "; ".join(f"{b.name}: expected {b.expectation}, got {b.outcome}" for b in exc.failed)
        cause = f"ran, but the checks that must hold afterwards failed ({names})"
        fix = "fix the SQL so the checks hold"
    else:
        failed = next((r for r in reversed(result.statements) if r.status in ("failed",)), None)
        where = f"statement {failed.index} ({filename} line {failed.line})" if failed else step.label
        cause = f"{where} failed: {_server_message(exc)}"
        fix = "fix the SQL or the data and run again"
    if not committed:
        state = "the transaction was rolled back and nothing changed" if len(steps) == 1 else \
            f"stopped at {step.label}, nothing was committed"
    else:
        kept = "step 1 was" if committed[-1].number == 1 else f"steps 1-{committed[-1].number} were"
        state = (f"stopped at {step.label} of {len(steps)}; {kept} committed "
                 f"and stay (a rerun resumes after step {committed[-1].number})")
    if result.cleanup:
        state += "; cleaned up: " + "; ".join(result.cleanup)
    result.status = "failed"
    result.message = f"{filename} {cause}; {state}"
    raise MigrationFailed(f"{filename}: {cause}; {state}. {fix[0].upper() + fix[1:]}.")


def _server_message(exc: psycopg.Error) -> str:
    diag = exc.diag
    text = diag.message_primary or str(exc).strip().splitlines()[0]
    return f"{diag.sqlstate} {text}" if diag.sqlstate else text


def _lock_holds(held: list[tuple[str, str]], acquired: dict[tuple[str, str], float], end: float,
                step: int) -> list[HeldLock]:
    """Each table locked at commit: its strongest mode, held from the statement that first took a lock on it."""
    by_relation: dict[str, list[str]] = {}
    for relation, mode in held:
        by_relation.setdefault(relation, []).append(mode)
    result = []
    for relation, modes in by_relation.items():
        mode = locks.strongest(modes)
        blocking = [acquired.get((relation, m), 0.0) for m in modes if locks.blocks_writes(m)]
        since = min(blocking) if blocking else min(acquired.get((relation, m), 0.0) for m in modes)
        result.append(HeldLock(relation, mode, locks.blocks_writes(mode), round(end - since, 6), step))
    return result


def _record_prisma(conn: psycopg.Connection, phase: str, session: Session) -> prisma.PrismaRecord:
    """Tell Prisma what happened, where `_prisma_migrations` exists; a failure here is reported, not fatal."""
    name = session.batch.name
    try:
        with conn.transaction():
            if phase == "apply":
                return prisma.record_applied(conn, name, session.batch.checksum)
            return prisma.record_rolled_back(conn, name)
    except psycopg.Error as exc:
        return prisma.PrismaRecord(f"not recorded: {_server_message(exc)}", name)


def require_statements(sql_text: str, filename: str, *, server_major: int | None = None) -> list:
    """The parsed statements of a file that must change something: an empty one is refused, not 'applied'."""
    statements = analysis.analyze(sql_text, filename=filename, server_major=server_major)
    if not statements:
        raise MigrationFailed(f"{filename} has no SQL statement; write the change in it (or remove the batch).")
    return statements


def start_result(session: Session, phase: str, *, dry_run: bool) -> tuple[ExecutionResult, float]:
    result = ExecutionResult(phase=phase, batch=BatchInfo.of(session.batch), connection=session.facts,
                             run_id=session.run.run_id, started_at=records.now_iso(), dry_run=dry_run)
    return result, time.perf_counter()


def finish(session: Session, result: ExecutionResult, t0: float) -> None:
    """Close the result's clock and write `<phase>.json`, whatever the outcome."""
    result.finished_at = records.now_iso()
    result.duration_s = round(time.perf_counter() - t0, 6)
    session.run.write(result.phase, result)


def recorded(
    session: Session,
    result: ExecutionResult,
    t0: float,
    conn: psycopg.Connection,
    *,
    sql_text: str,
    filename: str,
    tables_touched: list[str],
    done: str,
    lock_timeout_ms: int,
    statement_timeout_ms: int,
    max_attempts: int,
    strategy: str = plan.DIRECT,
    resume_after: int | None = None,
    verify: Callable[[psycopg.Connection], list[sqlblocks.BlockResult]] | None = None,
    statements: list | None = None,
) -> ExecutionResult:
    """`execute` with its ledger row and its record: both written on success and on failure."""
    dry_run = result.dry_run
    with ledger.LedgerWriter(session.url, run_id=session.run.run_id, batch=session.batch.number,
                             batch_name=session.batch.name, phase=result.phase,
                             checksum=session.batch.checksum, dry_run=dry_run, strategy=strategy) as writer:
        try:
            execute(session, phase=result.phase, sql_text=sql_text, filename=filename,
                    tables_touched=tables_touched, dry_run=dry_run, strategy=strategy,
                    lock_timeout_ms=lock_timeout_ms, statement_timeout_ms=statement_timeout_ms,
                    max_attempts=max_attempts, resume_after=resume_after, verify=verify,
                    on_step=writer.progress, statements=statements, result=result, conn=conn)
        except RunbookError as exc:
            result.status = "failed"
            result.message = result.message or str(exc)
            finish(session, result, t0)
            writer.finish(ledger.FAILED, result.message, steps_done=result.steps_kept, steps_total=len(result.plan))
            raise
        if not dry_run:
            result.prisma = _record_prisma(conn, result.phase, session)
        result.status = "dry run" if dry_run else done
        note = f"; {result.message}" if result.message else ""  # e.g. resuming after an interrupted run
        result.message = (f"dry run: {filename} executed, measured and rolled back; nothing changed"
                          if dry_run else f"{filename}: {done} ({len(result.plan)} step(s), {strategy}){note}")
        finish(session, result, t0)
        writer.finish(ledger.SUCCEEDED, result.message, steps_done=result.steps_kept, steps_total=len(result.plan))
    return result
