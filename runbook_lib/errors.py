"""User-facing failures: each message is one sentence that names the problem and the fix."""

from __future__ import annotations


class RunbookError(Exception):
    """Base of every failure a user can cause or fix; the CLI prints the message, not a traceback."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def _render_traceback_(self) -> list[str]:
        """What IPython shows in a notebook cell: the sentence, which names the problem and the fix, without the
        traceback through runbook's code (a runbook notebook's step cell refused is not a crash)."""
        return [f"{type(self).__name__}: {self.message}"]


class BatchError(RunbookError):
    """A batch folder, batch.toml or SQL file is missing or malformed."""


class AnalysisError(BatchError):
    """SQL that PostgreSQL's parser rejects; names the file, line and column."""

    def __init__(
        self, message: str, *, filename: str | None = None, line: int | None = None, column: int | None = None
    ) -> None:
        super().__init__(message)
        self.filename = filename
        self.line = line
        self.column = column


class DatabaseError(RunbookError):
    """The database cannot be reached, or refused the connection."""


class PreflightFailed(RunbookError):
    """Preflight said NO-GO; the reasons are in the message."""

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = list(reasons or [])


class DependencyError(RunbookError):
    """A batch this one depends on is not applied."""


class DriftError(RunbookError):
    """migration.sql changed after the batch was applied."""


class PrismaMigrationFailed(RunbookError):
    """`_prisma_migrations` holds a failed row (started, not finished, not rolled back): Prisma and runbook stop."""


class BaselineRefused(RunbookError):
    """`runbook baseline` cannot record the batches as asked; nothing was recorded."""


class ProjectError(RunbookError):
    """No migrations folder was given or found, or runbook.toml is not usable."""


class NotApplied(RunbookError):
    """Rollback or validation of a batch that the ledger does not show as applied."""


class RunStopped(RunbookError):
    """A rollback stopped part way: the batch is neither applied nor rolled back until it is finished."""


class LockBusy(RunbookError):
    """Another runbook session holds the migration lock on this database."""


class MigrationFailed(RunbookError):
    """A statement of migration.sql or rollback.sql failed; the transaction was rolled back."""


class ValidationFailed(RunbookError):
    """One or more validation tests failed."""


class LedgerError(RunbookError):
    """The ledger (the `runbook` schema) cannot be created or written by this role."""


class RecordError(RunbookError):
    """A run folder's JSON record cannot be read by this version of runbook."""


class FleetError(RunbookError):
    """fleet.toml, the Dask cluster or the fleet's environment is not usable as given."""


class ExampleError(RunbookError):
    """The example database cannot be loaded as asked."""


class PhaseFailed(RunbookError):
    """An executed notebook failed: carries the cell, the error name and the server's message."""

    def __init__(
        self,
        phase: str,
        notebook: str,
        cell_index: int | None,
        ename: str,
        evalue: str,
        source: str = "",
    ) -> None:
        self.phase = phase
        self.notebook = notebook
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.source = source
        where = f"cell {cell_index}" if cell_index is not None else "the kernel"
        super().__init__(f"{phase} failed in {where} of {notebook}: {ename}: {evalue}")


class NotRun(RunbookError):
    """Checks could not be run, and --fail-on-not-run makes that a failure (without it they are reported only)."""


class HealthDrift(RunbookError):
    """The health check found that something an applied batch declared no longer holds."""

    def __init__(self, message: str, drifts: list | None = None) -> None:
        super().__init__(message)
        self.drifts = list(drifts or [])


class CannotBuild(Exception):
    """No acceptable test row can be made from the catalog; the message says which column and why.

    Not a RunbookError: a validation test that cannot build its row is reported as that test's outcome.
    """


class StepRefused(RunbookError):
    """A notebook's step cell run before the step it depends on, or against files that changed since the
    notebook was written: nothing was run."""


class AwaitingApproval(RunbookError):
    """A step behind a pause that no one has approved yet: the run stops there, cleanly, and resumes later."""

    exit_code = 3  # not a failure: `runbook status` shows the batch PAUSED until someone approves


class OutOfOrder(BatchError):
    """A pending migration older than the last applied one: refused unless --out-of-order."""
