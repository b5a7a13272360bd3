"""The work for one target, on a Dask worker: the same chain of phase notebooks as `runbook run`.

`run_target(TargetTask) -> TaskOutcome` is what the scheduler submits. Both are frozen dataclasses of
builtins, paths and `Options`, so Dask pickles them; the task carries the *name* of the environment
variable holding the target's URL, never the URL, and the outcome shows the URL only redacted. Any
failure (a RunbookError or anything else) comes back as this target's FAILED outcome, not the fleet's.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runbook_lib import batch as batch_mod
from runbook_lib import names
from runbook_lib.batch import history
from runbook_lib.config import DEFAULTS, Options
from runbook_lib.db import connection as database
from runbook_lib.db import migration_lock
from runbook_lib.db.target import Target
from runbook_lib.errors import FleetError, RunbookError
from runbook_lib.execution.session import PENDING, Pending
from runbook_lib.fleet import archive
from runbook_lib.notebook import chain
from runbook_lib.report import records
from runbook_lib.report.fleet_record import (
    ALREADY_APPLIED,
    APPLIED,
    DRY_RUN,
    FAILED,
    NOGO,
    PREFLIGHT,
    RUN,
    SKIPPED,
)


@dataclass(frozen=True)
class TargetTask:
    """One target's work, as sent to a worker.

    Either `migrations_dir` (the workers share the client's disk) or `migrations_archive` (they do not:
    the batch folders travel packed); `reports_dir` None means "return the run folder as an archive".
    """

    name: str
    url_env: str
    batch: int | Pending  # a batch number, or PENDING: a release of every migration not yet applied
    mode: str = RUN  # RUN: the `runbook run` chain; PREFLIGHT: preflight only
    options: Options = DEFAULTS
    rollback_on_failure: bool = False
    migrations_dir: Path | None = None
    migrations_archive: bytes | None = field(default=None, repr=False)
    reports_dir: Path | None = None


@dataclass(frozen=True)
class TaskOutcome:
    """What a worker returns for one target: plain data, the URL only redacted."""

    name: str
    status: str = FAILED
    verdict: str = ""
    reasons: tuple[str, ...] = ()
    message: str = ""
    database: str = ""  # redacted URL
    run_dir: str = ""  # relative to the reports dir: <target>/<batch>/<run-id>
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # <phase>.json as read back
    archive: bytes | None = field(default=None, repr=False)  # the run folder, when reports_dir was None
    worker: str = ""
    started_at: str = ""
    finished_at: str = ""
    seconds: float = 0.0


_ONE_AT_A_TIME = threading.Lock()  # runner sets DATABASE_URL process-wide: one target per worker process at a time


def run_target(task: TargetTask) -> TaskOutcome:
    """One target's phases on this worker; never raises, never returns the URL."""
    worker, started_at, t0 = _worker_address(), records.now_iso(), time.perf_counter()
    url = os.environ.get(task.url_env, "")
    shown = ""
    try:
        with _ONE_AT_A_TIME, tempfile.TemporaryDirectory(prefix="runbook-fleet-") as scratch:
            if not url:
                raise FleetError(
                    f"The environment variable {task.url_env} is not set on worker "
                    f"{worker}; set it where the Dask workers start."
                )
            shown = database.redact(url)
            outcome = _run(task, url, Path(scratch))
    except RunbookError as exc:
        outcome = TaskOutcome(task.name, FAILED, message=_scrub(str(exc), url))
    except Exception as exc:  # anything else still comes back as this target's failure, not the fleet's
        outcome = TaskOutcome(task.name, FAILED, message=_scrub(f"{type(exc).__name__}: {exc}", url))
    return replace(
        outcome,
        database=shown,
        worker=worker,
        started_at=started_at,
        finished_at=records.now_iso(),
        seconds=round(time.perf_counter() - t0, 3),
    )


def _run(task: TargetTask, url: str, scratch: Path) -> TaskOutcome:
    if task.migrations_archive is not None:
        migrations = scratch / "migrations"
        archive.unpack(task.migrations_archive, migrations)
    elif task.migrations_dir is not None:
        migrations = task.migrations_dir
    else:
        raise FleetError(f"The task of target {task.name!r} carries no migrations; this is a bug in the scheduler.")
    release = task.batch == PENDING
    if task.mode == RUN:  # before reading the ledger: whoever holds the lock may be about to change it
        migration_lock.wait_until_free(url)
    if task.batch != PENDING:  # not a release (said so that task.batch is known to be a number)
        batches = batch_mod.discover(migrations)
        batch = batch_mod.find(migrations, task.batch)
        with database.connect(url) as conn:  # one sentence (redacted) if unreachable
            state = history.read(conn, batches).state(task.batch)
        if state.applied and not state.drift(batch):
            return TaskOutcome(
                task.name,
                ALREADY_APPLIED,
                message=f"batch {task.batch} already applied at {state.when or '?'} by "
                f"{state.applied_by} (according to {state.according})",
            )
    reports = task.reports_dir or scratch / "reports"
    phases = names.RUN_PHASES if task.mode == RUN else (names.PREFLIGHT,)
    ran = chain.run_phases(
        Target(url, embedded=False),
        task.batch,
        phases,
        migrations_dir=migrations,
        reports_dir=reports,
        options=task.options,
        rollback_on_failure=task.rollback_on_failure,
        quiet=True,
        folder_name=task.name,
    )
    phase_records = _release_records(ran.run_dir) if release else _records(ran.run_dir)
    packed = None if task.reports_dir else archive.pack(ran.run_dir)
    verdict, reasons = _verdict_of(phase_records.get(names.PREFLIGHT))
    status, message = _classify(task, ran.record, phase_records, verdict, reasons)
    return TaskOutcome(
        task.name,
        status,
        verdict,
        reasons,
        message,
        run_dir=ran.run_dir.relative_to(Path(reports).resolve()).as_posix(),
        records=phase_records,
        archive=packed,
    )


def _records(folder: Path) -> dict[str, dict[str, Any]]:
    """The phase records of a run folder as JSON data (what travels back from the worker)."""
    run = records.RunFolder(folder)
    return {phase: data for phase in names.RECORD_PHASES if (data := run.read_data(phase)) is not None}


def _release_records(folder: Path) -> dict[str, dict[str, Any]]:
    """A release's records folded into one of each phase: the fleet report shows a target on one line."""
    children = [_records(child) for child in sorted(folder.iterdir()) if child.is_dir() and child.name.isdigit()]
    plan = records.RunFolder(folder).read_data("release") or {"batches": []}
    found: dict[str, dict[str, Any]] = {}
    verdicts = [c[names.PREFLIGHT]["verdict"] for c in children if names.PREFLIGHT in c]
    if verdicts:
        worst = names.worst_verdict(x.get("status") for x in verdicts)
        reasons = [r for x in verdicts if x.get("status") == worst for r in x.get("reasons") or []]
        found[names.PREFLIGHT] = {"verdict": {"status": worst, "reasons": reasons}}
    applies = [c[names.APPLY] for c in children if names.APPLY in c]
    if applies or not plan["batches"]:
        statuses = [a.get("status") for a in applies]
        status = (
            names.FAILED
            if names.FAILED in statuses
            else names.APPLIED
            if len(applies) == len(plan["batches"]) and applies
            else names.ALREADY_APPLIED
            if not plan["batches"]
            else "incomplete"
        )
        found[names.APPLY] = {
            "status": status,
            "attempts": sum(int(a.get("attempts") or 0) for a in applies),
            "duration_s": round(sum(a.get("duration_s") or 0 for a in applies), 6),
            "longest_write_block_s": max((a.get("longest_write_block_s") or 0 for a in applies), default=0.0),
        }
    tests = [t for c in children for t in (c.get(names.VALIDATE) or {}).get("tests") or []]
    if any(names.VALIDATE in c for c in children):
        found[names.VALIDATE] = {"tests": tests}
    return found


def _verdict_of(record: dict[str, Any] | None) -> tuple[str, tuple[str, ...]]:
    if not record:
        return "", ()
    verdict = record.get("verdict") or {}
    return verdict.get("status", ""), tuple(verdict.get("reasons") or ())


def _classify(
    task: TargetTask,
    run: records.RunRecord,
    phase_records: dict[str, dict[str, Any]],
    verdict: str,
    reasons: tuple[str, ...],
) -> tuple[str, str]:
    """(status, message) of a chain that ran: which phase failed, and whether that was a NO-GO."""
    failure = run.failure
    if task.mode == PREFLIGHT:
        if failure is not None and verdict != NOGO:
            return FAILED, f"{failure.phase}: {failure.error_name}: {failure.error_message}"
        return verdict or FAILED, ""
    if failure is None:
        if (phase_records.get(names.APPLY) or {}).get("status") == names.ALREADY_APPLIED:
            return ALREADY_APPLIED, ""
        return (DRY_RUN if task.options.dry_run else APPLIED), ""
    if failure.phase == names.PREFLIGHT and verdict == NOGO:
        return SKIPPED, "preflight says NO-GO: " + "; ".join(reasons)
    message = f"{failure.phase} failed: {failure.error_name}: {failure.error_message}"
    if run.rolled_back:
        message += " (the batch was rolled back)"
    return FAILED, message


def _scrub(text: str, url: str) -> str:
    """Whatever a failure says, without the URL's password (or the URL itself)."""
    text = str(text)
    if url:
        text = database.mask(text.replace(url, database.redact(url)), url)
    return " ".join(text.split())


def _worker_address() -> str:
    try:
        from distributed import (
            get_worker,  # start-up time: distributed is heavy, and not needed outside a worker
        )

        return get_worker().address
    except Exception:  # run outside Dask
        return f"pid {os.getpid()}"
