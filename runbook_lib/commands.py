"""One function per `runbook` subcommand: the API a Python caller, the CLI and the fleet share.

The CLI parses arguments, calls one of these and prints what it returns (as alembic's command.py
under its CommandLine). Each takes the target database (`target()`), the folders and an `Options`,
does the work, and returns a result object; nothing here prints except the progress lines a long
run writes to stderr.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runbook_lib import batch as batch_mod
from runbook_lib import config, names
from runbook_lib.config import Options
from runbook_lib.db import connection, embedded, ledger
from runbook_lib.db import example as example_mod
from runbook_lib.db.target import Target, ensure_database, resolve
from runbook_lib.errors import RunbookError
from runbook_lib.notebook import runner
from runbook_lib.notebook.chain import RunOutcome, run_phases
from runbook_lib.phases import health
from runbook_lib.phases.session import PENDING
from runbook_lib.report import records, render

__all__ = [
    "BatchStatus", "DemoOutcome", "RunOutcome", "Target", "apply", "check", "demo", "deploy", "example_load", "fleet",
    "preflight", "report", "rollback", "run", "run_phases", "server", "status", "target", "validate",
]

DEMO_BATCHES = (6, 7)


def target(database_url: str | None = None, *, create: bool = True) -> Target:
    """--database-url, else DATABASE_URL, else the embedded server (started here, in the parent process)."""
    return resolve(database_url, create=create)


def _migrations(migrations_dir: Path | None) -> Path:
    return Path(migrations_dir) if migrations_dir else config.example_migrations_dir()


# --- the phases ----------------------------------------------------------------------------------


def preflight(tgt: Target, number: int, *, migrations_dir: Path | None = None,
              reports_dir: Path | None = None) -> RunOutcome:
    """Read-only checks of batch `number` ending in GO / WARN / NO-GO (NO-GO fails the run)."""
    return run_phases(tgt, number, (names.PREFLIGHT,), migrations_dir=migrations_dir, reports_dir=reports_dir)


def apply(tgt: Target, number: int, *, migrations_dir: Path | None = None, reports_dir: Path | None = None,
          options: Options | None = None) -> RunOutcome:
    """Apply batch `number` under the migration lock, with lock_timeout and retries."""
    return run_phases(tgt, number, (names.APPLY,), migrations_dir=migrations_dir, reports_dir=reports_dir,
                      options=options)


def validate(tgt: Target, number: int, *, migrations_dir: Path | None = None,
             reports_dir: Path | None = None) -> RunOutcome:
    """Prove what the database now enforces for batch `number` (every test rolled back)."""
    return run_phases(tgt, number, (names.VALIDATE,), migrations_dir=migrations_dir, reports_dir=reports_dir)


def rollback(tgt: Target, number: int, *, migrations_dir: Path | None = None, reports_dir: Path | None = None,
             options: Options | None = None) -> RunOutcome:
    """Run rollback.sql of an applied batch `number`."""
    return run_phases(tgt, number, (names.ROLLBACK,), migrations_dir=migrations_dir, reports_dir=reports_dir,
                      options=options)


def run(tgt: Target, number: int, *, migrations_dir: Path | None = None, reports_dir: Path | None = None,
        options: Options | None = None, rollback_on_failure: bool = False) -> RunOutcome:
    """Preflight, apply, validate and the summary of batch `number` in one run folder."""
    return run_phases(tgt, number, names.RUN_PHASES, migrations_dir=migrations_dir, reports_dir=reports_dir,
                      options=options, rollback_on_failure=rollback_on_failure)


def deploy(tgt: Target, *, to: int | None = None, migrations_dir: Path | None = None,
           reports_dir: Path | None = None, options: Options | None = None) -> RunOutcome:
    """Every pending migration, in order, as one release: preflight of all of them first, then each applied
    in its own transaction and recorded as it commits, then validated; one run folder and one summary.

    The first failure stops the release; the same call again resumes with what is still pending.
    """
    return run_phases(tgt, PENDING, names.RUN_PHASES, migrations_dir=migrations_dir, reports_dir=reports_dir,
                      options=options, to=to)


# --- the state of a database ---------------------------------------------------------------------


@dataclass(frozen=True)
class BatchStatus:
    """One batch of the migrations folder and what the ledger says of it."""

    number: int
    name: str
    title: str
    applied: bool
    applied_at: str
    applied_by: str
    checksum_matches: bool | None


def status(tgt: Target, migrations_dir: Path | None = None) -> list[BatchStatus]:
    """Every batch found, applied or not, and whether its migration.sql changed since it was applied."""
    batches = batch_mod.discover(_migrations(migrations_dir))
    with connection.connect(tgt.url) as conn:
        states = ledger.states(conn)
    rows = []
    for b in batches:
        st = states.get(b.number)
        applied = bool(st and st.applied)
        rows.append(BatchStatus(
            b.number, b.name, b.title, applied,
            st.applied_at.isoformat(timespec="seconds") if applied and st.applied_at else "",
            st.applied_by or "" if applied else "",
            (st.checksum == b.checksum) if applied else None,
        ))
    return rows


def check(tgt: Target, migrations_dir: Path | None = None) -> health.HealthResult:
    """Re-check, read-only, what every applied batch declared; drift is in the result (raise_for_drift)."""
    return health.run(tgt.url, _migrations(migrations_dir))


def report(run_dir: Path) -> RunOutcome:
    """Re-render a run's summary from its records alone: no database needed."""
    run_folder = records.RunFolder.open(run_dir)
    if not any(run_folder.has(p) for p in names.RECORD_PHASES):
        raise RunbookError(f"{run_folder.path} holds no phase record (preflight.json, apply.json, ...); "
                           "pass a run folder.")
    record = run_folder.read("run", records.RunRecord) or records.RunRecord(0, run_folder.run_id, "", records.now_iso())
    for phase, cls in records.RECORD_TYPES.items():
        run_folder.read(phase, cls)  # a record this version cannot read is refused here, in one sentence
    out = run_folder.path / runner.PHASE_NOTEBOOKS[names.SUMMARY]
    runner.execute(names.SUMMARY, out, {"run_dir": str(run_folder.path.resolve())}, database_url="")
    rendered = render.summary(out, run_folder.path)
    render.index(run_folder.path, record)
    return RunOutcome(record, run_folder.path, summary_html=rendered.html, summary_md=rendered.markdown)


# --- the example and the demo ----------------------------------------------------------------------


def example_load(tgt: Target, *, leads: int = 1000, reset: bool = False) -> example_mod.ExampleLoad:
    """The example CRM at its starting state (deterministic for a given number of leads)."""
    with connection.connect(tgt.url) as conn:
        loaded = example_mod.load(conn, leads=leads, reset=reset)
        conn.commit()
    return loaded


@dataclass
class DemoOutcome:
    """The example loaded (reset when it was the embedded server's or --reset), then a run per batch."""

    loaded: example_mod.ExampleLoad
    reset: bool
    runs: list[RunOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return len(self.runs) == len(DEMO_BATCHES) and all(r.ok for r in self.runs)


def demo(tgt: Target, *, migrations_dir: Path | None = None, reports_dir: Path | None = None,
         reset: bool = False, on_loaded: Callable[[DemoOutcome], None] | None = None,
         on_run: Callable[[RunOutcome], None] | None = None) -> DemoOutcome:
    """Load the example and run batches 6 and 7 end to end, stopping at the first failed run.

    `on_loaded` is told once the example is loaded and `on_run` after each run, as they happen (the CLI
    prints each then).
    """
    reset = tgt.embedded or reset
    outcome = DemoOutcome(example_load(tgt, reset=reset), reset)
    if on_loaded is not None:
        on_loaded(outcome)
    for number in DEMO_BATCHES:
        done = run(tgt, number, migrations_dir=migrations_dir, reports_dir=reports_dir)
        outcome.runs.append(done)
        if on_run is not None:
            on_run(done)
        if not done.ok:
            break
    return outcome


# --- the embedded server ----------------------------------------------------------------------------


def server(action: str) -> str:
    """start (or find running) and print its demo database's URL, url (the same), or stop."""
    if action == "stop":
        return "embedded server stopped" if embedded.stop() else "embedded server was not running"
    if action not in ("start", "url"):
        raise RunbookError(f"Unknown server action {action!r}; use start, stop or url.")
    running = embedded.start()
    ensure_database(running.url, embedded.DEMO_DATABASE)
    return running.database_url(embedded.DEMO_DATABASE)


# --- a fleet --------------------------------------------------------------------------------------------


def fleet(mode: str, number: int, *, targets: Path, workers: int | None = None, scheduler: str | None = None,
          max_failures: int | None = None, options: Options | None = None, rollback_on_failure: bool = False,
          migrations_dir: Path | None = None, reports_dir: Path | None = None, shared_reports: bool | None = None):
    """Batch `number` on every database of a fleet.toml: mode "preflight" (read-only) or "run", wave by wave."""
    # Imported here: Dask (distributed) costs about a second of start-up that no other command needs.
    from runbook_lib.fleet import config as fleet_config
    from runbook_lib.fleet import scheduler as fleet_scheduler

    spec = fleet_config.load(targets)
    return fleet_scheduler.run(spec, number, mode=mode, workers=workers, scheduler=scheduler,
                               max_failures=max_failures, options=options, rollback_on_failure=rollback_on_failure,
                               migrations_dir=migrations_dir, reports_dir=reports_dir, shared_reports=shared_reports)
