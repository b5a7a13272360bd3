"""The ledger: a `runbook` schema in the target database recording every phase run.

The row is inserted, and a failure recorded, through the ledger's own autocommit connection, so a
migration that rolls back cannot erase the record of its own failure. A committed step's progress (and
the last step's success) is written the other way, inside the step's own transaction on the migration's
connection (`record_in`): the step and the ledger's knowledge of it commit together or not at all.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

import psycopg
import psycopg.errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from runbook_lib import config
from runbook_lib.db import catalog
from runbook_lib.db import connection as database
from runbook_lib.errors import LedgerError, RunbookError

DEFAULT_SCHEMA = "runbook"
#: Where the ledger lives when the role may not create the `runbook` schema: set by the CLI from
#: --ledger-schema or runbook.toml's ledger_schema, in the environment, so kernels find the same ledger.
SCHEMA_VARIABLE = "RUNBOOK_LEDGER_SCHEMA"


def schema_name() -> str:
    """The ledger's schema: --ledger-schema, else runbook.toml's ledger_schema, else `runbook`."""
    return os.environ.get(SCHEMA_VARIABLE) or config.project_ledger_schema() or DEFAULT_SCHEMA


def table() -> str:
    """The ledger table, quoted for SQL."""
    return f"{catalog.quote_ident(schema_name())}.phase_run"


def _sql(text: str) -> str:
    """A statement on the ledger: `{ledger}` is its table, `{schema}` its schema (both quoted)."""
    schema = catalog.quote_ident(schema_name())
    return text.format(ledger=f"{schema}.phase_run", schema=schema)


_DDL = """
CREATE TABLE IF NOT EXISTS {ledger} (
    id          bigserial PRIMARY KEY,
    run_id      text        NOT NULL,
    batch       integer     NOT NULL,
    batch_name  text        NOT NULL,
    phase       text        NOT NULL,
    status      text        NOT NULL,
    checksum    text,
    dry_run     boolean     NOT NULL DEFAULT false,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    db_user     text        NOT NULL DEFAULT current_user,
    os_user     text,
    host        text,
    message     text
);
CREATE INDEX IF NOT EXISTS phase_run_batch_idx ON {ledger} (batch, id);
"""
# Columns added after the first release; a ledger created before them gets them on first write.
_LATER_COLUMNS = {
    "strategy": "text",
    "steps_done": "integer",
    "steps_total": "integer",
    "terminated": "jsonb",  # sessions the run terminated (--terminate-blockers-after), as it did
    "backfill": "jsonb",  # backfill: the keyset position a batched step committed through
    "step_sql": "jsonb",
}  # the plan: a fingerprint of each step's SQL, checked when a run resumes

# The state of a batch is its latest successful, real (not dry-run) apply or rollback.
_STATE_SQL = """
SELECT DISTINCT ON (batch) batch, batch_name, phase, checksum, finished_at, db_user, os_user, run_id
FROM {ledger}
WHERE phase IN ('apply', 'rollback') AND status = 'succeeded' AND NOT dry_run
ORDER BY batch, id DESC
"""

_INSERT = (
    "INSERT INTO {ledger} (run_id, batch, batch_name, phase, status, checksum, dry_run, os_user,"
    " host, strategy) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
)

RUNNING, SUCCEEDED, FAILED, NOOP, REFUSED = "running", "succeeded", "failed", "no-op", "refused"
# An apply or rollback that stopped on purpose after the step it was asked for (a runbook notebook's step
# cell): what it committed is whole, so the next run goes on at the very next step (no group is redone).
PAUSED = "paused"


@dataclass(frozen=True)
class BatchState:
    """Whether a batch is applied, according to the ledger."""

    batch: int
    applied: bool
    checksum: str | None = None
    applied_at: datetime | None = None
    applied_by: str | None = None
    run_id: str | None = None
    name: str = ""  # the batch folder's name when it was recorded


# A runbook ledger anywhere in the database: phase_run tables with the ledger's own columns.
_ELSEWHERE_SQL = """
SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = 'phase_run' AND c.relkind = 'r' AND n.nspname <> %s
  AND (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND NOT a.attisdropped
       AND a.attname IN ('run_id', 'batch_name', 'phase', 'checksum')) = 4
ORDER BY 1
"""


def exists(conn: psycopg.Connection) -> bool:
    """Whether the ledger is there; one in another schema than the configured one is refused, naming both
    (reading "nothing applied" from an empty place, or starting a second ledger, would lose the history)."""
    found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table(),)).fetchone()
    assert found is not None  # a SELECT without FROM returns one row
    if found[0]:
        return True
    elsewhere = [r[0] for r in conn.execute(_ELSEWHERE_SQL, (schema_name(),))]
    if elsewhere:
        raise LedgerError(
            f"runbook's ledger is in schema {elsewhere[0]}, but this run's ledger schema is {schema_name()} "
            f'(--ledger-schema or runbook.toml\'s ledger_schema); set ledger_schema = "{elsewhere[0]}", or move '
            f"it first (ALTER TABLE {catalog.quote_ident(elsewhere[0])}.phase_run SET SCHEMA "
            f"{catalog.quote_ident(schema_name())})."
        )
    return False


def states(conn: psycopg.Connection, *, only: int | None = None) -> dict[int, BatchState]:
    """Applied state of every batch the ledger knows (or of batch `only`); reading never creates the ledger."""
    if not exists(conn):
        return {}
    result = {}
    query, params = (
        (_sql(_STATE_SQL), ())
        if only is None
        else (_sql(_STATE_SQL).replace("WHERE ", "WHERE batch = %s AND "), (only,))
    )
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(query, params):
            applied = row["phase"] == "apply"
            who = row["db_user"] + (f" ({row['os_user']})" if row["os_user"] else "")
            result[row["batch"]] = BatchState(
                row["batch"], applied, row["checksum"], row["finished_at"], who, row["run_id"], row["batch_name"]
            )
    return result


def state(conn: psycopg.Connection, batch: int) -> BatchState:
    return states(conn, only=batch).get(batch, BatchState(batch, applied=False))


@dataclass(frozen=True)
class PartialRun:
    """An apply or rollback that stopped part way (failed, or killed): the next run of its phase resumes after
    the steps it committed."""

    checksum: str
    strategy: str
    steps_done: int
    steps_total: int
    run_id: str
    backfill: dict | None = None  # the batched step under way: {"step", "after", "rows", "batches", ...}
    phase: str = "apply"
    # the stopped run's plan, a fingerprint per step (None: a ledger row written before they were recorded);
    # a resumed run may change the steps it has still to run, never the ones committed
    steps: tuple[str, ...] | None = None
    paused: bool = False  # stopped on purpose after step `steps_done` (a notebook's step): nothing half made

    @property
    def changed_anything(self) -> bool:
        """Whether it committed a step or a backfill batch: an apply killed before either left nothing to undo."""
        return bool(self.steps_done or self.backfill)

    @property
    def committed(self) -> str:
        """What it had committed when it stopped, for a person: the steps, and the backfill under way."""
        steps = f"step {self.steps_done} of {self.steps_total}" if self.steps_done else f"0 of {self.steps_total} steps"
        if not self.backfill:
            return steps
        return (
            f"{steps}, with {self.backfill.get('rows', 0):,} rows of step {self.backfill['step']}'s backfill "
            f"committed in {self.backfill.get('batches', 0):,} batches"
        )


@dataclass(frozen=True)
class LiveRun:
    """An apply or rollback at work now (its row 'running' while a session holds the migration lock)."""

    batch: int
    phase: str
    run_id: str
    started_at: datetime
    who: str
    steps_done: int
    steps_total: int
    backfill: dict | None = None

    @property
    def doing(self) -> str:
        """Where it is, for a person: the steps committed so far, and the backfill's rows."""
        where = f"{self.steps_done} of {self.steps_total} steps committed" if self.steps_total else "planning"
        if self.backfill and self.backfill.get("step") == self.steps_done + 1:
            where += (
                f", step {self.backfill['step']}'s backfill at {self.backfill.get('rows', 0):,} rows in "
                f"{self.backfill.get('batches', 0):,} batches"
            )
        return f"run {self.run_id} by {self.who} since {self.started_at:%Y-%m-%d %H:%M:%S %Z}".rstrip() + f", {where}"


INTERRUPTED = "interrupted"


def close_interrupted(conn: psycopg.Connection, batch: int) -> int:
    """Mark runs of the batch still 'running' as interrupted: call only while holding the migration lock.

    A process killed mid-apply (or a server restart) leaves its row 'running'; holding the lock
    proves no one is still at it.
    """
    if not exists(conn):
        return 0
    try:
        with conn.transaction():
            cur = conn.execute(
                f"UPDATE {table()} SET status = %s, finished_at = clock_timestamp(),"
                " message = coalesce(message || '; ', '')"
                " || 'interrupted: the process or its connection ended before it finished'"
                " WHERE batch = %s AND phase IN ('apply', 'rollback') AND status = %s",
                (INTERRUPTED, batch, RUNNING),
            )
            return cur.rowcount
    except psycopg.errors.InsufficientPrivilege:
        return 0  # a role that may not write the ledger is refused, with the reason, when the phase starts


def unsettled(conn: psycopg.Connection, batches: list[int]) -> set[int]:
    """Of `batches`, those with an apply or rollback that did not end (running, failed, interrupted or paused):
    for every other, `close_interrupted` and `stopped` have nothing to do. One query for a release, which
    would otherwise ask both for each of its migrations."""
    if not batches or not exists(conn):
        return set()
    with conn.transaction():
        rows = conn.execute(
            f"SELECT DISTINCT batch FROM {table()} WHERE batch = ANY(%s) AND phase IN ('apply', 'rollback')"
            " AND status IN (%s, %s, %s, %s)",
            (batches, RUNNING, FAILED, INTERRUPTED, PAUSED),
        ).fetchall()
    return {r[0] for r in rows}


def stopped_runs(conn: psycopg.Connection, running: bool) -> dict[int, PartialRun]:
    """The batches whose latest apply or rollback stopped part way, for `runbook status` (read-only).

    `running`: another session holds the migration lock, so a row still 'running' may be a run at work;
    when none does, such a row is a run that died (the next apply or rollback will mark it interrupted).
    """
    if not exists(conn):
        return {}
    with conn.transaction():
        batches = [
            r[0]
            for r in conn.execute(
                f"SELECT DISTINCT batch FROM {table()} WHERE phase IN ('apply', 'rollback') AND NOT dry_run"
                " AND status IN (%s, %s, %s, %s) ORDER BY batch",
                (FAILED, INTERRUPTED, RUNNING, PAUSED),
            )
        ]
    return {b: run for b in batches if (run := stopped(conn, b, dead_running=not running)) is not None}


def live(conn: psycopg.Connection, holder_since: datetime | None) -> LiveRun | None:
    """The apply or rollback at work now: call only while a session holds the migration lock, connected
    since `holder_since` (None: not visible to this role). Its row is the newest 'running' one begun since
    then; an older 'running' row is a run that died, which its batch's next apply or rollback marks."""
    if not exists(conn):
        return None
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        r = cur.execute(
            "SELECT batch, phase, run_id, started_at, db_user, os_user, host, to_jsonb(p) -> 'steps_done' AS done,"
            " to_jsonb(p) -> 'steps_total' AS total, to_jsonb(p) -> 'backfill' AS backfill"
            f" FROM {table()} p WHERE phase IN ('apply', 'rollback') AND status = %s AND NOT dry_run"
            " AND started_at >= coalesce(%s::timestamptz, '-infinity') ORDER BY id DESC LIMIT 1",
            (RUNNING, holder_since),
        ).fetchone()
    if r is None:
        return None
    return LiveRun(
        r["batch"],
        r["phase"],
        r["run_id"],
        r["started_at"],
        r["db_user"] + (f" ({r['os_user']}@{r['host']})" if r["os_user"] else ""),
        r["done"] or 0,
        r["total"] or 0,
        r["backfill"],
    )


def partial(conn: psycopg.Connection, batch: int, phase: str = "apply") -> PartialRun | None:
    """The batch's stopped run (`stopped`) if it is of `phase`."""
    run = stopped(conn, batch)
    return run if run is not None and run.phase == phase else None


def stopped(conn: psycopg.Connection, batch: int, *, dead_running: bool = False) -> PartialRun | None:
    """The batch's latest real apply or rollback, if it stopped part way (not all of its steps committed).

    A run that never stated its plan (killed or refused before it), one that failed committing nothing, and
    a rollback that stopped committing nothing changed nothing: the one before counts. (An apply killed in
    its first step counts: that step may be an index built outside a transaction, which a resume checks.)
    A stopped apply that a rollback undid since, or a stopped rollback that an apply redid, is nothing to
    resume: the latest run is then a finished one.
    `dead_running`: a row still 'running' counts as stopped (its process is known to be gone).
    """
    if not exists(conn):
        return None
    with conn.transaction():  # `to_jsonb(p) -> column`: NULL for a column an older ledger lacks, never an error
        row = conn.execute(
            "SELECT phase, status, checksum, to_jsonb(p) ->> 'strategy', to_jsonb(p) -> 'steps_done',"
            "       to_jsonb(p) -> 'steps_total', run_id, to_jsonb(p) -> 'backfill', to_jsonb(p) -> 'step_sql'"
            f" FROM {table()} p"
            " WHERE batch = %s AND phase IN ('apply', 'rollback') AND NOT dry_run AND status <> %s"
            "   AND coalesce((to_jsonb(p) ->> 'steps_total')::int, 0) > 0"
            "   AND NOT ((status = %s OR phase = 'rollback') AND coalesce((to_jsonb(p) ->> 'steps_done')::int, 0) = 0"
            "            AND coalesce(to_jsonb(p) -> 'backfill', 'null') = 'null')"
            " ORDER BY id DESC LIMIT 1",
            (batch, NOOP, FAILED),
        ).fetchone()
    if row is None:
        return None
    phase, status, checksum, strategy, done, total, run_id, position, steps = row
    if status not in (FAILED, INTERRUPTED, PAUSED, *((RUNNING,) if dead_running else ())):
        return None
    done = done or 0
    # batches of the step under way committed (with their position) even when no whole step did
    position = position if position and position.get("step") == done + 1 else None
    if done >= total:
        return None
    return PartialRun(
        checksum,
        strategy or "direct",
        done,
        total,
        run_id,
        position,
        phase,
        tuple(steps) if steps is not None else None,
        paused=status == PAUSED,
    )


@dataclass(frozen=True)
class StepDone:
    """Who committed a step of a batch's current apply (or rollback), and when: what a step cell run again says."""

    run_id: str
    who: str
    at: datetime | None
    status: str

    def __str__(self) -> str:
        when = f"{self.at:%Y-%m-%d %H:%M:%S %Z}".strip() if self.at else "an unknown time"
        return f"at {when} by {self.who} (run {self.run_id})"


def step_done_by(conn: psycopg.Connection, batch: int, step: int, phase: str = "apply") -> StepDone | None:
    """The run of `phase` that committed step `step` of the batch since the last finished run of the other phase:
    the first row whose progress reached it (a resumed run's row starts at the step it resumes after)."""
    if not exists(conn):
        return None
    other = "rollback" if phase == "apply" else "apply"
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        r = cur.execute(
            "SELECT run_id, db_user, os_user, host, finished_at, status FROM {ledger} p"
            " WHERE batch = %s AND phase = %s AND NOT dry_run AND status <> %s"
            "   AND coalesce((to_jsonb(p) ->> 'steps_done')::int, 0) >= %s"
            "   AND id > coalesce((SELECT max(id) FROM {ledger} WHERE batch = %s AND phase = %s"
            "                      AND status = %s AND NOT dry_run), 0)"
            " ORDER BY id LIMIT 1".replace("{ledger}", table()),
            (batch, phase, NOOP, step, batch, other, SUCCEEDED),
        ).fetchone()
    if r is None:
        return None
    who = r["db_user"] + (f" ({r['os_user']}@{r['host']})" if r["os_user"] else "")
    return StepDone(r["run_id"], who, r["finished_at"], r["status"])


def history(conn: psycopg.Connection, batch: int | None = None, limit: int = 50) -> list[dict]:
    if not exists(conn):
        return []
    where = "WHERE batch = %s" if batch is not None else ""
    params = (batch,) if batch is not None else ()
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT id, run_id, batch, phase, status, dry_run, started_at, finished_at, db_user, message"
            f" FROM {table()} {where} ORDER BY id DESC LIMIT {int(limit)}",
            params,
        ).fetchall()


_SHARED: dict[str, psycopg.Connection] = {}  # url -> the ledger connection a release shares (shared_connection)
_ENSURED: set[tuple[str, str]] = (
    set()
)  # the (url, ledger table)s whose ledger this process has found complete (no DDL, no catalog query)


@contextmanager
def shared_connection(url: str) -> Iterator[psycopg.Connection]:
    """Within a release, every LedgerWriter for `url` writes through one connection of its own.

    Still never the migration's connection (a rollback there cannot erase a row written here); one
    connection instead of one per migration and phase, which a release of hundreds would pay for.
    """
    conn = database.connect(url, autocommit=True, application_name="runbook-ledger")
    _SHARED[url] = conn
    try:
        yield conn
    finally:
        if _SHARED.get(url) is conn:
            del _SHARED[url]
        conn.close()


class LedgerWriter:
    """Records one phase run: a row at start, updated at the end, on a connection of its own."""

    def __init__(
        self,
        url: str,
        *,
        run_id: str,
        batch: int,
        batch_name: str,
        phase: str,
        checksum: str | None = None,
        dry_run: bool = False,
        strategy: str | None = None,
        required: bool = True,
    ) -> None:
        """`required=False` (read-only phases): a role that may not write the ledger is noted, not refused."""
        self.note = ""
        self._finished = False
        self._url = url
        # the ledger's name, found once: schema_name() looks for runbook.toml up from the current directory
        self._table = ledger_table = table()
        insert = _INSERT.format(ledger=ledger_table)
        shared = _SHARED.get(url)
        self._conn: psycopg.Connection
        if shared is None or shared.closed:
            self._owned, self._conn = True, database.connect(url, autocommit=True, application_name="runbook-ledger")
        else:
            self._owned, self._conn = False, shared
        try:
            row = (
                run_id,
                batch,
                batch_name,
                phase,
                RUNNING,
                checksum,
                dry_run,
                _os_user(),
                socket.gethostname(),
                strategy,
            )
            if (url, ledger_table) not in _ENSURED:
                _ensure(self._conn)
                _ENSURED.add((url, ledger_table))
            try:
                inserted = self._conn.execute(insert, row).fetchone()
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
                _ensure(self._conn)  # dropped since this process found it complete (`example load --reset`)
                inserted = self._conn.execute(insert, row).fetchone()
            assert inserted is not None  # INSERT ... RETURNING of one row returns it
            self.row_id: int | None = inserted[0]
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction) as exc:
            self._close()
            if required:
                raise LedgerError(
                    f"The role cannot write runbook's ledger ({exc.diag.message_primary}); {phase} needs CREATE on "
                    f"the database or on the ledger's schema {schema_name()} (first run), and INSERT/UPDATE on "
                    f"{self._table}: grant them, or set ledger_schema in runbook.toml (or --ledger-schema) to a schema "
                    "the role may write (docs/non-superuser.md)."
                ) from None
            self.row_id = None
            self.note = f"ledger not written: {exc.diag.message_primary}"

    def _update(self, statement: str, params: tuple) -> None:
        """Write through this row's connection, reconnecting once if the server dropped it (a restart)."""
        for attempt in (1, 2):
            try:
                if self._conn.closed:
                    self._conn = database.connect(self._url, autocommit=True, application_name="runbook-ledger")
                    self._owned = True
                self._conn.execute(statement, params)
                return
            except (psycopg.OperationalError, RunbookError):
                if attempt == 2:
                    raise
                self._close()

    def progress(
        self, steps_done: int, steps_total: int, backfill: dict | None = None, steps: tuple[str, ...] = ()
    ) -> None:
        """Before anything runs: the plan (its size, each step's fingerprint), and the backfill position a
        resumed run carries over from the run it resumes (in the same UPDATE, so no instant holds one
        without the other)."""
        if self.row_id is None:
            return
        self._update(
            f"UPDATE {self._table} SET steps_done = %s, steps_total = %s, backfill = %s, step_sql = %s WHERE id = %s",
            (
                steps_done,
                steps_total,
                Jsonb(backfill) if backfill else None,
                Jsonb(list(steps)) if steps else None,
                self.row_id,
            ),
        )

    def record_position_in(self, conn: psycopg.Connection, position: dict) -> None:
        """A backfill batch's keyset position, written inside the batch's transaction: they commit together."""
        if self.row_id is not None:
            conn.execute(f"UPDATE {self._table} SET backfill = %s WHERE id = %s", (Jsonb(position), self.row_id))

    def terminated(self, session: dict) -> None:
        """A session the run terminated, written at once on the ledger's own connection: whatever happens
        next (the run fails, the process is killed), the ledger says who was terminated and when."""
        if self.row_id is None:
            return
        self._update(
            f"UPDATE {self._table} SET terminated = coalesce(terminated, '[]'::jsonb) || %s WHERE id = %s",
            (Jsonb([{**session, "terminated_at": datetime.now(UTC).isoformat()}]), self.row_id),
        )

    def record_in(
        self, conn: psycopg.Connection, steps_done: int, steps_total: int, *, succeeded: str | None = None
    ) -> None:
        """Progress written on `conn` inside its open transaction, so it commits with the step or not at all.

        `succeeded` (the last step): the row becomes 'succeeded' with this message in the same commit, so a
        process killed right after the COMMIT leaves the batch applied, never 'running' with its effect done.
        """
        if self.row_id is None:
            return
        if succeeded is None:
            conn.execute(
                f"UPDATE {self._table} SET steps_done = %s, steps_total = %s WHERE id = %s",
                (steps_done, steps_total, self.row_id),
            )
            return
        conn.execute(
            f"UPDATE {self._table} SET status = %s, message = %s, finished_at = clock_timestamp(),"
            " steps_done = %s, steps_total = %s WHERE id = %s",
            (SUCCEEDED, succeeded, steps_done, steps_total, self.row_id),
        )

    def finish(
        self, status: str, message: str | None = None, *, steps_done: int | None = None, steps_total: int | None = None
    ) -> None:
        """The row's end; a row its last step already made 'succeeded' (`record_in`) is left as it is."""
        if self.row_id is None:
            return
        self._finished = True
        try:
            self._update(
                f"UPDATE {self._table} SET status = %s, message = %s, finished_at = clock_timestamp(),"
                " steps_done = %s, steps_total = %s WHERE id = %s AND status <> 'succeeded'",
                (status, message, steps_done, steps_total, self.row_id),
            )
        except (psycopg.OperationalError, RunbookError):
            pass  # the server is gone: the row stays 'running' and the next apply marks it interrupted
        finally:
            self._close()

    def _close(self) -> None:
        """Close the connection if it is this writer's own; a release's shared one stays open for the next."""
        if self._owned or self._conn.broken:
            self._conn.close()

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.row_id is not None and not self._finished:
            self.finish(FAILED, f"{type(exc).__name__}: {exc}" if exc else "interrupted")


def ensure(conn: psycopg.Connection) -> None:
    """Create the ledger (or complete it) on `conn`, inside the caller's transaction when it has one."""
    _ensure(conn)


def hostname() -> str:
    return socket.gethostname()


def os_user() -> str:
    return _os_user()


def _ensure(conn: psycopg.Connection) -> None:
    """Create the ledger, or add columns it lacks; no DDL at all when it is complete (any role may write).

    In one transaction: a process killed between the CREATE and the ADD COLUMNs (the kill sweep found
    it) would leave a ledger without steps_done, which the next apply could not even read.
    """
    have = {
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'phase_run'",
            (schema_name(),),
        )
    }
    if not have:
        exists(conn)  # a ledger in another schema is refused before a second one is begun
    if have and not set(_LATER_COLUMNS) - have:
        return
    with conn.transaction():
        if not have:
            # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema is there
            missing = conn.execute(
                "SELECT to_regnamespace(%s) IS NULL", (catalog.quote_ident(schema_name()),)
            ).fetchone()
            assert missing is not None  # a SELECT without FROM returns one row
            if missing[0]:
                conn.execute(_sql("CREATE SCHEMA {schema}"))
            conn.execute(_sql(_DDL))  # the first release's columns; the later ones are added just below
        for name, kind in _LATER_COLUMNS.items():
            if name not in have:
                conn.execute(f"ALTER TABLE {table()} ADD COLUMN IF NOT EXISTS {name} {kind}")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return ""
