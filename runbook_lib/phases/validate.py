"""validate: prove what the database now enforces; every test runs in one transaction that is rolled back."""

from __future__ import annotations

import time
from pathlib import Path

from runbook_lib.batch import blocks as sqlblocks
from runbook_lib.batch import declared as checks
from runbook_lib.batch.model import VALIDATION
from runbook_lib.db import catalog, history, ledger
from runbook_lib.errors import NotApplied
from runbook_lib.orm import prisma_schema as orm
from runbook_lib.phases import preflight
from runbook_lib.phases.session import Session
from runbook_lib.report import records
from runbook_lib.report.records import ValidationResult


def run(session: Session, *, require_applied: bool = True, orm_strict: bool = False,
        prisma_schema_path: str | Path | None = None) -> ValidationResult:
    """Run the batch's declared checks and validation.sql, roll everything back, record the outcome.

    schema.prisma (`prisma_schema_path`, else the batch folder's, else the one next to the migrations
    folder) is compared with the database for every column the checks touch; with `orm_strict` a
    mismatch fails the validation.
    """
    batch = session.batch
    blocks_file = batch.file(VALIDATION)
    file_blocks = sqlblocks.load(blocks_file) if blocks_file else []
    schema_path = Path(prisma_schema_path) if prisma_schema_path else orm.find(batch, session.migrations_dir)
    schema = orm.load(schema_path) if schema_path else None  # a file it cannot read stops here, before any test
    started = records.now_iso()
    t0 = time.perf_counter()
    with session.connect() as conn:
        if require_applied and not history.read(conn, session.batches()).state(batch.number).applied:
            raise NotApplied(
                f"Batch {batch.number} is not applied on {session.facts.database}, so there is nothing to validate; "
                f"apply it first (`runbook apply {batch.number}`)."
            )
        conn.commit()
        touched = batch.checks.tables
        rows_before = _row_counts(conn, touched)
        with ledger.LedgerWriter(session.url, run_id=session.run.run_id, batch=batch.number,
                                 batch_name=batch.name, phase="validate", checksum=batch.checksum) as writer:
            with conn.transaction(force_rollback=True):
                blocks = checks.tests(conn, batch.checks) + file_blocks
                results = [sqlblocks.run(conn, block) for block in blocks]
            leftover = sum(_row_counts(conn, touched).values()) - sum(rows_before.values())
            mismatches = orm.compare(conn, schema, batch.checks.columns) if schema else []
            conn.commit()
            result = ValidationResult(
                batch=preflight.BatchInfo.of(batch), connection=session.facts, run_id=session.run.run_id,
                started_at=started, duration_s=round(time.perf_counter() - t0, 6), tests=results,
                leftover_rows=leftover, prisma_schema=str(schema_path) if schema else None,
                orm_mismatches=mismatches, orm_strict=orm_strict,
            )
            session.run.write("validate", result)
            message = result.headline
            if orm_strict and mismatches:
                message += f"; {len(mismatches)} field(s) of {schema_path} disagree with the database"
            writer.finish(ledger.SUCCEEDED if result.ok else ledger.FAILED, message)
    return result


def _row_counts(conn, names: list[str]) -> dict[str, int]:
    return {name: catalog.snapshot_table(conn, name).rows for name in names}
