"""validate: prove what the database now enforces; every test runs in one transaction that is rolled back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd

from . import checks, execution, ledger, preflight, sqlblocks, tables
from .batch import VALIDATION
from .database import ConnectionFacts
from .errors import NotApplied, ValidationFailed
from .session import Session


@dataclass
class ValidationResult:
    batch: preflight.BatchInfo
    connection: ConnectionFacts
    run_id: str
    started_at: str
    duration_s: float
    tests: list[sqlblocks.BlockResult] = field(default_factory=list)
    leftover_rows: int = 0  # rows the tests left behind in the touched tables: must be 0

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
        return self.total > 0 and self.passed == self.total

    @property
    def headline(self) -> str:
        return f"{self.passed}/{self.total} tests passed ({self.percent:g}%)"

    def tests_frame(self) -> pd.DataFrame:
        return tables.frame(self.tests, ["name", "expectation", "outcome", "status", "source"], empty="no tests")

    def raise_for_failures(self) -> None:
        failed = [t for t in self.tests if not t.passed]
        if not self.tests:
            raise ValidationFailed(
                f"Batch {self.batch.number} has no tests: add [checks] to batch.toml or a validation.sql."
            )
        if failed:
            details = "; ".join(f"'{t.name}' expected {t.expectation}, got {t.outcome}" for t in failed)
            raise ValidationFailed(f"Validation of batch {self.batch.number}: {self.headline}; failing: {details}.")


def run(session: Session, *, require_applied: bool = True) -> ValidationResult:
    """Run the batch's declared checks and validation.sql, roll everything back, record the outcome."""
    batch = session.batch
    blocks_file = batch.file(VALIDATION)
    file_blocks = sqlblocks.load(blocks_file) if blocks_file else []
    started = execution._now()
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
            conn.commit()
            result = ValidationResult(
                batch=preflight.BatchInfo.of(batch), connection=session.facts, run_id=session.run.run_id,
                started_at=started, duration_s=round(time.perf_counter() - t0, 6), tests=results,
                leftover_rows=leftover,
            )
            session.run.write("validate", result)
            writer.finish(ledger.SUCCEEDED if result.ok else ledger.FAILED, result.headline)
    return result


def _row_counts(conn, names: list[str]) -> dict[str, int]:
    from . import catalog

    return {name: catalog.snapshot_table(conn, name).rows for name in names}
