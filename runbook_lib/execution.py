"""Running a SQL file as a migration: one transaction, lock_timeout with bounded retries, evidence.

apply and rollback are thin phases over `execute`; both hold the per-database advisory lock so only
one runbook changes a database at a time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd
import psycopg
import psycopg.errors
from psycopg.rows import dict_row

from . import catalog, ledger, locks, sqlblocks, tables
from .batch import BatchInfo
from .database import ConnectionFacts
from .errors import LockBusy, MigrationFailed, RunbookError
from .session import Session

# One advisory lock key per database for every runbook apply/rollback ("RUNBOOK" in ASCII).
ADVISORY_KEY = 0x52554E424F4F4B


@dataclass(frozen=True)
class StatementRun:
    """One attempt at one statement, as the timeline shows it."""

    index: int
    line: int
    kind: str
    sql: str
    attempt: int
    started_offset_s: float
    duration_s: float
    rowcount: int
    status: str  # ok | failed | lock timeout | rolled back
    locks: str = ""  # the locks this statement newly took, measured in pg_locks
    error: str = ""


@dataclass(frozen=True)
class HeldLock:
    relation: str
    mode: str
    blocks_writes: bool
    held_s: float | None = None  # from the statement that took it to the end of the commit


@dataclass
class ExecutionResult:
    phase: str
    batch: BatchInfo
    connection: ConnectionFacts
    run_id: str
    started_at: str
    finished_at: str = ""
    duration_s: float = 0.0
    status: str = "running"  # applied | rolled back | dry run | already applied | failed
    dry_run: bool = False
    attempts: int = 0
    lock_timeout_ms: int = 0
    statement_timeout_ms: int = 0
    statements: list[StatementRun] = field(default_factory=list)
    locks_before_commit: list[HeldLock] = field(default_factory=list)
    longest_write_block_s: float = 0.0
    before: catalog.CatalogSnapshot | None = None
    after: catalog.CatalogSnapshot | None = None
    changes: list[catalog.CatalogChange] = field(default_factory=list)
    verification: list[sqlblocks.BlockResult] = field(default_factory=list)
    message: str = ""
    statements_started_at: str = ""  # wall clock of offset 0 of the statements' timeline

    @property
    def succeeded(self) -> bool:
        return self.status != "failed"

    def timeline_frame(self) -> pd.DataFrame:
        return tables.frame(
            self.statements,
            ["index", "attempt", "kind", "started_offset_s", "duration_s", "rowcount", "status", "locks", "error"],
            empty="no statement ran",
        )

    def locks_frame(self) -> pd.DataFrame:
        return tables.frame(self.locks_before_commit, ["relation", "mode", "blocks_writes", "held_s"],
                            empty="no locks recorded")

    def changes_frame(self) -> pd.DataFrame:
        return tables.frame(self.changes, ["table", "object", "change", "before", "after"], empty="no catalog change")

    def summary_frame(self) -> pd.DataFrame:
        rows = [
            ("status", self.status),
            ("duration", f"{self.duration_s:.3f} s"),
            ("attempts", self.attempts),
            ("statements", len({s.index for s in self.statements})),
            ("longest write-blocking lock", f"{self.longest_write_block_s * 1000:.1f} ms"),
            ("lock_timeout / statement_timeout", f"{self.lock_timeout_ms} ms / {self.statement_timeout_ms} ms"),
            ("message", self.message),
        ]
        return pd.DataFrame(rows, columns=["item", "value"]).set_index("item")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


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
        if not conn.closed:
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
            conn.commit()


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


def execute(
    session: Session,
    *,
    phase: str,
    sql_text: str,
    filename: str,
    tables_touched: list[str],
    dry_run: bool = False,
    lock_timeout_ms: int = 200,
    statement_timeout_ms: int = 0,
    max_attempts: int = 5,
    backoff_ms: int = 200,
    verify: Callable[[psycopg.Connection], list[sqlblocks.BlockResult]] | None = None,
    result: ExecutionResult,
    conn: psycopg.Connection,
) -> ExecutionResult:
    """Run every statement of `sql_text` in one transaction, retrying the whole on lock timeouts."""
    from . import analysis

    statements = analysis.analyze(sql_text, filename=filename, server_major=session.facts.major)
    outside = [s for s in statements if not s.transactional]
    if outside:
        first = outside[0]
        raise MigrationFailed(
            f"{filename} line {first.line}: {first.kind} cannot run inside a transaction, and runbook runs "
            f"{filename} in one; move it to a batch of its own (support for such statements is planned)."
        )
    result.lock_timeout_ms, result.statement_timeout_ms = lock_timeout_ms, statement_timeout_ms
    conn.execute("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                 (f"{lock_timeout_ms}ms", f"{statement_timeout_ms}ms"))
    conn.commit()
    result.before = catalog.snapshot(conn, tables_touched)
    conn.commit()
    t0 = time.perf_counter()
    result.statements_started_at = _now()
    offset = lambda: round(time.perf_counter() - t0, 6)  # noqa: E731
    for attempt in range(1, max_attempts + 1):
        result.attempts = attempt
        current: list[StatementRun] = []
        try:
            with conn.transaction(force_rollback=dry_run):
                acquired: dict[tuple[str, str], float] = {}
                for stmt in statements:
                    start = offset()
                    try:
                        cur = conn.execute(stmt.sql)
                    except psycopg.Error as exc:
                        status = "lock timeout" if isinstance(exc, psycopg.errors.LockNotAvailable) else "failed"
                        current.append(StatementRun(stmt.index, stmt.line, stmt.kind, stmt.sql, attempt, start,
                                                    round(offset() - start, 6), 0, status,
                                                    _lock_text(stmt), _server_message(exc)))
                        raise
                    duration = round(offset() - start, 6)
                    # Which locks this statement took, measured in pg_locks (not guessed from the SQL).
                    taken = [lock for lock in _held_locks(conn) if lock not in acquired]
                    for lock in taken:
                        acquired[lock] = start
                    measured = ", ".join(f"{mode} on {rel}" for rel, mode in taken)
                    current.append(StatementRun(stmt.index, stmt.line, stmt.kind, stmt.sql, attempt, start,
                                                duration, max(cur.rowcount, 0), "ok", measured or "none new"))
                if verify is not None:
                    result.verification = verify(conn)
                    failed = [b for b in result.verification if not b.passed]
                    if failed:
                        raise _VerificationFailed(failed)
                held = _held_locks(conn)
                if dry_run:
                    result.after = catalog.snapshot(conn, tables_touched)
            end = offset()
            result.statements += current
            result.locks_before_commit = _lock_holds(held, acquired, end)
            break
        except psycopg.errors.LockNotAvailable as exc:
            result.statements += current
            if attempt == max_attempts:
                result.status = "failed"
                result.message = (f"gave up after {attempt} attempts: each waited lock_timeout={lock_timeout_ms} ms "
                                  f"for a lock ({_server_message(exc)})")
                raise MigrationFailed(
                    f"{filename}: could not get its locks in {attempt} attempts of {lock_timeout_ms} ms each "
                    f"({_server_message(exc)}); nothing changed. Find the blocking session with `runbook preflight` "
                    "and retry, or raise --lock-timeout / --max-attempts."
                ) from None
            delay = backoff_ms / 1000 * (2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            time.sleep(min(delay, 10.0))
        except _VerificationFailed as exc:
            result.statements += [_as_rolled_back(s) for s in current]
            result.status = "failed"
            names = "; ".join(f"{b.name}: expected {b.expectation}, got {b.outcome}" for b in exc.failed)
            result.message = f"verification failed, transaction rolled back: {names}"
            raise MigrationFailed(
                f"{filename} ran, but the checks that must hold afterwards failed ({names}); "
                "the transaction was rolled back, nothing changed."
            ) from None
        except psycopg.Error as exc:
            result.statements += current
            result.status = "failed"
            failed = current[-1] if current else None
            where = f"statement {failed.index} ({filename} line {failed.line})" if failed else filename
            result.message = f"{where} failed: {_server_message(exc)}"
            raise MigrationFailed(
                f"{where} failed: {_server_message(exc)}; the transaction was rolled back and nothing changed. "
                "Fix the SQL or the data and run again."
            ) from None
    result.longest_write_block_s = max((h.held_s or 0.0 for h in result.locks_before_commit if h.blocks_writes),
                                       default=0.0)
    if not dry_run:
        result.after = catalog.snapshot(conn, tables_touched)
        conn.commit()
    result.changes = catalog.diff(result.before, result.after)
    return result


class _VerificationFailed(Exception):
    def __init__(self, failed: list[sqlblocks.BlockResult]) -> None:
        self.failed = failed


def _as_rolled_back(run: StatementRun) -> StatementRun:
    return StatementRun(**{**run.__dict__, "status": "rolled back"})


def _lock_text(stmt) -> str:
    return ", ".join(f"{lock.mode} on {lock.table}" for lock in stmt.locks)


def _server_message(exc: psycopg.Error) -> str:
    diag = exc.diag
    text = diag.message_primary or str(exc).strip().splitlines()[0]
    return f"{diag.sqlstate} {text}" if diag.sqlstate else text


def _lock_holds(held: list[tuple[str, str]], acquired: dict[tuple[str, str], float], end: float) -> list[HeldLock]:
    """Each table locked at commit: its strongest mode, held from the statement that first took a lock on it."""
    by_relation: dict[str, list[str]] = {}
    for relation, mode in held:
        by_relation.setdefault(relation, []).append(mode)
    result = []
    for relation, modes in by_relation.items():
        mode = locks.strongest(modes)
        blocking = [acquired.get((relation, m), 0.0) for m in modes if locks.blocks_writes(m)]
        since = min(blocking) if blocking else min(acquired.get((relation, m), 0.0) for m in modes)
        result.append(HeldLock(relation, mode, locks.blocks_writes(mode), round(end - since, 6)))
    return result


def start_result(session: Session, phase: str, *, dry_run: bool) -> tuple[ExecutionResult, float]:
    result = ExecutionResult(phase=phase, batch=BatchInfo.of(session.batch), connection=session.facts,
                             run_id=session.run.run_id, started_at=_now(), dry_run=dry_run)
    return result, time.perf_counter()


def finish(session: Session, result: ExecutionResult, t0: float) -> None:
    """Close the result's clock and write `<phase>.json`, whatever the outcome."""
    result.finished_at = _now()
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
    verify: Callable[[psycopg.Connection], list[sqlblocks.BlockResult]] | None = None,
) -> ExecutionResult:
    """`execute` with its ledger row and its record: both written on success and on failure."""
    dry_run = result.dry_run
    with ledger.LedgerWriter(session.url, run_id=session.run.run_id, batch=session.batch.number,
                             batch_name=session.batch.name, phase=result.phase,
                             checksum=session.batch.checksum, dry_run=dry_run) as writer:
        try:
            execute(session, phase=result.phase, sql_text=sql_text, filename=filename,
                    tables_touched=tables_touched, dry_run=dry_run, lock_timeout_ms=lock_timeout_ms,
                    statement_timeout_ms=statement_timeout_ms, max_attempts=max_attempts, verify=verify,
                    result=result, conn=conn)
        except RunbookError as exc:
            result.status = "failed"
            result.message = result.message or str(exc)
            finish(session, result, t0)
            writer.finish(ledger.FAILED, result.message)
            raise
        result.status = "dry run" if dry_run else done
        result.message = (f"dry run: {filename} executed, measured and rolled back; nothing changed"
                          if dry_run else f"{filename}: {done}")
        finish(session, result, t0)
        writer.finish(ledger.SUCCEEDED, result.message)
    return result
