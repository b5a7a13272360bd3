"""One function per CLI command; the CLI parses arguments, these do the work (as alembic's command.py)."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from runbook_lib.batch import model as batch_mod
from runbook_lib.db import connection as database
from runbook_lib.db import embedded
from runbook_lib.db import ledger
from runbook_lib import config as paths
from runbook_lib.report import records
from runbook_lib.report import render
from runbook_lib.notebook import runner
from runbook_lib.errors import PhaseFailed, RunbookError

RUN_PHASES = ("preflight", "apply", "validate", "summary")


@dataclass(frozen=True)
class Target:
    """The database a command works on, and how to show it."""

    url: str
    embedded: bool

    @property
    def shown(self) -> str:
        return database.redact(self.url)

    @property
    def name(self) -> str:
        return database.database_name(self.url)


def target(database_url: str | None = None, *, create: bool = True) -> Target:
    """--database-url, else DATABASE_URL, else the embedded server (started here, in the parent process)."""
    url = database_url or os.environ.get("DATABASE_URL")
    if url:
        database.connect(url).close()  # fail now, with one sentence, not inside a kernel
        return Target(url, embedded=False)
    server = embedded.start()
    if create:
        ensure_database(server.url, embedded.DEMO_DATABASE)
    return Target(server.database_url(embedded.DEMO_DATABASE), embedded=True)


def ensure_database(server_url: str, name: str) -> None:
    from psycopg import sql

    with database.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@dataclass
class RunOutcome:
    """What a chain of phases left behind: its record (also written as run.json) and the rendered summary."""

    record: records.RunRecord
    run_dir: Path
    errors: dict[str, PhaseFailed] = field(default_factory=dict)
    summary_html: Path | None = None
    summary_md: Path | None = None

    @property
    def batch(self) -> int:
        return self.record.batch

    @property
    def phases(self) -> list[records.PhaseRun]:
        return self.record.phases

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.record.phases)

    @property
    def failure(self) -> PhaseFailed | None:
        first = self.record.failure
        return self.errors.get(first.phase) if first else None


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_phases(
    tgt: Target,
    number: int,
    phases: tuple[str, ...],
    *,
    migrations_dir: Path | None = None,
    reports_dir: Path | None = None,
    options: dict | None = None,
    rollback_on_failure: bool = False,
    quiet: bool = False,
    folder_name: str | None = None,
) -> RunOutcome:
    """Execute the phase notebooks in order into one run folder, stopping at the first failure.

    Whatever happened, a summary is rendered when asked for, so a failed run still has its report;
    with `rollback_on_failure`, a failed validation rolls the batch back first. `folder_name` replaces
    the database name in `reports/<database>/<batch>/<run-id>/` (a fleet names each target).
    """
    migrations = Path(migrations_dir or paths.example_migrations_dir()).resolve()
    batch_mod.find(migrations, number)  # refuse an unknown batch before anything starts
    run = records.RunFolder.create(Path(reports_dir or paths.default_reports_dir()).resolve(),
                                  folder_name or tgt.name, number)
    record = records.RunRecord(number, run.run_id, tgt.shown, records.now_iso(), rollback_on_failure=rollback_on_failure)
    outcome = RunOutcome(record, run.path)
    say = (lambda m: None) if quiet else _progress
    say(f"runbook: batch {number} on {tgt.shown}; run folder {run.path}")
    queue = list(phases)
    summary = None
    # One kernel for the whole chain (a kernel start and the imports cost about a second per notebook),
    # and nbconvert rendering each executed notebook in the background while the next one runs.
    with runner.SharedKernel(tgt.url, run.path) as kernel, render.Renderer() as renderer:
        while queue:
            phase = queue.pop(0)
            if record.failure is not None and phase not in ("summary", "rollback"):
                continue
            params = {"batch": number, "run_dir": str(run.path)}
            if phase != "summary":
                params["migrations_dir"] = str(migrations)
            if phase == "preflight" and (options or {}).get("force"):
                params["fail_on_nogo"] = False  # --force: the NO-GO is reported, and apply is forced
            if phase in ("apply", "rollback"):
                allowed = _APPLY_OPTIONS if phase == "apply" else _ROLLBACK_OPTIONS
                params.update({k: v for k, v in (options or {}).items() if v is not None and k in allowed})
            out = run.path / runner.PHASE_NOTEBOOKS[phase]
            started = time.perf_counter()
            try:
                done = runner.execute(phase, out, params, database_url=tgt.url, kernel=kernel)
                record.phases.append(records.PhaseRun(phase, out.name, done.seconds, True))
                say(f"  {phase:<9} ok      {done.seconds:6.1f} s")
                if phase == "rollback" and record.failure is not None:
                    record.rolled_back = True
            except PhaseFailed as exc:
                seconds = round(time.perf_counter() - started, 3)
                record.phases.append(records.PhaseRun(phase, out.name, seconds, False, exc.cell_index, exc.ename, exc.evalue))
                outcome.errors[phase] = exc
                say(f"  {phase:<9} FAILED  {seconds:6.1f} s")
                if phase == "validate" and rollback_on_failure:
                    say("  validation failed: rolling the batch back (--rollback-on-failure)")
                    queue.insert(0, "rollback")
            run.write("run", record)
            if phase != "summary" and out.exists():
                renderer.audit_copy(out)  # not the summary: its summary.html has no code, and would be overwritten
            elif phase == "summary" and out.exists() and record.phases[-1].ok:
                summary = renderer.summary(out, run.path, title=f"Batch {number} migration summary")
        kernel.close()  # while the summary renders
        if summary is not None:
            rendered = summary.result()
            outcome.summary_html, outcome.summary_md = rendered.html, rendered.markdown
    render.index(run.path, record)
    return outcome


_APPLY_OPTIONS = ("dry_run", "force", "strategy", "lock_timeout_ms", "statement_timeout_ms", "max_attempts")
_ROLLBACK_OPTIONS = ("dry_run", "lock_timeout_ms", "statement_timeout_ms", "max_attempts")


@dataclass(frozen=True)
class BatchStatus:
    number: int
    name: str
    title: str
    applied: bool
    applied_at: str
    applied_by: str
    checksum_matches: bool | None


def status(tgt: Target, migrations_dir: Path | None = None) -> list[BatchStatus]:
    batches = batch_mod.discover(migrations_dir or paths.example_migrations_dir())
    with database.connect(tgt.url) as conn:
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


def example_load(tgt: Target, *, leads: int = 1000, reset: bool = False):
    from runbook_lib.db import example

    with database.connect(tgt.url) as conn:
        loaded = example.load(conn, leads=leads, reset=reset)
        conn.commit()
    return loaded


def report(run_dir: Path) -> RunOutcome:
    """Re-render a run's summary from its records alone: no database needed."""
    run = records.RunFolder.open(run_dir)
    if not any(run.has(p) for p in ("preflight", "apply", "validate", "rollback")):
        raise RunbookError(f"{run.path} holds no phase record (preflight.json, apply.json, ...); pass a run folder.")
    record = run.read("run", records.RunRecord) or records.RunRecord(0, run.run_id, "", records.now_iso())
    out = run.path / runner.PHASE_NOTEBOOKS["summary"]
    runner.execute("summary", out, {"run_dir": str(run.path.resolve())}, database_url="")
    rendered = render.summary(out, run.path)
    render.index(run.path, record)
    return RunOutcome(record, run.path, summary_html=rendered.html, summary_md=rendered.markdown)
