"""validate: prove what the database now enforces; every test runs in one transaction that is rolled back."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import psycopg

from runbook_lib import names
from runbook_lib.batch import blocks as sqlblocks
from runbook_lib.batch import declared as checks
from runbook_lib.batch import derived, history
from runbook_lib.batch.model import VALIDATION
from runbook_lib.db import catalog, ledger
from runbook_lib.errors import NotApplied, RunbookError
from runbook_lib.execution.session import Release, Session
from runbook_lib.orm import prisma_schema as orm
from runbook_lib.phases import preflight
from runbook_lib.report import records
from runbook_lib.report.records import (
    ExecutionResult,
    ReleaseValidation,
    ValidationResult,
)
from runbook_lib.sql import expect


def run(
    session: Session | Release,
    *,
    require_applied: bool = True,
    orm_strict: bool = False,
    prisma_schema_path: str | Path | None = None,
    known: history.History | None = None,
    later_touched: expect.Touched | None = None,
    fail_on_not_run: bool = False,
    conn: psycopg.Connection | None = None,
) -> ValidationResult | ReleaseValidation:
    """Run the batch's declared checks, validation.sql and the tests derived from migration.sql; roll back; record.

    Derived tests (runbook_lib.batch.derived) need nobody to write them: what migration.sql creates,
    changes or drops is compared with the catalog. A batch with no test at all (a pure data UPDATE, no
    [checks]) is recorded as "no tests" and passes: validate fails only when a test fails.

    schema.prisma (`prisma_schema_path`, else the batch folder's, else the one next to the migrations
    folder) is compared with the database for every column the checks touch; with `orm_strict` a
    mismatch fails the validation. A test that was not run fails it only with `fail_on_not_run`. `conn`: an open
    connection to run on (a release's, between two migrations), left open; else one of its own.
    """
    if isinstance(session, Release):
        return run_release(
            session, orm_strict=orm_strict, prisma_schema_path=prisma_schema_path, fail_on_not_run=fail_on_not_run
        )
    batch = session.batch
    blocks_file = batch.file(VALIDATION)
    file_blocks = sqlblocks.load(blocks_file) if blocks_file else []
    schema_path = Path(prisma_schema_path) if prisma_schema_path else orm.find(batch, session.migrations_dir)
    schema = orm.load(schema_path) if schema_path else None  # a file it cannot read stops here, before any test
    started = records.now_iso()
    t0 = time.perf_counter()
    with contextlib.nullcontext(conn) if conn is not None else session.connect() as conn:
        known = known or history.read(conn, session.batches())
        # only when the caller did not say what later migrations change (a release says it): a release's
        # migration would otherwise go through the whole folder, which makes a long release quadratic
        later = (
            [b for b in session.batches() if b.number > batch.number and known.state(b.number).applied]
            if later_touched is None
            else []
        )
        if require_applied and not known.state(batch.number).applied:
            raise NotApplied(
                f"Batch {batch.number} is not applied on {session.facts.database}, so there is nothing to validate; "
                f"apply it first (`runbook apply {batch.number}`)."
            )
        conn.commit()
        touched = batch.checks.tables
        with ledger.LedgerWriter(
            session.url,
            run_id=session.run.run_id,
            batch=batch.number,
            batch_name=batch.name,
            phase="validate",
            checksum=batch.checksum,
        ) as writer:
            with conn.transaction(force_rollback=True):
                row = conn.execute("SELECT txid_current(), current_schema()").fetchone()
                assert row is not None  # a SELECT without FROM: always one row
                first_xid, home = row[0], row[1] or "public"  # one round trip for both
                if later_touched is None:
                    later_touched = derived.touched_by(later)
                earlier = [b for b in session.batches() if b.number < batch.number]
                derivation = derived.derive(
                    conn, batch.migration_sql, later=later_touched, earlier=earlier, schema=home
                )
                declared = checks.tests(conn, batch.checks)
                # one behaviour, one test: a derived test that proves what a declared check (or a block of
                # validation.sql) proves is merged into it, and recorded there as its second source
                declared, own, written = derived.merge(declared, derivation.blocks, file_blocks)
                blocks = declared + own + written
                results = sqlblocks.run_all(conn, blocks)
                last_xid = _xid(conn)
            leftover = _left_behind(conn, touched, first_xid, last_xid)
            explicit = prisma_schema_path is not None
            # schema_path: where the schema was loaded from (set whenever schema is)
            scope = _orm_scope(session, schema_path, explicit=explicit) if schema and schema_path else ""
            if not schema:
                mismatches = []
            elif scope.startswith("every"):
                mismatches = orm.compare_all(conn, schema)
            else:
                mismatches = orm.compare(conn, schema, batch.checks.columns)
            conn.commit()
            result = ValidationResult(
                batch=preflight.BatchInfo.of(batch),
                connection=session.facts,
                run_id=session.run.run_id,
                started_at=started,
                duration_s=round(time.perf_counter() - t0, 6),
                tests=results,
                leftover_rows=leftover,
                prisma_schema=str(schema_path) if schema else None,
                orm_mismatches=mismatches,
                orm_strict=orm_strict,
                derived_notes=derivation.notes,
                orm_scope=scope,
                fail_on_not_run=fail_on_not_run,
            )
            session.run.write("validate", result)
            message = result.headline
            if orm_strict and mismatches:
                message += f"; {len(mismatches)} field(s) of {schema_path} disagree with the database"
            writer.finish(ledger.SUCCEEDED if result.ok else ledger.FAILED, message)
    return result


def _orm_scope(session: Session, schema_path: Path, *, explicit: bool) -> str:
    """Which fields of schema.prisma to compare, and why.

    schema.prisma describes the state after the LAST migration. For the batch's own schema.prisma, one given
    explicitly, or the latest batch of the folder, that is the state validate sees: every model and field is
    compared. For a batch in the middle of a history, tables and columns of later migrations do not exist
    yet and would all be false mismatches: only the columns the checks name are compared, and this says so.
    """
    batch = session.batch
    latest = max(b.number for b in session.batches())  # the folder, read once per session (or release)
    if explicit or schema_path.parent == batch.path or batch.number == latest:
        return "every model and field"
    return (
        f"only the columns the checks name: a schema.prisma beside the migrations folder is taken to "
        f"describe the state after the latest batch ({latest}), as Prisma keeps it, not after batch {batch.number}"
    )


def _xid(conn: psycopg.Connection) -> int:
    """The current transaction's id (with its epoch): the tests' rows carry it, or a subtransaction's after it."""
    row = conn.execute("SELECT txid_current()").fetchone()
    assert row is not None  # a SELECT without FROM: always one row
    return row[0]


def _left_behind(conn: psycopg.Connection, names: list[str], first_xid: int, last_xid: int) -> int:
    """Rows the tests wrote that are still there after their rollback, whatever the application wrote meanwhile.

    The tests run in one transaction that is rolled back, so while it stayed one transaction (the same id
    at its end as at its start) nothing it wrote can remain: 0, without counting anything. A block that
    ended it (a COMMIT in validation.sql) leaves committed rows whose xmin is one of the ids the tests
    used, from `first_xid` to `last_xid` (savepoints and the transactions after the COMMIT): those rows are
    counted per table (with, in that broken case only, any row another session committed with an id in
    the same range). Comparing row counts before and after instead counted every row the application
    inserted while validate ran.
    """
    if first_xid == last_xid:
        return 0
    low, high = first_xid % 2**32, last_xid % 2**32  # xmin is the 32-bit id, without the epoch
    total = 0
    for name in names:
        regclass = conn.execute("SELECT to_regclass(%s)", (catalog.regclass_text(name),)).fetchone()
        assert regclass is not None  # a SELECT without FROM: always one row
        if regclass[0] is None:
            continue
        # the name is quoted by regclass_text: nothing here comes from input unescaped
        counted = conn.execute(
            f"SELECT count(*) FROM {catalog.regclass_text(name)} WHERE xmin::text::bigint BETWEEN %s AND %s",
            (low, high),
        ).fetchone()
        assert counted is not None  # count(*) without GROUP BY: always one row
        total += counted[0]
    conn.commit()
    return total


def after_apply(
    session: Session, known: history.History, conn: psycopg.Connection | None = None
) -> ValidationResult | None:
    """Validate one migration of a release the moment it committed, so that its tests see the state it left.

    A later migration of the release may drop a column under an index this one created, or rename what it
    made: judged at the end of the release, such an expectation would fail though the migration was right.
    The record is judged by the validate phase (`run_release`), which also applies its options. A test that
    cannot even start (a malformed validation.sql) leaves no record: the validate phase runs that migration
    again and reports the problem there, without stopping the release's other migrations.
    """
    try:
        validated = run(session, require_applied=False, known=known, later_touched=expect.Touched(), conn=conn)
    except RunbookError:
        return None
    assert isinstance(validated, ValidationResult)  # a Session's validation is one migration's
    return validated


def run_release(
    release: Release,
    *,
    orm_strict: bool = False,
    prisma_schema_path: str | Path | None = None,
    fail_on_not_run: bool = False,
) -> ReleaseValidation:
    """Validate each migration this release applied (its apply.json says so), in order.

    A migration whose tests ran right after its apply (`after_apply`, as `runbook deploy` does) keeps that record,
    judged here with this phase's options; the others (`runbook apply pending`, then `runbook validate pending`)
    are validated now, each without what later applied migrations change again (sql.expect.superseded).
    """
    result = ReleaseValidation(release.plan)
    with release.connect() as conn:  # both histories read once: validate writes nothing either would change
        known = history.read(conn, release.folder)
    after: dict[int, expect.Touched] | None = None  # built only when a migration is validated here

    def changed_after(number: int) -> expect.Touched:
        nonlocal after
        if after is None:
            after = derived.touched_after([b for b in release.folder if known.state(b.number).applied])
        return after.get(number, expect.Touched())

    with ledger.shared_connection(release.url):
        for batch in release.batches:
            session = release.session(batch)
            applied = session.run.read(names.APPLY, ExecutionResult)
            if applied is None or applied.status not in (names.APPLIED, names.ALREADY_APPLIED):
                continue
            recorded = session.run.read(names.VALIDATE, ValidationResult) if prisma_schema_path is None else None
            if recorded is not None and recorded.run_id == session.run.run_id:
                if (recorded.orm_strict, recorded.fail_on_not_run) != (orm_strict, fail_on_not_run):
                    recorded.orm_strict, recorded.fail_on_not_run = orm_strict, fail_on_not_run
                    session.run.write(names.VALIDATE, recorded)
                result.results.append(recorded)
                continue
            validated = run(
                session,
                orm_strict=orm_strict,
                prisma_schema_path=prisma_schema_path,
                known=known,
                later_touched=changed_after(batch.number),
                fail_on_not_run=fail_on_not_run,
            )
            assert isinstance(validated, ValidationResult)  # a Session's validation is one migration's
            result.results.append(validated)
    return result
