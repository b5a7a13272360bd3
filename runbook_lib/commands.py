"""One function per CLI command; the CLI parses arguments, these do the work (as alembic's command.py)."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import batch as batch_mod
from . import database, embedded, ledger, paths, records, render, runner
from .errors import PhaseFailed, RunbookError

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
class PhaseOutcome:
    phase: str
    notebook: Path
    seconds: float
    ok: bool
    error: PhaseFailed | None = None


@dataclass
class RunOutcome:
    batch: int
    run_dir: Path
    phases: list[PhaseOutcome] = field(default_factory=list)
    summary_html: Path | None = None
    summary_md: Path | None = None

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.phases)

    @property
    def failure(self) -> PhaseFailed | None:
        return next((p.error for p in self.phases if p.error), None)


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
    quiet: bool = False,
) -> RunOutcome:
    """Execute the phase notebooks in order into one run folder, stopping at the first failure.

    Whatever happened, a summary is rendered when asked for, so a failed run still has its report.
    """
    migrations = Path(migrations_dir or paths.example_migrations_dir()).resolve()
    batch_mod.find(migrations, number)  # refuse an unknown batch before anything starts
    run = records.RunFolder.create(Path(reports_dir or paths.default_reports_dir()).resolve(), tgt.name, number)
    outcome = RunOutcome(number, run.path)
    say = (lambda m: None) if quiet else _progress
    say(f"runbook: batch {number} on {tgt.shown}; run folder {run.path}")
    failed = False
    for phase in phases:
        if failed and phase != "summary":
            continue
        params = {"batch": number, "run_dir": str(run.path)}
        if phase != "summary":
            params["migrations_dir"] = str(migrations)
        if phase in ("apply", "rollback"):
            params.update({k: v for k, v in (options or {}).items() if v is not None})
        out = run.path / runner.PHASE_NOTEBOOKS[phase]
        started = time.perf_counter()
        try:
            done = runner.execute(phase, out, params, database_url=tgt.url)
            outcome.phases.append(PhaseOutcome(phase, out, done.seconds, True))
            say(f"  {phase:<9} ok      {done.seconds:6.1f} s")
        except PhaseFailed as exc:
            outcome.phases.append(PhaseOutcome(phase, out, round(time.perf_counter() - started, 3), False, exc))
            say(f"  {phase:<9} FAILED  {time.perf_counter() - started:6.1f} s")
            failed = True
            continue
        if phase == "summary":
            rendered = render.summary(out, run.path, title=f"Batch {number} migration summary")
            outcome.summary_html, outcome.summary_md = rendered.html, rendered.markdown
    for phase in outcome.phases:
        # summary.html is the summary notebook's rendering (code hidden): its audit copy would overwrite it.
        if phase.phase != "summary" and phase.notebook.exists():
            render.audit_copy(phase.notebook)
    return outcome


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
    from . import example

    with database.connect(tgt.url) as conn:
        loaded = example.load(conn, leads=leads, reset=reset)
        conn.commit()
    return loaded


def report(run_dir: Path) -> RunOutcome:
    """Re-render a run's summary from its records alone: no database needed."""
    run = records.RunFolder.open(run_dir)
    if not any(run.has(p) for p in ("preflight", "apply", "validate", "rollback")):
        raise RunbookError(f"{run.path} holds no phase record (preflight.json, apply.json, ...); pass a run folder.")
    out = run.path / runner.PHASE_NOTEBOOKS["summary"]
    done = runner.execute("summary", out, {"run_dir": str(run.path.resolve())}, database_url="")
    rendered = render.summary(out, run.path)
    outcome = RunOutcome(0, run.path, [PhaseOutcome("summary", out, done.seconds, True)],
                         rendered.html, rendered.markdown)
    return outcome
