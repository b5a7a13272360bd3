"""One function per `runbook` subcommand: the API a Python caller, the CLI and the fleet share.

The CLI parses arguments, calls one of these and prints what it returns (as alembic's command.py
under its CommandLine). Each takes the target database (`target()`), the folders and an `Options`,
does the work, and returns a result object; nothing here prints except the progress lines a long
run writes to stderr.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runbook_lib import batch as batch_mod
from runbook_lib import config, names
from runbook_lib.batch import history
from runbook_lib.config import Options
from runbook_lib.db import approvals, connection, embedded, ledger
from runbook_lib.db import example as example_mod
from runbook_lib.db.migration_lock import holder as migration_lock_holder
from runbook_lib.db.migration_lock import migration_lock
from runbook_lib.db.target import Target, ensure_database, resolve
from runbook_lib.errors import AwaitingApproval, BaselineRefused, OutOfOrder, RunbookError
from runbook_lib.execution.session import PENDING, Pending, Release, open_session
from runbook_lib.layouts import detect, prisma
from runbook_lib.notebook import runner
from runbook_lib.notebook.chain import RunOutcome, run_phases
from runbook_lib.report import records, render, site
from runbook_lib.report.fleet_record import FleetOutcome

if TYPE_CHECKING:  # for the annotations alone (start-up time: the phases load with the commands that use them)
    from runbook_lib.phases import health

__all__ = [
    "BaselineOutcome",
    "BaselinePlan",
    "BatchStatus",
    "DemoOutcome",
    "RunOutcome",
    "StatusReport",
    "Target",
    "apply",
    "baseline",
    "check",
    "demo",
    "deploy",
    "example_load",
    "example_project",
    "fleet",
    "notebook",
    "plan_baseline",
    "preflight",
    "publish",
    "report",
    "rollback",
    "run",
    "run_phases",
    "server",
    "status",
    "target",
    "validate",
]

DEMO_BATCHES = (6, 7)


def target(database_url: str | None = None, *, create: bool = True) -> Target:
    """--database-url, else DATABASE_URL, else the embedded server (started here, in the parent process)."""
    return resolve(database_url, create=create)


def _migrations(migrations_dir: Path | None) -> Path:
    """--migrations-dir, else the project's (runbook.toml, prisma/migrations, migrations/), else refused."""
    return config.migrations_dir(migrations_dir)


# --- the phases ----------------------------------------------------------------------------------


def preflight(
    tgt: Target, number: int, *, migrations_dir: Path | None = None, reports_dir: Path | None = None
) -> RunOutcome:
    """Read-only checks of batch `number` ending in GO / WARN / NO-GO (NO-GO fails the run)."""
    return run_phases(tgt, number, (names.PREFLIGHT,), migrations_dir=migrations_dir, reports_dir=reports_dir)


def apply(
    tgt: Target,
    number: int,
    *,
    migrations_dir: Path | None = None,
    reports_dir: Path | None = None,
    options: Options | None = None,
) -> RunOutcome:
    """Apply batch `number` under the migration lock, with lock_timeout and retries."""
    refuse_out_of_order(tgt, migrations_dir, options, number)
    return run_phases(
        tgt, number, (names.APPLY,), migrations_dir=migrations_dir, reports_dir=reports_dir, options=options
    )


def validate(
    tgt: Target,
    number: int,
    *,
    migrations_dir: Path | None = None,
    reports_dir: Path | None = None,
    options: Options | None = None,
) -> RunOutcome:
    """Prove what the database now enforces for batch `number` (every test rolled back); of `options`, only
    `fail_on_not_run` applies."""
    return run_phases(
        tgt, number, (names.VALIDATE,), migrations_dir=migrations_dir, reports_dir=reports_dir, options=options
    )


def rollback(
    tgt: Target,
    number: int,
    *,
    migrations_dir: Path | None = None,
    reports_dir: Path | None = None,
    options: Options | None = None,
) -> RunOutcome:
    """Run rollback.sql of an applied batch `number`."""
    return run_phases(
        tgt, number, (names.ROLLBACK,), migrations_dir=migrations_dir, reports_dir=reports_dir, options=options
    )


@dataclass(frozen=True)
class AlreadyApplied:
    """`runbook run N` of a batch applied as it is written: nothing to run, as apply and `fleet run` say."""

    number: int
    message: str


def run(
    tgt: Target,
    number: int,
    *,
    migrations_dir: Path | None = None,
    reports_dir: Path | None = None,
    options: Options | None = None,
    rollback_on_failure: bool = False,
) -> RunOutcome | AlreadyApplied:
    """Preflight, apply, validate and the summary of batch `number` in one run folder; nothing for a batch
    already applied with this migration.sql (a CI job that runs it again passes, as `deploy` does)."""
    done = _already_applied(tgt, number, migrations_dir)
    if done is not None:
        return done
    refuse_out_of_order(tgt, migrations_dir, options, number)
    return run_phases(
        tgt,
        number,
        names.RUN_PHASES,
        migrations_dir=migrations_dir,
        reports_dir=reports_dir,
        options=options,
        rollback_on_failure=rollback_on_failure,
    )


def _already_applied(tgt: Target, number: int, migrations_dir: Path | None) -> AlreadyApplied | None:
    """Applied, with this file, and no rollback of it stopped part way; a changed file or a stopped run is
    left to the phases, which say what is wrong."""
    found = batch_mod.discover(_migrations(migrations_dir))
    batch = next((b for b in found if b.number == number), None)
    if batch is None:
        return None  # the phases refuse an unknown batch, naming the ones there are
    with connection.connect(tgt.url) as conn:
        state = history.read(conn, found).state(number)
        stopped = ledger.stopped(conn, number) if state.applied else None
    if not state.applied or state.drift(batch) or stopped is not None:
        return None
    return AlreadyApplied(
        number,
        f"batch {number} ({batch.name}) was already applied at {state.when or '?'} by "
        f"{state.applied_by} (according to {state.according}); nothing to run",
    )


def deploy(
    tgt: Target,
    *,
    to: int | None = None,
    migrations_dir: Path | None = None,
    reports_dir: Path | None = None,
    options: Options | None = None,
) -> RunOutcome:
    """Every pending migration, in order, as one release: preflight of all of them first, then each applied
    in its own transaction and recorded as it commits, then validated; one run folder and one summary.

    The first failure stops the release; the same call again resumes with what is still pending.
    """
    refuse_out_of_order(tgt, migrations_dir, options, to=to)
    return run_phases(
        tgt, PENDING, names.RUN_PHASES, migrations_dir=migrations_dir, reports_dir=reports_dir, options=options, to=to
    )


def refuse_out_of_order(
    tgt: Target,
    migrations_dir: Path | None,
    options: Options | None,
    number: int | None = None,
    *,
    to: int | None = None,
) -> None:
    """A pending migration older than the last applied one (a file added behind the history, or merged from a
    branch) is refused before anything runs, as Flyway refuses it, unless --out-of-order (or out_of_order = true
    in runbook.toml's tool table) says to apply it anyway: it would run against a schema its author never saw."""
    if options is not None and options.out_of_order:
        return
    found = batch_mod.discover(_migrations(migrations_dir))
    settings = found[0].settings if found else None
    if settings is not None and settings.out_of_order:
        return
    with connection.connect(tgt.url) as conn:
        known = history.read(conn, found)
    found = [b for b in found if b.tool is None or b.tool.kind != "repeatable"]  # Flyway's R__ come last, always
    applied = [b for b in found if known.state(b.number).applied]
    if not applied:
        return
    last = applied[-1]
    older = [
        b
        for b in found
        if b.number < last.number
        and not known.state(b.number).applied
        and (number is None or b.number == number)
        and (to is None or b.number <= to)
    ]
    if older:
        raise OutOfOrder(
            f"Migration {older[0].number} ({older[0].name}) is not applied, but migration {last.number} ({last.name}), "
            f"which comes after it, is: it was added out of order{f' ({len(older)} such)' if len(older) > 1 else ''}; "
            "apply it anyway with --out-of-order (or out_of_order = true in runbook.toml), or move it after "
            f"{last.name}. Nothing was changed."
        )


# --- the state of a database ---------------------------------------------------------------------


@dataclass(frozen=True)
class BatchStatus:
    """One batch of the migrations folder and what the two histories say of it."""

    number: int
    name: str
    title: str
    applied: bool
    applied_at: str
    applied_by: str
    checksum_matches: bool | None
    source: str = ""  # runbook's ledger, Prisma's history, both ("" when not applied)
    drift: str = ""  # which history recorded another migration.sql
    notes: tuple[str, ...] = ()  # where runbook's ledger and Prisma's history disagree
    part_applied: str = ""  # not applied, but an apply stopped part way: what it committed, how to go on
    part_rolled_back: str = ""  # a rollback stopped part way: what it committed, how to finish it
    in_progress: str = ""  # the apply or rollback at work now (it holds the migration lock): who, where it is
    paused: str = ""  # a runbook notebook waits for an approval before its next step: which, since when, how to go on


@dataclass(frozen=True)
class StatusReport:
    """`runbook status`: a row per batch, the folders skipped, and a failed Prisma row if there is one.

    Iterating over it gives the rows, as the list `status` returned before.
    """

    rows: list[BatchStatus]
    skipped_note: str = ""
    prisma_failed: str = ""
    broken: list[tuple[str, str]] = field(default_factory=list)  # (folder, why): not listed above, cannot run

    def __iter__(self) -> Iterator[BatchStatus]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def status(tgt: Target, migrations_dir: Path | None = None) -> StatusReport:
    """Every batch found, applied or not (and by which history), drift and disagreements between histories."""
    found = batch_mod.scan(_migrations(migrations_dir), keep_going=True)  # one broken folder hides no other
    with connection.connect(tgt.url) as conn:
        known = history.read(conn, found.batches)
        busy = migration_lock_holder(conn)
        stopped = ledger.stopped_runs(conn, running=busy is not None)
        at_work = ledger.live(conn, busy[2]) if busy is not None else None
        waiting = approvals.waiting(conn)
    rows = []
    for b in found.batches:
        st = known.state(b.number)
        drift = st.drift(b)
        run = stopped.get(b.number)
        rows.append(
            BatchStatus(
                b.number,
                b.name,
                b.title,
                st.applied,
                st.when if st.applied else "",
                st.applied_by or "" if st.applied else "",
                (not drift) if st.applied else None,
                st.source,
                drift,
                st.notes,
                part_applied=_part_applied(b.number, run)
                if run and run.phase == "apply" and run.changed_anything and not st.applied
                else "",
                part_rolled_back=_part_rolled_back(b.number, run) if run and run.phase == "rollback" else "",
                in_progress=f"{at_work.phase} {at_work.doing}" if at_work and at_work.batch == b.number else "",
                paused=_paused(b.number, waiting[b.number], run) if b.number in waiting and not st.applied else "",
            )
        )
    return StatusReport(rows, found.note, known.failed_message(), [(path.name, why) for path, why in found.broken])


def _paused(number: int, pause: approvals.Approval, run: ledger.PartialRun | None) -> str:
    """A notebook stopped at a pause: what it committed, what it waits for, and the ways on."""
    done = f"{run.committed} committed; " if run is not None and run.phase == "apply" and run.changed_anything else ""
    return (
        f"{done}a runbook notebook (run {pause.run_id}) waits since {pause.since:%Y-%m-%d %H:%M:%S %Z} for an "
        f"approval before step {pause.step}: approve it in the notebook (or run it with -p approve all), or "
        f"finish from a terminal with `runbook apply {number}"
        + (f" --strategy {run.strategy}`" if run is not None else "`")
    )


def notebook(
    tgt: Target,
    number: int | str,
    *,
    migrations_dir: Path | None = None,
    reports_dir: Path | None = None,
    options: Options | None = None,
) -> NotebookWritten:
    """A runbook notebook for batch `number` in a new run folder: a section per step of the apply plan, each run by
    its own cell (`phases.stepwise`); written, not executed. `number="pending"`: a release's notebook, a section
    per pending migration (`phases.releasebook`)."""
    options = (options or config.DEFAULTS).checked()
    if options.dry_run:
        raise RunbookError(
            f"A runbook notebook changes the database a step at a time, so it has no dry run; rehearse "
            f"the batch with `runbook apply {number if number != PENDING else 'N'} --dry-run`, then "
            "write the notebook without it."
        )
    # start-up time: the step-by-step phases load for this command only, not with every other command
    from runbook_lib.phases import releasebook, stepbook, stepwise

    session = open_session(
        number, migrations_dir=_migrations(migrations_dir), reports_dir=reports_dir, database_url=tgt.url
    )
    if isinstance(session, Release):
        written = releasebook.write_plan(session, strategy=options.strategy)
        if not written.migrations:
            return NotebookWritten(None, None, PENDING, "nothing pending", options.strategy, 0, [], 0, tgt.shown)
        path = stepbook.build_release(written, session.run.path.resolve(), options)
        return NotebookWritten(
            path,
            session.run.path,
            PENDING,
            session.label,
            options.strategy,
            sum(len(m.steps) for m in written.migrations),
            [f"{m.batch.number}.{c.number}" for m in written.migrations for c in m.steps if c.pause],
            sum(m.online_steps for m in written.migrations),
            tgt.shown,
            migrations=[m.batch.number for m in written.migrations],
        )
    plan = stepwise.write_plan(session, strategy=options.strategy)
    path = stepbook.build(plan, session.run.path.resolve(), options)
    return NotebookWritten(
        path,
        session.run.path,
        number,
        session.batch.name,
        plan.strategy,
        len(plan.steps),
        [c.number for c in plan.steps if c.pause],
        plan.online_steps,
        tgt.shown,
    )


@dataclass(frozen=True)
class NotebookWritten:
    """What `runbook notebook N` (or `pending`) wrote: the notebook, its run folder, and the plan's shape.

    For a release, `pauses` names each as "migration.step" and `migrations` lists the migrations, a section each;
    with nothing pending, no notebook is written (`notebook` is None)."""

    notebook: Path | None
    run_dir: Path | None
    batch: int | str
    name: str
    strategy: str
    steps: int
    pauses: list
    online_steps: int
    database: str
    migrations: list[int] = field(default_factory=list)

    def lines(self) -> list[str]:
        if self.notebook is None:
            return [f"nothing pending on {self.database}: every migration is applied; no notebook written"]
        if self.batch == PENDING:
            pauses = ", ".join(f"before step {p.split('.')[1]} of migration {p.split('.')[0]}" for p in self.pauses)
            out = [
                f"release on {self.database}: {self.name}; {self.strategy} strategy, {self.steps} step(s) in "
                f"{len(self.migrations)} section(s), a cell each; pauses for an approval: {pauses or 'none'}"
            ]
        else:
            pauses = ", ".join(f"before step {n}" for n in self.pauses) or "none"
            out = [
                f"batch {self.batch} ({self.name}) on {self.database}: {self.strategy} strategy, {self.steps} "
                f"step(s), a cell each; pauses for an approval: {pauses}"
            ]
        if self.online_steps > self.steps:
            out.append(
                f"  the direct plan is one transaction per migration; `--strategy online` gives "
                f"{self.online_steps} steps"
            )
        out += [
            f"notebook: {self.notebook}",
            f"  step through it: jupyter lab {self.notebook}",
            f"  or straight through: papermill --engine runbook {self.notebook} out.ipynb -p approve all",
            f"  (without -p approve all it stops at the first pause with exit code {AwaitingApproval.exit_code}; "
            "the same command resumes it once approved)",
        ]
        return out


def _part_applied(number: int, run: ledger.PartialRun) -> str:
    """What a stopped apply committed, and the two ways on from there."""
    return (
        f"its apply stopped after {run.committed}: `runbook apply {number} --strategy {run.strategy}` "
        f"resumes it, `runbook rollback {number}` undoes it"
    )


def _part_rolled_back(number: int, run: ledger.PartialRun) -> str:
    """What a stopped rollback committed, and the one way on: apply refuses until the rollback is finished."""
    return f"its rollback stopped after {run.committed}: `runbook rollback {number}` finishes it"


# --- baseline: adopting a database whose migrations ran elsewhere ----------------------------------


@dataclass(frozen=True)
class BaselinePlan:
    """What `runbook baseline N` would record: the batches 1..N, and in which history each is missing."""

    number: int
    batches: list[batch_mod.Batch]
    to_ledger: list[batch_mod.Batch]  # not yet applied in runbook's ledger
    to_prisma: list[batch_mod.Batch]  # Prisma's layout, not yet applied in _prisma_migrations
    to_tool: list[batch_mod.Batch] = field(default_factory=list)  # another tool's layout, not in its own history
    tool: str = ""  # that history's label (golang-migrate's schema_migrations, ...)

    @property
    def empty(self) -> bool:
        return not self.to_ledger and not self.to_prisma and not self.to_tool

    def lines(self) -> list[str]:
        """One line per batch to record, naming the histories it goes into."""
        out = []
        for b in self.batches:
            where = [
                label
                for label, todo in (
                    (names.SOURCE_RUNBOOK, self.to_ledger),
                    ("_prisma_migrations", self.to_prisma),
                    (self.tool, self.to_tool),
                )
                if b in todo
            ]
            if where:
                out.append(f"{b.number:>4}  {b.name}  -> {' and '.join(where)}")
        return out


@dataclass(frozen=True)
class BaselineOutcome:
    plan: BaselinePlan
    recorded: bool


def plan_baseline(tgt: Target, number: int, migrations_dir: Path | None = None) -> BaselinePlan:
    """The batches up to `number` to record as applied; refused (nothing written) on drift or later history."""
    batches = batch_mod.discover(_migrations(migrations_dir))
    if number not in {b.number for b in batches}:
        raise BaselineRefused(
            f"Batch {number} is not in the migrations folder (batches: "
            f"{', '.join(str(b.number) for b in batches) or 'none'}); give the number of the last "
            "migration the database already has."
        )
    with connection.connect(tgt.url) as conn:
        known = history.read(conn, batches)
    if known.failed_prisma:
        raise BaselineRefused(known.failed_message())
    if known.blocked:
        raise BaselineRefused(known.blocked)
    later = [n for n in known.applied() if n > number]
    if later:
        raise BaselineRefused(
            f"The database already has history beyond batch {number} (batch {later[0]} is applied, according to "
            f"{known.state(later[0]).source}); baseline records a database with no history past the batch you give, "
            f"so give batch {later[-1]} or more."
        )
    upto = [b for b in batches if b.number <= number]
    for b in upto:
        drift = known.state(b.number).drift(b)
        if drift:
            raise BaselineRefused(
                f"Batch {b.number} ({b.name}) is already applied with another migration.sql "
                f"({drift}); restore the applied file before recording a baseline."
            )
    to_ledger = [b for b in upto if known.state(b.number).source not in (names.SOURCE_RUNBOOK, names.SOURCE_BOTH)]
    to_prisma = [
        b
        for b in upto
        if b.prisma_layout and known.state(b.number).source not in (names.SOURCE_PRISMA, names.SOURCE_BOTH)
    ]
    tool = next((known.state(b.number).tool for b in upto if b.tool is not None), "")
    to_tool = [b for b in upto if b.tool is not None and known.state(b.number).source not in (tool, names.SOURCE_BOTH)]
    return BaselinePlan(number, upto, to_ledger, to_prisma, to_tool, tool)


def baseline(
    tgt: Target,
    number: int,
    *,
    migrations_dir: Path | None = None,
    confirm: Callable[[BaselinePlan], bool] | None = None,
) -> BaselineOutcome:
    """Record batches 1..`number` as applied without running them, as `prisma migrate resolve --applied` does.

    For a database whose schema is already there (created by hand, by another tool, from a dump): both
    histories get their rows, runbook's ledger and, for Prisma's layout, `_prisma_migrations`, in one
    transaction under the migration lock, so either everything is recorded or nothing. `confirm` is shown
    the plan first and may decline (the CLI asks on a terminal); None records without asking.
    """
    plan = plan_baseline(tgt, number, migrations_dir)
    if plan.empty:
        return BaselineOutcome(plan, recorded=False)
    if confirm is not None and not confirm(plan):
        return BaselineOutcome(plan, recorded=False)
    run_id = records.new_run_id()
    with connection.connect(tgt.url, application_name=f"runbook baseline {number}") as conn, migration_lock(conn):
        again = plan_baseline(tgt, number, migrations_dir)  # under the lock: nobody applied meanwhile
        if again != plan:
            raise BaselineRefused(
                "The database's history changed while baseline was waiting; run baseline again "
                "to see what it would record now."
            )
        with conn.transaction():
            ledger.ensure(conn)
            for b in plan.to_ledger:
                conn.execute(
                    f"INSERT INTO {ledger.table()} (run_id, batch, batch_name, phase, status, checksum, os_user, host,"
                    " finished_at, message) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp(), %s)",
                    (
                        run_id,
                        b.number,
                        b.name,
                        names.APPLY,
                        ledger.SUCCEEDED,
                        b.checksum,
                        ledger.os_user(),
                        ledger.hostname(),
                        names.BASELINED,
                    ),
                )
            for b in plan.to_prisma:
                prisma.record_applied(conn, b.name, b.checksum, create=True, ran=False)
            if plan.to_tool:  # as the tool's own baseline leaves it: the tool runs none of them again
                settings = plan.to_tool[0].settings
                assert settings is not None  # a tool's migrations are read with their project's settings
                tool_history = detect.history(settings)
                migrations = [b.tool for b in plan.batches if b.tool is not None]  # in a tool's folder: all of them
                for b in plan.to_tool:
                    assert b.tool is not None  # to_tool: the batches that are the tool's migrations
                    tool_history.record_applied(conn, b.tool, migrations, ran=False)
    return BaselineOutcome(plan, recorded=True)


def check(tgt: Target, migrations_dir: Path | None = None, *, fail_on_not_run: bool = False) -> health.HealthResult:
    """Re-check, read-only, what every applied batch declared; drift is in the result (raise_for_drift), and
    with `fail_on_not_run` a check that could not be run makes it fail too."""
    from runbook_lib.phases import health  # start-up time: loads for `runbook check` only

    return health.run(tgt.url, _migrations(migrations_dir), fail_on_not_run=fail_on_not_run)


def report(run_dir: Path) -> RunOutcome:
    """Re-render a run's summary from its records alone: no database needed."""
    run_folder = records.RunFolder.open(run_dir)
    if not any(run_folder.has(p) for p in names.RECORD_PHASES):
        raise RunbookError(
            f"{run_folder.path} holds no phase record (preflight.json, apply.json, ...); pass a run folder."
        )
    record = run_folder.read("run", records.RunRecord) or records.RunRecord(0, run_folder.run_id, "", records.now_iso())
    for phase, cls in records.RECORD_TYPES.items():
        run_folder.read(phase, cls)  # a record this version cannot read is refused here, in one sentence
    out = run_folder.path / runner.PHASE_NOTEBOOKS[names.SUMMARY]
    runner.execute(names.SUMMARY, out, {"run_dir": str(run_folder.path.resolve())}, database_url="")
    rendered = render.summary(out, run_folder.path)
    render.index(run_folder.path, record)
    reports = run_folder.path.resolve().parents[2] if len(run_folder.path.resolve().parents) > 2 else None
    if reports is not None and (reports / site.INDEX).exists():  # a folder of a reports dir with a site
        site.refresh(reports)
    return RunOutcome(record, run_folder.path, summary_html=rendered.html, summary_md=rendered.markdown)


def publish(
    directory: Path, *, reports_dir: Path | None = None, with_notebooks: bool = False, force: bool = False
) -> site.Published:
    """A static copy of the reports site in `directory`: index, summaries, audit copies (notebooks when asked)."""
    return site.publish(
        reports_dir or config.default_reports_dir(), directory, with_notebooks=with_notebooks, force=force
    )


# --- the example and the demo ----------------------------------------------------------------------


def example_load(tgt: Target, *, leads: int = 1000, reset: bool = False) -> example_mod.ExampleLoad:
    """The example CRM at its starting state (deterministic for a given number of leads)."""
    with connection.connect(tgt.url) as conn:
        loaded = example_mod.load(conn, leads=leads, reset=reset)
        conn.commit()
    return loaded


def example_project(directory: Path | None = None) -> Path | None:
    """Make `directory` (the current one) a project whose migrations are the bundled example's.

    Only where no project is found from there up: `runbook example load` then `runbook run 6` works from an
    empty directory, and a real project's own runbook.toml or migrations folder is never overridden.
    Returns the runbook.toml written, or None.
    """
    here = Path(directory or Path.cwd())
    if config.find_migrations_dir(here) is not None:
        return None
    target = here / config.PROJECT_FILE
    target.write_text(
        "# written by `runbook example load`: this folder's migrations are runbook's example\n"
        f"migrations_dir = {json.dumps(str(config.example_migrations_dir()))}\n",
        encoding="utf-8",
    )
    return target


@dataclass
class DemoOutcome:
    """The example loaded (reset when it was the embedded server's or --reset), then a run per batch."""

    loaded: example_mod.ExampleLoad
    reset: bool
    runs: list[RunOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return len(self.runs) == len(DEMO_BATCHES) and all(r.ok for r in self.runs)


def demo(
    tgt: Target,
    *,
    migrations_dir: Path | None = None,
    reports_dir: Path | None = None,
    reset: bool = False,
    on_loaded: Callable[[DemoOutcome], None] | None = None,
    on_run: Callable[[RunOutcome], object] | None = None,
) -> DemoOutcome:
    """Load the example and run batches 6 and 7 end to end, stopping at the first failed run.

    `on_loaded` is told once the example is loaded and `on_run` after each run, as they happen (the CLI
    prints each then).
    """
    reset = tgt.embedded or reset
    outcome = DemoOutcome(example_load(tgt, reset=reset), reset)
    if on_loaded is not None:
        on_loaded(outcome)
    migrations_dir = migrations_dir or config.example_migrations_dir()  # the demo's default is the example
    for number in DEMO_BATCHES:
        done = run(tgt, number, migrations_dir=migrations_dir, reports_dir=reports_dir)
        assert isinstance(done, RunOutcome)  # the example was just loaded (or reset): none of its batches is applied
        outcome.runs.append(done)
        if on_run is not None:
            on_run(done)
        if not done.ok:
            break
    return outcome


# --- the embedded server ----------------------------------------------------------------------------


def server(action: str) -> str:
    """start (or find running) and give its demo database's URL; url: the same, never starting it; or stop."""
    if action == "stop":
        return "embedded server stopped" if embedded.stop() else "embedded server was not running"
    if action not in ("start", "url"):
        raise RunbookError(f"Unknown server action {action!r}; use start, stop or url.")
    running = embedded.start() if action == "start" else embedded.running()
    if running is None:
        raise RunbookError(
            f"The embedded server under {embedded.pgdata_dir()} is not running; "
            "`runbook server start` starts it and prints its URL."
        )
    ensure_database(running.url, embedded.DEMO_DATABASE)
    return running.shown_url(embedded.DEMO_DATABASE)


# --- a fleet --------------------------------------------------------------------------------------------


def fleet(
    mode: str,
    number: int | Pending,
    *,
    targets: Path,
    workers: int | None = None,
    scheduler: str | None = None,
    max_failures: int | None = None,
    options: Options | None = None,
    rollback_on_failure: bool = False,
    migrations_dir: Path | None = None,
    reports_dir: Path | None = None,
    shared_reports: bool | None = None,
) -> FleetOutcome:
    """Batch `number` on every database of a fleet.toml: mode "preflight" (read-only) or "run", wave by wave."""
    # Imported here: Dask (distributed) costs about a second of start-up that no other command needs.
    from runbook_lib.fleet import config as fleet_config
    from runbook_lib.fleet import scheduler as fleet_scheduler

    spec = fleet_config.load(targets)
    return fleet_scheduler.run(
        spec,
        number,
        mode=mode,
        workers=workers,
        scheduler=scheduler,
        max_failures=max_failures,
        options=options,
        rollback_on_failure=rollback_on_failure,
        migrations_dir=migrations_dir,
        reports_dir=reports_dir,
        shared_reports=shared_reports,
    )
