"""validate: prove what the database now enforces; every test runs in one transaction that is rolled back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from runbook_lib.batch import declared as checks
from runbook_lib.db import ledger
from runbook_lib.phases import preflight
from runbook_lib.report import records
from runbook_lib.batch import blocks as sqlblocks
from runbook_lib.report import frames as tables
from runbook_lib.orm import prisma_schema as orm
from runbook_lib.batch.model import VALIDATION
from runbook_lib.db.connection import ConnectionFacts
from runbook_lib.errors import NotApplied, ValidationFailed
from runbook_lib.report.markdown import Section
from runbook_lib.orm.prisma_schema import OrmMismatch
from runbook_lib.phases.session import Session


@dataclass
class ValidationResult:
    batch: preflight.BatchInfo
    connection: ConnectionFacts
    run_id: str
    started_at: str
    duration_s: float
    tests: list[sqlblocks.BlockResult] = field(default_factory=list)
    leftover_rows: int = 0  # rows the tests left behind in the touched tables: must be 0
    prisma_schema: str | None = None  # the schema.prisma compared with the database, if one was found
    orm_mismatches: list[OrmMismatch] = field(default_factory=list)
    orm_strict: bool = False  # whether a mismatch fails the validation

    @property
    def passed(self) -> int:
        return sum(1 for t in self.tests if t.passed)

    @property
    def total(self) -> int:
        return len(self.tests)

    @property
    def percent(self) -> float:
        return round(100.0 * self.passed / self.total, 1) if self.total else 0.0

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.passed == self.total and not (self.orm_strict and self.orm_mismatches)

    @property
    def headline(self) -> str:
        return f"{self.passed}/{self.total} tests passed ({self.percent:g}%)"

    def tests_frame(self) -> pd.DataFrame:
        return tables.frame(self.tests, ["name", "expectation", "outcome", "status", "source"], empty="no tests")

    def orm_frame(self) -> pd.DataFrame:
        """schema.prisma against the database, one row per field that disagrees."""
        if self.prisma_schema is None:
            return pd.DataFrame({"model": ["no schema.prisma found next to the batch"]})
        return orm.frame(self.orm_mismatches)

    def orm_section(self) -> Section:
        """The reference document's "Prisma Schema Updates" section, from this result."""
        return orm.section(self.orm_mismatches, self.prisma_schema)

    def raise_for_failures(self) -> None:
        failed = [t for t in self.tests if not t.passed]
        if not self.tests:
            raise ValidationFailed(
                f"Batch {self.batch.number} has no tests: add [checks] to batch.toml or a validation.sql."
            )
        problems = []
        if failed:
            problems.append(self.headline + "; failing: "
                            + "; ".join(f"'{t.name}' expected {t.expectation}, got {t.outcome}" for t in failed))
        if self.orm_strict and self.orm_mismatches:
            problems.append(f"{self.prisma_schema} disagrees with the database: " + "; ".join(
                f"{m.model}.{m.field} reads '{m.schema_prisma}' but the database has {m.database} "
                f"(write '{m.fix}')" for m in self.orm_mismatches))
        if problems:
            raise ValidationFailed(f"Validation of batch {self.batch.number}: " + "; and ".join(problems) + ".")


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
        if require_applied and not ledger.state(conn, batch.number).applied:
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
    from runbook_lib.db import catalog

    return {name: catalog.snapshot_table(conn, name).rows for name in names}
