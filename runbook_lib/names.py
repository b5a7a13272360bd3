"""The words runbook's records, reports and commands share, each defined once.

A phase, a verdict or a status is compared as a string across modules and in JSON records written
by earlier runs: these constants are the only spelling.
"""

from __future__ import annotations

from collections.abc import Iterable

# Phases: one notebook and one record (`<phase>.json`) each.
PREFLIGHT, APPLY, VALIDATE, ROLLBACK, SUMMARY = "preflight", "apply", "validate", "rollback", "summary"
RECORD_PHASES = (PREFLIGHT, APPLY, VALIDATE, ROLLBACK)  # the phases that write a record the summary reads
RUN_PHASES = (PREFLIGHT, APPLY, VALIDATE, SUMMARY)  # what `runbook run` chains

# Preflight's verdict.
GO, WARN, NOGO = "GO", "WARN", "NO-GO"


def worst_verdict(statuses: Iterable[str]) -> str:
    """NO-GO over WARN over GO: the verdict of a release, a fleet or a site row; "" when there is none."""
    found = set(statuses)
    return next((v for v in (NOGO, WARN, GO) if v in found), "")


# What became of one test or gate (BlockResult.outcome): a test whose precondition could not be established
# (its row could not be built, or something other than the constraint it names refused it) is NOT_RUN: it
# proved nothing either way, so it is neither a pass nor a failure, and X/Y counts only the tests that ran.
PASSED, NOT_RUN = "passed", "not_run"
TEST_FAILED = "failed"
ALREADY_DONE = "already done"  # a notebook's step cell run again: the step was committed before, nothing ran
PAUSED = "paused"  # a notebook's step cell: the steps up to it committed, the rest not yet run
TEST_STATUS = {PASSED: "PASS", TEST_FAILED: "FAIL", NOT_RUN: "NOT RUN"}  # as a table or the terminal shows it

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
