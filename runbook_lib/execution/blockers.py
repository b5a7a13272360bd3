"""Look before you queue: wait for a session that would block a step's locks without requesting them.

A lock request that cannot be granted joins the table's queue, and every later request that conflicts with
it (an application's INSERT behind a pending ACCESS EXCLUSIVE) queues behind it: lock_timeout only bounds
that stall. So before a step asks for its locks, apply reads pg_locks and pg_stat_activity: while a session
holds (or waits ahead for) a lock on one of the step's tables that conflicts with a mode the step will
request (`sql.locks.conflicts`, PostgreSQL's conflict table), and that session is idle in transaction or
in a transaction older than the threshold, apply waits without asking, so nobody queues behind it. A short
application transaction is not a blocker: the request goes ahead and at worst waits for it to commit.

A role without pg_read_all_stats sees another role's sessions in pg_stat_activity with no state, no
transaction start and no query; pg_locks still shows every session's locks, with the transaction holding
each (`virtualtransaction`). Such a holder is waited for, without asking, while it is there; one seen
holding its conflicting lock in the same transaction across looks that span the threshold is a blocker
like any other. A stream of short transactions, each seen once, is not: after waiting the threshold for
such holders (four thresholds in all) the request goes ahead, as for a visible young transaction.

The race between looking and requesting stays bounded by lock_timeout, and by the live guard
(`execution.guard`), which cancels a pending request as soon as an application session queues behind it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import psycopg
from psycopg.rows import dict_row

from runbook_lib.config import DEFAULTS, Options
from runbook_lib.db import catalog, reader
from runbook_lib.execution import live
from runbook_lib.report.records import HIDDEN_STATE, BlockerWait, ExecutionResult
from runbook_lib.sql import locks, plan

POLL_S = 0.01  # between two looks while waiting: how late apply asks once the blocker has gone
IDLE_GRACE_S = 0.005  # idle in transaction for less than this is an application between two statements
QUERY_CHARS = 200  # the blocker's query, cut short: it is the application's SQL and may carry its data
SHOWN_CHARS = 80  # the same, on the one line a person reads live

TERMINATED, ENDED, BUDGET_SPENT = "terminated", "ended", "budget spent"
# Hidden holders too new to judge are waited for up to this many thresholds in all: one that stays is judged a
# blocker within one threshold of being first seen; a stream of short transactions, each gone before that,
# does not hold the step back longer than this.
UNJUDGED_WAITS = 4


@dataclass(frozen=True)
class Policy:
    """How apply treats blockers: the wait budget, the threshold, and the opt-in termination."""

    wait_s: float = DEFAULTS.wait_for_blockers_s  # over the whole run; when spent, it fails naming the blocker
    threshold_ms: int = DEFAULTS.blocker_threshold_ms  # a younger transaction (not idle in it) is not a blocker
    terminate_after_s: float | None = DEFAULTS.terminate_blockers_after_s  # None: never terminate anyone

    @classmethod
    def of(cls, options: Options) -> Policy:
        return cls(options.wait_for_blockers_s, options.blocker_threshold_ms, options.terminate_blockers_after_s)


class BlockedTooLong(Exception):
    """The wait budget was spent and a blocker is still there."""

    def __init__(self, blocker: BlockerWait, waited_s: float, budget_s: float) -> None:
        self.blocker, self.waited_s, self.budget_s = blocker, waited_s, budget_s


_LOCKS_SQL = """
SELECT l.pid, l.relation, l.mode, l.granted, l.virtualtransaction, a.state IS NULL AS hidden,
       coalesce(a.usename, '') AS user,
       coalesce(a.application_name, '') AS application, coalesce(a.state, '') AS state,
       a.xact_start, extract(epoch FROM clock_timestamp() - a.xact_start)::float AS transaction_age_s,
       extract(epoch FROM clock_timestamp() - a.state_change)::float AS state_age_s,
       left(coalesce(a.query, ''), %(chars)s) AS query
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.relation = ANY(%(oids)s::oid[]) AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY a.xact_start NULLS LAST, l.pid
"""


_TERMINATE_SQL = """
SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a
WHERE a.pid = %(pid)s AND a.state LIKE 'idle in transaction%%' AND a.xact_start = %(since)s::timestamptz
"""


def wanted_locks(step: plan.Step) -> dict[str, str]:
    """The strongest mode the step requests on each table, for the modes an application would queue behind."""
    wanted: dict[str, str] = {}
    for stmt in step.statements:
        for table, mode in stmt.table_locks:
            if locks.blocks_writes(mode) or locks.blocks_reads(mode):
                wanted[table] = locks.strongest([mode, wanted.get(table, mode)])
    return wanted


def _oids(conn: psycopg.Connection, wanted: dict[str, str]) -> dict[int, tuple[str, str]]:
    """oid -> (table as the SQL wrote it, mode), in one query; tables the migration creates do not exist yet."""
    if not wanted:
        return {}
    tables = list(wanted)
    with reader.outside_transaction(conn):
        rows = conn.execute(
            "SELECT i, to_regclass(t)::oid FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, i)",
            ([catalog.regclass_text(t) for t in tables],),
        ).fetchall()
    return {oid: (tables[i - 1], wanted[tables[i - 1]]) for i, oid in rows if oid is not None}


def look(
    conn: psycopg.Connection, step: plan.Step, policy: Policy, wanted: dict[int, tuple[str, str]] | None = None
) -> list[BlockerWait]:
    """The sessions the step would queue behind now, one per session (its first conflicting lock).

    A session whose state this role cannot see is included whenever it holds a conflicting lock, its
    `state` HIDDEN_STATE and its `since` its transaction (pg_locks' virtualtransaction): the caller
    (`Lookout`) judges it by how long that transaction has held the lock across looks.
    `wanted` (from `_oids`) saves resolving the step's tables again on every look of one wait.
    """
    if wanted is None:
        wanted = _oids(conn, wanted_locks(step))
    if not wanted:
        return []
    # nothing stays open between looks
    with reader.outside_transaction(conn), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_LOCKS_SQL, {"oids": list(wanted), "chars": QUERY_CHARS}).fetchall()
    found: dict[int, BlockerWait] = {}
    for row in rows:
        table, mode = wanted[row["relation"]]
        try:
            held = locks.from_pg_locks(row["mode"])
        except ValueError:
            continue  # a predicate lock (SIReadLock) queues nobody
        if row["pid"] in found or not locks.conflicts(mode, held):
            continue
        if row["hidden"]:
            found[row["pid"]] = BlockerWait(
                step=step.number,
                pid=row["pid"],
                user=row["user"],
                application=row["application"],
                state=HIDDEN_STATE,
                since=f"transaction {row['virtualtransaction']}",
                lock=f"{held} on {table}",
                waiting_ahead=not row["granted"],
                query="",
            )
        elif _is_blocker(row, policy):
            found[row["pid"]] = BlockerWait(
                step=step.number,
                pid=row["pid"],
                user=row["user"],
                application=row["application"],
                state=row["state"],
                since=row["xact_start"].isoformat() if row["xact_start"] else "",  # exact:
                lock=f"{held} on {table}",
                waiting_ahead=not row["granted"],
                query=row["query"],
            )  # _TERMINATE_SQL
    return list(found.values())


def _is_blocker(row: dict, policy: Policy) -> bool:
    if row["state"].startswith("idle in transaction") and (row["state_age_s"] or 0) >= IDLE_GRACE_S:
        return True
    return (row["transaction_age_s"] or 0) * 1000 >= policy.threshold_ms


def describe(blocker: BlockerWait) -> str:
    """One line naming a blocker: pid, application, state, since when, the lock, the query cut short."""
    query = " ".join(blocker.query.split())
    if len(query) > SHOWN_CHARS:
        query = query[: SHOWN_CHARS - 1] + "…"
    holds = "waiting ahead for" if blocker.waiting_ahead else "holding"
    if blocker.hidden:
        return (
            f"{blocker.who} in {blocker.since}, {holds} {blocker.lock} (its state and query are hidden from "
            "this role: GRANT pg_read_all_stats shows them)"
        )
    since = blocker.since[11:23] if len(blocker.since) > 19 else blocker.since
    return f"{blocker.who} in a transaction since {since}, {holds} {blocker.lock}: {query or '(no query)'}"


class Lookout:
    """The blockers of one run: waits before each step's lock requests, within one budget for the run."""

    def __init__(
        self, policy: Policy, result: ExecutionResult, on_terminated: Callable[[BlockerWait], None] | None = None
    ) -> None:
        self.policy, self.result, self.on_terminated = policy, result, on_terminated
        self.spent_s = 0.0
        # a hidden holder's transaction -> when a look first saw it holding a conflicting lock; kept across
        # steps and attempts, so a transaction first seen late is a blocker on the retry
        self.hidden_since: dict[tuple[int, str], float] = {}

    def _judge(self, found: list[BlockerWait], now: float) -> tuple[list[BlockerWait], bool]:
        """The blockers among what a look found, and whether a hidden holder is still too new to judge."""
        blockers, unjudged = [], False
        for session in found:
            if session.hidden:
                first = self.hidden_since.setdefault((session.pid, session.since), now)
                if (now - first) * 1000 < self.policy.threshold_ms:
                    unjudged = True
                    continue
            blockers.append(session)
        return blockers, unjudged

    def clear(self, conn: psycopg.Connection, step: plan.Step) -> None:
        """Return when no blocker holds what the step will ask for; raise BlockedTooLong past the budget."""
        wanted = _oids(conn, wanted_locks(step))
        started = time.perf_counter()
        seen: dict[tuple[int, str], tuple[float, BlockerWait]] = {}  # (pid, since) -> first seen, last look
        terminated: set[tuple[int, str]] = set()
        current: list[BlockerWait] = []
        try:
            while True:
                now = time.perf_counter()
                current, unjudged = self._judge(look(conn, step, self.policy, wanted), now)
                for blocker in current:
                    key = (blocker.pid, blocker.since)
                    seen[key] = (seen.get(key, (self.hidden_since.get(key, now), blocker))[0], blocker)
                waited = now - started
                if not current:
                    if unjudged and waited * 1000 < UNJUDGED_WAITS * self.policy.threshold_ms:
                        time.sleep(POLL_S)  # a hidden holder: not asking until it is gone or judged a blocker
                        continue
                    return
                first_seen, first = seen[(current[0].pid, current[0].since)]
                live.emit(live.WAITING, f"step {step.number}: waiting {waited:.1f} s for {describe(first)}")
                if self.policy.terminate_after_s is not None:
                    for blocker in current:
                        key = (blocker.pid, blocker.since)
                        if (
                            key not in terminated
                            and now - seen[key][0] >= self.policy.terminate_after_s
                            and (blocker.hidden or blocker.state.startswith("idle in transaction"))
                        ):
                            terminated.add(key)
                            self._terminate(conn, blocker, now - seen[key][0])
                if self.spent_s + waited >= self.policy.wait_s:
                    raise BlockedTooLong(
                        replace(first, waited_s=round(now - first_seen, 3), outcome=BUDGET_SPENT),
                        self.spent_s + waited,
                        self.policy.wait_s,
                    )
                time.sleep(POLL_S)
        finally:
            waited = time.perf_counter() - started
            if seen:
                self.spent_s += waited
                self.result.blocker_wait_s = round(self.spent_s, 3)
                end = time.perf_counter()
                there = {(b.pid, b.since) for b in current}  # still there: the budget ran out (or the run stopped)
                for key, (first_seen, blocker) in seen.items():
                    if key in terminated:
                        continue  # recorded when it was terminated
                    self.result.blocker_waits.append(
                        replace(
                            blocker,
                            waited_s=round(end - first_seen, 3),
                            outcome=BUDGET_SPENT if key in there else ENDED,
                        )
                    )
                live.emit(live.WAITING, f"step {step.number}: no longer blocked after {waited:.1f} s", final=True)

    def _terminate(self, conn: psycopg.Connection, blocker: BlockerWait, waited_s: float) -> None:
        """pg_terminate_backend, only if it is still the same transaction and still idle in it.

        A session whose state is hidden from this role is never terminated: nothing says it is idle rather
        than running a long query; it is named, and waited for as if the option were off.
        """
        if blocker.hidden:
            self._record_attempt(
                blocker,
                waited_s,
                "not terminated: whether it is idle is hidden from this role "
                "(GRANT pg_read_all_stats lets runbook see it)",
            )
            return
        try:
            done = conn.execute(_TERMINATE_SQL, {"pid": blocker.pid, "since": blocker.since}).fetchone()
            conn.commit()
            outcome = TERMINATED if done and done[0] else "not terminated: no longer idle in that transaction"
        except psycopg.Error as exc:
            conn.rollback()
            outcome = f"not terminated: {exc.diag.message_primary or exc}"
        self._record_attempt(blocker, waited_s, outcome)

    def _record_attempt(self, blocker: BlockerWait, waited_s: float, outcome: str) -> None:
        """Record the attempt's outcome (TERMINATED, or why not); the wait goes on for a session still there."""
        record = replace(blocker, waited_s=round(waited_s, 3), outcome=outcome)
        self.result.blocker_waits.append(record)
        live.emit(live.WAITING, f"step {blocker.step}: {outcome} {describe(blocker)}")
        if outcome == TERMINATED and self.on_terminated is not None:
            self.on_terminated(record)
