"""apply: the forward change, once, under the migration lock, refused when preflight says NO-GO."""

from __future__ import annotations

import psycopg

from runbook_lib import names
from runbook_lib.batch import history
from runbook_lib.batch.model import PREFLIGHT, Batch
from runbook_lib.config import DEFAULTS, Options
from runbook_lib.db import ledger, reader
from runbook_lib.db.migration_lock import migration_lock
from runbook_lib.errors import (
    BatchError,
    DependencyError,
    DriftError,
    MigrationFailed,
    PreflightFailed,
    PrismaMigrationFailed,
    RunbookError,
    RunStopped,
)
from runbook_lib.execution import backfill, guard, recording, stepping
from runbook_lib.execution.blockers import Policy
from runbook_lib.execution.session import Release, Session
from runbook_lib.layouts import detect
from runbook_lib.layouts.base import FLYWAY
from runbook_lib.phases import preflight, validate
from runbook_lib.report.records import ExecutionResult, ReleaseApply
from runbook_lib.sql import plan


def run(
    session: Session | Release,
    *,
    dry_run: bool = DEFAULTS.dry_run,
    force: bool = DEFAULTS.force,
    strategy: str = DEFAULTS.strategy,
    lock_timeout_ms: int = DEFAULTS.lock_timeout_ms,
    statement_timeout_ms: int = DEFAULTS.statement_timeout_ms,
    max_attempts: int = DEFAULTS.max_attempts,
    gates_checked: bool = False,
    wait_for_blockers_s: float = DEFAULTS.wait_for_blockers_s,
    terminate_blockers_after_s: float | None = DEFAULTS.terminate_blockers_after_s,
    blocker_threshold_ms: int = DEFAULTS.blocker_threshold_ms,
    backfill_batch_ms: int = DEFAULTS.backfill_batch_ms,
    backfill_rows_per_s: int = DEFAULTS.backfill_rows_per_s,
    backfill_pause_ms: int = DEFAULTS.backfill_pause_ms,
    max_replica_lag_ms: int = DEFAULTS.max_replica_lag_ms,
    backfill_wal_mb_per_s: float = DEFAULTS.backfill_wal_mb_per_s,
    backfill_flush_from_mb: float | None = DEFAULTS.backfill_flush_from_mb,
    validate_each: bool = False,
    only_step: int | None = None,
) -> ExecutionResult | ReleaseApply:
    """Apply the batch (or rehearse it with dry_run) and write the apply record, also on failure.

    `gates_checked`: the caller ran this batch's preflight moments ago in the same run (a release), so
    apply does not evaluate it again; the DDL itself still protects (SET NOT NULL fails on a NULL). In a
    `runbook run`, the run folder's preflight record says the same (`trusted_preflight`). The backfill_*
    options and max_replica_lag_ms pace the data statements the online strategy batches. `validate_each`
    (a release that validates, as `runbook deploy`): each migration's tests run right after it commits.
    `only_step` (a runbook notebook's step cell): run that step of the plan alone, under the same lock and
    protections, and stop after it (`phases.stepwise`); a step done already, or one whose step before it is
    not, changes nothing.
    """
    options = Options(
        dry_run=dry_run,
        force=force,
        strategy=strategy,
        lock_timeout_ms=lock_timeout_ms,
        statement_timeout_ms=statement_timeout_ms,
        max_attempts=max_attempts,
        wait_for_blockers_s=wait_for_blockers_s,
        terminate_blockers_after_s=terminate_blockers_after_s,
        blocker_threshold_ms=blocker_threshold_ms,
        backfill_batch_ms=backfill_batch_ms,
        backfill_rows_per_s=backfill_rows_per_s,
        backfill_pause_ms=backfill_pause_ms,
        max_replica_lag_ms=max_replica_lag_ms,
        backfill_wal_mb_per_s=backfill_wal_mb_per_s,
        backfill_flush_from_mb=backfill_flush_from_mb,
    ).checked()
    if isinstance(session, Release):
        return run_release(session, options, validate_each=validate_each)
    statements = _statements(session)
    with (
        session.connect(application_name=f"runbook apply batch {session.batch.number}") as conn,
        migration_lock(conn),
        detect.tool_session(conn, session.batch, prepare=not dry_run),
    ):
        return _apply(
            session, conn, options, statements, gates_checked=gates_checked, trust_preflight=True, only_step=only_step
        )


def _statements(session: Session) -> list:
    """migration.sql parsed, before the lock or the ledger: an empty or malformed file is refused here."""
    batch = session.batch
    statements = recording.require_statements(
        batch.migration_sql, f"{batch.name}/migration.sql", server_major=session.facts.major
    )
    if batch.layout == FLYWAY and len({s.transactional for s in statements}) > 1:
        outside = next(s for s in statements if not s.transactional)
        raise BatchError(
            f"{batch.migration_path.name} mixes statements that run in a transaction with one that "
            f"cannot (statement {outside.index}, {outside.kind}), which Flyway refuses to run; move the "
            "statements that cannot run in a transaction into a script of their own."
        )
    return statements


def _apply(
    session: Session,
    conn: psycopg.Connection,
    options: Options,
    statements: list,
    *,
    gates_checked: bool,
    trust_preflight: bool = False,
    only_step: int | None = None,
    known: history.History | None = None,
    settled: bool = False,
) -> ExecutionResult:
    """The apply itself, on a connection that holds the migration lock (a release holds it once for all).

    `trust_preflight`: a fresh, unforced apply may rely on its run folder's preflight record; a release
    checks gates again on purpose (its earlier migrations have changed the data since). `known`: both
    histories as a release keeps them (read once under its lock, each migration it applied added); None: read.
    `settled`: the ledger holds no apply or rollback of this batch that did not end (`ledger.unsettled`, asked
    once by a release), so there is no run to mark interrupted and none to resume.
    """
    batch = session.batch
    dry_run, force, strategy = options.dry_run, options.force, options.strategy
    lock_timeout_ms, statement_timeout_ms, max_attempts = (
        options.lock_timeout_ms,
        options.statement_timeout_ms,
        options.max_attempts,
    )
    inputs = preflight.load_inputs(session, statements)
    result, t0 = recording.start_result(session, "apply", dry_run=dry_run)
    # we hold the lock: whoever ran them is gone
    interrupted = 0 if settled else ledger.close_interrupted(conn, batch.number)
    if known is None:
        known = history.read(conn, session.batches())
    conn.commit()
    if known.failed_prisma:
        raise PrismaMigrationFailed(known.failed_message())
    if known.blocked:
        raise MigrationFailed(known.blocked)
    state = known.state(batch.number)
    drift = state.drift(batch)
    if drift:
        raise DriftError(
            f"Batch {batch.number}'s migration.sql changed since it was applied ({drift}); restore the "
            "applied file, or write the change as a new batch."
        )
    earlier = None if settled else ledger.stopped(conn, batch.number)  # the apply to resume, or a rollback to finish
    conn.commit()
    _refuse_unfinished_rollback(session, earlier)
    if state.applied and only_step is not None:
        return stepping.done(session, result, conn, only_step, names.APPLY, applied=state)
    if state.applied:
        return _already_applied(session, result, state, t0)
    missing = [n for n in batch.depends_on if not known.state(n).applied]
    if missing:
        raise DependencyError(
            f"Batch {batch.number} depends on batch {missing[0]}, which is not applied on "
            f"{session.facts.database}; apply batch {missing[0]} first."
        )
    stopped = _resume_point(session, earlier, strategy, dry_run)
    resume_after, position, resume_steps = (
        (stopped.steps_done, stopped.backfill, stopped.steps) if stopped else (None, None, None)
    )
    own = only_step is not None and stopped is not None and stopped.paused and stopped.run_id == session.run.run_id
    if only_step is not None:
        steps = plan.build(statements, strategy)
        committed = stepping.committed(steps, stopped)
        if only_step <= committed:
            return stepping.done(session, result, conn, only_step, names.APPLY)
        stepping.require_next(session, steps, only_step, committed, names.APPLY)
    if trust_preflight and not gates_checked and not force and resume_after is None and not interrupted:
        result.gates_from = trusted_preflight(session)
        gates_checked = bool(result.gates_from)
    check = (
        None
        if gates_checked
        else preflight.evaluate(
            session,
            lint=False,
            measure=False,
            inputs=inputs,
            terminate_blockers_after_s=options.terminate_blockers_after_s,
        )
    )
    # A resumed apply is part way: the gates describe the state before step 1, not this one.
    if check is not None and check.verdict.status == preflight.NOGO and not force and resume_after is None:
        raise PreflightFailed(
            f"Apply of batch {batch.number} refused, preflight says NO-GO: "
            + "; ".join(check.verdict.reasons)
            + "; fix these, or pass force=True (--force) to apply anyway.",
            list(check.verdict.reasons),
        )
    if (resume_after is not None or interrupted) and not own:
        result.message = ("an earlier apply was interrupted; " if interrupted else "") + (
            f"resuming after step {resume_after}, which it committed"
            if resume_after
            else "resuming"
            if position
            else "starting over"
        )
        if position:
            result.message += (
                f"; step {position['step']}'s backfill resumes after key {', '.join(position['after'])} "
                f"({position.get('rows', 0)} rows in {position.get('batches', 0)} batches committed)"
            )
    if stopped is not None and stopped.changed_anything and not own:
        result.resumed = (
            f"an earlier apply (run {stopped.run_id}) stopped after {stopped.committed}; went on from there"
        )
    return recording.recorded(
        session,
        result,
        t0,
        conn,
        sql_text=batch.migration_sql,
        filename=f"{batch.name}/migration.sql",
        tables_touched=preflight.touched_tables(batch, statements),
        done=names.APPLIED,
        lock_timeout_ms=lock_timeout_ms,
        statement_timeout_ms=statement_timeout_ms,
        max_attempts=max_attempts,
        strategy=strategy,
        resume_after=resume_after,
        resume_steps=resume_steps,
        statements=statements,
        blocker_policy=Policy.of(options),
        backfill_settings=backfill.Settings.of(options),
        resume_position=position,
        resume_exact=stopped is not None and stopped.paused,
        stop_after=only_step,
    )


def trusted_preflight(session: Session) -> str:
    """The preflight this run recorded moments ago for this very migration.sql, when it did not say NO-GO:
    apply then relies on its gates instead of scanning the tables again (they cost seconds on large tables,
    and the DDL itself still protects: SET NOT NULL fails on a NULL). "" when there is none to rely on."""
    record = session.run.read_data(names.PREFLIGHT)
    if (
        record is None
        or record["batch"]["checksum"] != session.batch.checksum
        or record["verdict"]["status"] == preflight.NOGO
    ):
        return ""
    return f"{names.PREFLIGHT}.json of this run ({record['verdict']['status']}, {record['started_at']})"


def _refuse_unfinished_rollback(session: Session, stopped: ledger.PartialRun | None) -> None:
    """An apply on top of a rollback that stopped part way would meet half the batch: finish the rollback."""
    if stopped is not None and stopped.phase == "rollback":
        number = session.batch.number
        raise RunStopped(
            f"A rollback of batch {number} (run {stopped.run_id}) stopped after {stopped.committed}, so the batch "
            f"is only partly rolled back; finish it with `runbook rollback {number}`, then apply again."
        )


def _resume_point(
    session: Session, stopped: ledger.PartialRun | None, strategy: str, dry_run: bool
) -> ledger.PartialRun | None:
    """The earlier apply that failed or was killed part way (`stopped`, when it is an apply), which this run
    goes on from: the steps it committed, the keyset position of the batched step it stopped in, its step
    fingerprints (the committed steps must still read so; the steps after them may have been fixed)."""
    partial = stopped if stopped is not None and stopped.phase == "apply" else None
    if partial is None or dry_run:
        return None
    number = session.batch.number
    if partial.steps is None and partial.checksum != session.batch.checksum:  # a row without fingerprints
        raise DriftError(
            f"An earlier apply of batch {number} stopped after step {partial.steps_done} of {partial.steps_total} "
            f"with another migration.sql (checksum {partial.checksum}, now {session.batch.checksum}); restore that "
            "file to finish it, or repair the database by hand and record the batch with a new number."
        )
    if partial.strategy != strategy:
        raise RunbookError(
            f"An earlier apply of batch {number} ({partial.strategy} strategy) stopped after step "
            f"{partial.steps_done} of {partial.steps_total}; run apply again with strategy {partial.strategy!r} "
            "to resume it."
        )
    return partial


def _already_applied(
    session: Session, result: ExecutionResult, state: history.MigrationState, t0: float
) -> ExecutionResult:
    result.status = names.ALREADY_APPLIED
    when = f"{state.applied_at:%Y-%m-%d %H:%M:%S %Z}".strip() if state.applied_at else "an unknown time"
    result.message = (
        f"batch {session.batch.number} was already applied at {when} by {state.applied_by} "
        f"(according to {state.according}); nothing to do"
    )
    with ledger.LedgerWriter(
        session.url,
        run_id=session.run.run_id,
        batch=session.batch.number,
        batch_name=session.batch.name,
        phase="apply",
        checksum=session.batch.checksum,
    ) as writer:
        recording.finish(session, result, t0)
        writer.finish(ledger.NOOP, result.message)
    return result


def run_release(release: Release, options: Options, *, validate_each: bool = False) -> ReleaseApply:
    """Apply every migration of the release in order, each in its own transaction(s), recorded as it commits.

    The first failure stops the release, saying which migrations were applied and which were not; the
    same command again resumes with what is still pending. With `validate_each`, each migration's tests
    run the moment it commits (`validate.after_apply`): what a migration expects is judged against the state
    it left, before a later one drops a column under its index or renames what it created; the validate
    phase then gathers and judges them.
    """
    if options.dry_run:
        raise RunbookError(
            "A release cannot be a dry run: each migration would be rolled back before the next one "
            "needs it; dry-run one migration with `runbook apply N --dry-run`."
        )
    if release.plan.drift:
        raise DriftError(
            f"The release would build on a history that changed: {'; '.join(release.plan.drift)}; "
            "restore the applied files, or write the changes as new migrations."
        )
    result = ReleaseApply(release.plan)
    parsed = {b.number: _statements(release.session(b)) for b in release.batches}  # every file refused up front
    with (
        release.connect(application_name="runbook deploy") as conn,
        migration_lock(conn),
        detect.tool_session(conn, release.batches[0] if release.batches else None),
        ledger.shared_connection(release.url),
        guard.shared(release.url, conn.info.backend_pid),
        reader.alongside(conn, lambda: release.connect(application_name="runbook deploy (catalog)")),
    ):
        # its prepared statements would not outlive the next savepoint rolled back or ALTER (db.reader)
        conn.prepare_threshold = None
        before = current = history.read(conn, release.folder)  # `current` kept up to date below: nobody else applies
        unsettled = ledger.unsettled(conn, [b.number for b in release.batches])
        conn.commit()
        for batch in release.batches:
            session = release.session(batch)
            # preflight judged every migration of the release moments ago; one with gates is checked again
            # here, now that the migrations before it are applied
            has_gates = bool(batch.checks) or batch.file(PREFLIGHT) is not None
            try:
                applied = _apply(
                    session,
                    conn,
                    options,
                    parsed[batch.number],
                    gates_checked=not has_gates,
                    known=current,
                    settled=batch.number not in unsettled,
                )
            except RunbookError as exc:
                _stop(release, result, batch, session, exc)
            result.results.append(applied)
            if applied.status == names.APPLIED:
                current = current.with_applied(batch)
                if validate_each:  # its tests now, on the release's connection, between two migrations; `before`
                    with reader.committed(conn):  # says which were applied before the release
                        validate.after_apply(session, before, conn)
    result.message = f"{len(result.results)} migration(s) applied" if result.results else "nothing pending"
    return result


def _stop(release: Release, result: ReleaseApply, batch: Batch, session: Session, exc: RunbookError) -> None:
    """The release stops at its first failure, saying what was applied and what was not."""
    record = session.run.read(names.APPLY, ExecutionResult)
    if record is not None:
        result.results.append(record)
    done = [r.batch.number for r in result.applied]
    left = [b.number for b in release.batches if b.number not in done]
    result.message = (
        f"stopped at migration {batch.number} ({batch.name}); applied: {_numbers(done)}; not applied: {_numbers(left)}"
    )
    raise MigrationFailed(
        f"The release {result.message}: {str(exc).rstrip('.')}; fix it and run "
        "`runbook deploy` again, which resumes with what is still pending."
    ) from None


def _numbers(numbers: list[int]) -> str:
    """1-4, 7 rather than 1, 2, 3, 4, 7: a release may be hundreds long."""
    if not numbers:
        return "none"
    spans, start, previous = [], numbers[0], numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == previous + 1:
            previous = n
            continue
        spans.append(str(start) if start == previous else f"{start}-{previous}")
        if n is not None:
            start = previous = n
    return ", ".join(spans)
