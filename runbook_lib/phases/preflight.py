"""Preflight: everything worth knowing before the migration touches anything, ending in GO / WARN / NO-GO.

It runs in a READ ONLY transaction: nothing it runs, preflight.sql included, can change the database.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, overload

import psycopg
from psycopg.rows import dict_row

from runbook_lib.batch import blocks as sqlblocks
from runbook_lib.batch import declared as checks
from runbook_lib.batch import history
from runbook_lib.batch.model import PREFLIGHT, Batch, BatchInfo
from runbook_lib.db import catalog, ledger
from runbook_lib.errors import BatchError
from runbook_lib.execution.session import Release, Session
from runbook_lib.names import GO, NOGO, WARN
from runbook_lib.report.records import (
    HIDDEN_STATE,
    Blocker,
    LedgerCheck,
    PreflightResult,
    ReleasePreflight,
    TableSize,
    Verdict,
)
from runbook_lib.sql import analysis, batching, linked_locks, lockcost, privileges
from runbook_lib.sql import lint as lint_mod
from runbook_lib.sql.analysis import StatementAnalysis
from runbook_lib.sql.lint import LintResult


def ledger_check(
    conn: psycopg.Connection,
    batch: Batch,
    batches: list[Batch] | None = None,
    assume_applied: frozenset[int] = frozenset(),
    known: history.History | None = None,
) -> LedgerCheck:
    """The batch and its dependencies in both histories (runbook's ledger, `_prisma_migrations`).

    `batches` (the whole folder) lets Prisma's rows of the dependencies be matched by their names;
    `assume_applied`: the migrations a release applies before this one count as applied dependencies;
    `known`: both histories already read (a release reads them once for all its migrations).
    """
    known = known or history.read(conn, batches if batches is not None else [batch])
    own = known.state(batch.number)
    deps = tuple((n, n in assume_applied or known.state(n).applied) for n in batch.depends_on)
    return LedgerCheck(
        applied=own.applied,
        applied_checksum=own.checksum,
        applied_at=own.when or None,
        applied_by=own.applied_by,
        checksum=batch.checksum,
        drift=bool(own.drift(batch)),
        dependencies=deps,
        source=own.source,
        notes="; ".join(own.notes),
        prisma_failed=known.failed_message(),
    )


def touched_tables(batch: Batch, statements: list) -> list[str]:
    seen: dict[str, None] = {}
    for stmt in statements:
        for lock in stmt.locks:
            seen[lock.table] = None
    for name in batch.checks.tables:
        seen[name] = None
    return list(seen)


def table_sizes(conn: psycopg.Connection, names: list[str]) -> list[TableSize]:
    sizes = []
    with conn.pipeline():  # one round trip for all of them
        asked = [
            conn.cursor().execute(
                "SELECT c.reltuples::bigint, pg_total_relation_size(c.oid) FROM pg_class c"
                " WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p')",
                (catalog.regclass_text(name),),
            )
            for name in names
        ]
    for name, cur in zip(names, asked, strict=True):
        row = cur.fetchone()
        if row is None:
            sizes.append(TableSize(name, False, 0, 0))
        else:
            sizes.append(TableSize(name, True, max(int(row[0]), 0), int(row[1])))
    return sizes


_BLOCKERS_SQL = """
SELECT a.pid, coalesce(a.usename, '') AS user, coalesce(a.application_name, '') AS application,
       coalesce(a.state, %(hidden)s) AS state,
       coalesce(extract(epoch FROM clock_timestamp() - a.xact_start), 0)::float AS transaction_age_s,
       coalesce(string_agg(DISTINCT l.mode || ' on ' || l.relation::regclass::text, ', '), '') AS locks,
       left(coalesce(a.query, ''), 200) AS query
FROM pg_stat_activity a
LEFT JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'relation' AND l.granted
     AND l.relation = ANY(%(oids)s::oid[])
WHERE a.pid <> pg_backend_pid() AND a.datname = current_database()
  AND (a.backend_type = 'client backend' OR a.state IS NULL AND a.usesysid IS NOT NULL)  -- NULL: hidden from this role
GROUP BY a.pid, a.usename, a.application_name, a.state, a.xact_start, a.query
HAVING count(l.relation) > 0 OR clock_timestamp() - a.xact_start > make_interval(secs => %(idle)s)
ORDER BY a.xact_start NULLS LAST
"""


def blockers(conn: psycopg.Connection, names: list[str], *, long_transaction_s: float = 60.0) -> list[Blocker]:
    oids = []
    for name in names:
        regclass = conn.execute("SELECT to_regclass(%s)::oid", (catalog.regclass_text(name),)).fetchone()
        assert regclass is not None  # a SELECT without FROM: always one row
        oid = regclass[0]
        if oid is not None:
            oids.append(oid)
    found = []
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(_BLOCKERS_SQL, {"oids": oids, "idle": long_transaction_s, "hidden": HIDDEN_STATE}):
            reasons = []
            if row["locks"]:
                reasons.append(f"holds {row['locks']}")
            if row["transaction_age_s"] > long_transaction_s:
                reasons.append(f"transaction open {row['transaction_age_s']:.0f} s ({row['state']})")
            found.append(Blocker(reason="; ".join(reasons), **row))
    return found


def _verdict(result: PreflightResult, *, gates_deferred: bool = False) -> Verdict:
    nogo, warn = [], []
    if result.privileges is not None:
        nogo += result.privileges.lines(NOGO)
        warn += result.privileges.lines(WARN)
    lc = result.ledger
    if lc.prisma_failed:
        nogo.append(lc.prisma_failed.rstrip("."))
    if lc.drift:
        assert lc.applied_checksum is not None  # drift: a history recorded another checksum than the file's
        nogo.append(
            f"migration.sql changed since batch {result.batch.number} was applied "
            f"(applied {lc.applied_checksum[:12]}, now {lc.checksum[:12]})"
        )
    elif lc.applied:
        nogo.append(f"batch {result.batch.number} is already applied ({lc.applied_at} by {lc.applied_by})")
    for number in lc.missing_dependencies:
        nogo.append(f"batch {number}, which this batch depends on, is not applied")
    for gate in result.gates:
        if not gate.ran:  # it proved nothing either way: neither a GO nor a NO-GO on its account
            warn.append(
                f"gate '{gate.name}' was not run ({gate.reason}), so what it guards is unchecked; "
                "check it by hand before applying, or remove what stopped it"
            )
        elif gate.failed:
            text = f"gate '{gate.name}' expected {gate.expectation}, got {gate.observed}"
            if gates_deferred:  # a release: the migrations before this one may change what the gate sees
                warn.append(text + " before the release's earlier migrations; apply checks it again right before")
            else:
                nogo.append(text)
    for blocker in result.blockers:
        who = ", ".join(part for part in (blocker.application or blocker.user, blocker.state) if part)
        since = "" if blocker.state == HIDDEN_STATE else f", in a transaction for {blocker.transaction_age_s:.0f} s"
        warn.append(
            f"session {blocker.pid} ({who}{since}) {blocker.reason}: "
            "the migration's locks would queue behind it, and writers behind them"
        )
    for stmt in result.statements:
        overrides = [n for n in stmt.notes if "runbook sets for the migration" in n]
        if overrides:
            warn.append(
                f"statement {stmt.index} (line {stmt.line}) {overrides[0]}: the migration then waits "
                "without runbook's limit and can stall the application; remove it and use --lock-timeout"
            )
    for cost in result.lock_costs:
        if cost.over_threshold:
            warn.append(
                f"statement {cost.statement_index} ({cost.kind}) would block writes to {cost.table} for about "
                f"{cost.estimate_ms:.0f} ms (threshold {result.lock_threshold_ms:g} ms); instead: {cost.alternative}"
            )
    total = result.write_block_estimate_ms
    if total > result.lock_threshold_ms and not any(c.over_threshold for c in result.lock_costs):
        warn.append(
            f"together the statements would block writes for about {total:.0f} ms in one transaction "
            f"(threshold {result.lock_threshold_ms:g} ms); split the batch or use the online alternatives"
        )
    if nogo:
        return Verdict(NOGO, tuple(nogo + warn))
    if warn:
        return Verdict(WARN, tuple(warn))
    return Verdict(GO)


@dataclass(frozen=True)
class Inputs:
    """The batch's files as preflight reads them: migration.sql parsed, preflight.sql's blocks."""

    statements: list[StatementAnalysis]
    blocks: list[sqlblocks.SqlBlock]


def load_inputs(session: Session, statements: list[StatementAnalysis] | None = None) -> Inputs:
    """Parse the files once, before anything runs or is recorded: a malformed one is refused here."""
    batch = session.batch
    if statements is None:
        statements = analysis.analyze(
            batch.migration_sql, filename=f"{batch.name}/migration.sql", server_major=session.facts.major
        )
    if not statements:  # GO for a file apply refuses would be a verdict about nothing
        raise BatchError(
            f"{batch.name}/migration.sql has no SQL statement; write the change in it (or remove the batch)."
        )
    path = batch.file(PREFLIGHT)
    return Inputs(statements, sqlblocks.load(path) if path else [])


def evaluate(
    session: Session,
    *,
    long_transaction_s: float = 60.0,
    lock_threshold_ms: float = 1000.0,
    lint: bool = True,
    measure: bool = True,
    inputs: Inputs | None = None,
    assume_applied: frozenset[int] = frozenset(),
    conn: psycopg.Connection | None = None,
    lint_result: LintResult | None = None,
    check_blockers: bool = True,
    known: history.History | None = None,
    terminate_blockers_after_s: float | None = None,
    privileges_read: privileges.Reading | None = None,
) -> PreflightResult:
    """Run every preflight check read-only and return the facts with a verdict; writes nothing.

    A release passes what it shares across its migrations: `assume_applied` (the migrations applied
    before this one: dependencies met, gates only a warning until apply checks them again), one
    read-only `conn`, squawk's `lint_result` from one run over every file, and `check_blockers` for the
    first migration only (the sessions that block are the same for all of them), both histories already
    read (`known`: nothing is applied until preflight ends), and its reading of the role's privileges
    (`privileges_read`: the role checked once, the tables earlier migrations create needing nothing).
    """
    batch = session.batch
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    inputs = inputs or load_inputs(session)
    statements, blocks = inputs.statements, inputs.blocks
    own = conn is None
    if conn is None:
        conn = session.connect()
        conn.read_only = True
    try:
        with conn.transaction(force_rollback=True):
            statements = linked_locks.refine(conn, statements)  # the far end of a foreign key a drop removes
            lc = ledger_check(conn, batch, session.batches(), assume_applied, known)
            gate_blocks = sqlblocks.unrepeated(checks.gates(conn, batch.checks), blocks) + blocks
            gates = [sqlblocks.run(conn, block) for block in gate_blocks]
            names = touched_tables(batch, statements)
            sizes = table_sizes(conn, names)
            backfills = batching.check(conn, statements)  # which data statements --strategy online batches, and why not
            read = privileges_read or privileges.Reading(terminate_blockers_after_s is not None, ledger.schema_name())
            allowed = read.check(conn, batch.migration_sql, filename=f"{batch.name}/migration.sql")
            found_blockers, costs = [], []
            if measure:  # apply's own check skips these: they scan tables and it waits for locks anyway
                if check_blockers:
                    found_blockers = blockers(conn, names, long_transaction_s=long_transaction_s)
                costs = lockcost.estimate(
                    conn,
                    statements,
                    {t.table: (t.rows_estimate, t.bytes) for t in sizes if t.exists},
                    threshold_ms=lock_threshold_ms,
                )
    finally:
        if own:
            conn.close()
    if lint and lint_result is None:
        lint_result = lint_mod.lint(batch.migration_sql, server_major=session.facts.major)
    elif not lint:
        lint_result = None
    result = PreflightResult(
        batch=BatchInfo.of(batch),
        connection=session.facts,
        run_id=session.run.run_id,
        started_at=started.isoformat(timespec="milliseconds"),
        duration_s=round(time.perf_counter() - t0, 3),
        ledger=lc,
        gates=gates,
        statements=statements,
        lint=lint_result,
        tables=sizes,
        blockers=found_blockers,
        lock_costs=costs,
        lock_threshold_ms=lock_threshold_ms,
        backfills=backfills,
        privileges=allowed,
    )
    result.verdict = _verdict(result, gates_deferred=bool(assume_applied))
    return result


@overload
def run(session: Session, **options: Any) -> PreflightResult: ...
@overload
def run(session: Release, **options: Any) -> ReleasePreflight: ...


def run(session: Session | Release, **options: Any) -> PreflightResult | ReleasePreflight:
    """The preflight phase: evaluate, record in the ledger and the run folder; NO-GO is raised by the caller."""
    if isinstance(session, Release):
        return run_release(session, **options)
    try:
        inputs = load_inputs(session)  # malformed files are refused before the ledger records anything
    except BatchError as exc:
        with contextlib.suppress(Exception):
            _record_refusal(session, exc)
        raise
    with ledger.LedgerWriter(
        session.url,
        run_id=session.run.run_id,
        batch=session.batch.number,
        batch_name=session.batch.name,
        phase="preflight",
        checksum=session.batch.checksum,
        required=False,
    ) as writer:
        result = evaluate(session, inputs=inputs, **options)
        session.run.write("preflight", result)
        status = ledger.FAILED if result.verdict.status == NOGO else ledger.SUCCEEDED
        writer.finish(status, str(result.verdict))
    return result


def _record_refusal(session: Session, exc: BatchError) -> None:
    """preflight.json for a file preflight could not read: NO-GO with the reason, so the run's summary still
    renders and says why (the ledger is not written: nothing was checked)."""
    started = datetime.now(UTC)
    with session.connect() as conn:
        conn.read_only = True
        lc = ledger_check(conn, session.batch, session.batches())
    session.run.write(
        "preflight",
        PreflightResult(
            batch=BatchInfo.of(session.batch),
            connection=session.facts,
            run_id=session.run.run_id,
            started_at=started.isoformat(timespec="milliseconds"),
            duration_s=0.0,
            ledger=lc,
            gates=[],
            verdict=Verdict(NOGO, (str(exc),)),
        ),
    )


def run_release(release: Release, **options: Any) -> ReleasePreflight:
    """Preflight of every migration of the release, in order, before the first is applied.

    Each is judged as it will be met: the release's earlier migrations count as applied.
    """
    result = ReleasePreflight(release.plan)
    linted = lint_mod.lint_files([b.migration_path for b in release.batches], server_major=release.facts.major)
    earlier: set[int] = set()
    read = privileges.Reading(options.get("terminate_blockers_after_s") is not None, ledger.schema_name())
    with release.connect() as conn, ledger.shared_connection(release.url):
        conn.read_only = True
        known = history.read(conn, release.folder)
        conn.commit()
        for batch in release.batches:
            result.results.append(
                run(
                    release.session(batch),
                    assume_applied=frozenset(earlier),
                    conn=conn,
                    lint_result=linted.get(batch.migration_path),
                    check_blockers=not earlier,
                    known=known,
                    privileges_read=read,
                    **options,
                )
            )
            earlier.add(batch.number)
    return result
