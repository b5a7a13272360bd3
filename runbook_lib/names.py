"""The words runbook's records, reports and commands share, each defined once.

A phase, a verdict or a status is compared as a string across modules and in JSON records written
by earlier runs: these constants are the only spelling.
"""

from __future__ import annotations

# Phases: one notebook and one record (`<phase>.json`) each.
PREFLIGHT, APPLY, VALIDATE, ROLLBACK, SUMMARY = "preflight", "apply", "validate", "rollback", "summary"
PHASES = (PREFLIGHT, APPLY, VALIDATE, ROLLBACK, SUMMARY)
RECORD_PHASES = (PREFLIGHT, APPLY, VALIDATE, ROLLBACK)  # the phases that write a record the summary reads
RUN_PHASES = (PREFLIGHT, APPLY, VALIDATE, SUMMARY)  # what `runbook run` chains
CHECK = "check"  # the health check's notebook

# Preflight's verdict.
GO, WARN, NOGO = "GO", "WARN", "NO-GO"
VERDICTS = (GO, WARN, NOGO)

# What an apply or rollback record says happened (ExecutionResult.status).
RUNNING = "running"
APPLIED = "applied"
ROLLED_BACK = "rolled back"
DRY_RUN = "dry run"
ALREADY_APPLIED = "already applied"
FAILED = "failed"

# One attempt at a statement (StatementRun.status) and a step of the plan (StepRun.status).
OK = "ok"
LOCK_TIMEOUT = "lock timeout"
COMMITTED = "committed"
SKIPPED = "skipped"  # an earlier run committed it
ROLLED_BACK_DRY_RUN = "rolled back (dry run)"

# Where a migration's applied state comes from (history.MigrationState.source).
SOURCE_RUNBOOK = "runbook's ledger"
SOURCE_PRISMA = "Prisma's history"
SOURCE_BOTH = "both"

# The ledger message of a batch recorded as applied by `runbook baseline`, without running it.
BASELINED = "baselined: recorded as applied without running"
