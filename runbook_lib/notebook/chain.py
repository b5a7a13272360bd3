"""A chain of phase notebooks executed into one run folder: what `runbook run` and each phase command do.

One kernel serves the whole chain and nbconvert renders each executed notebook in the background
while the next one runs; whatever happens, the run record (run.json) and the index are written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runbook_lib import batch as batch_mod
from runbook_lib import config, names
from runbook_lib.config import DEFAULTS, Options
from runbook_lib.db import ledger
from runbook_lib.db.target import Target
from runbook_lib.errors import PhaseFailed
from runbook_lib.execution import live
from runbook_lib.execution.session import PENDING, Pending
from runbook_lib.notebook import runner
from runbook_lib.notebook.progress import PhaseProgress
from runbook_lib.orm import prisma_generate
from runbook_lib.report import records, render, site


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


def run_phases(
    tgt: Target,
    number: int | Pending,
    phases: tuple[str, ...],
    *,
    migrations_dir: Path | None = None,
    reports_dir: Path | None = None,
    options: Options | None = None,
    rollback_on_failure: bool = False,
    quiet: bool = False,
    folder_name: str | None = None,
    to: int | None = None,
) -> RunOutcome:
    """Execute the phase notebooks in order into one run folder, stopping at the first failure.

    Whatever happened, a summary is rendered when asked for, so a failed run still has its report;
    with `rollback_on_failure`, a failed validation rolls the batch back first. `folder_name` replaces
    the database name in `reports/<database>/<batch>/<run-id>/` (a fleet names each target).
    `number="pending"` runs a release: every migration not yet applied (up to `to`) in
    `reports/<database>/release/<run-id>/`, with one subfolder per migration.
    """
    options = options or DEFAULTS
    migrations = config.migrations_dir(migrations_dir).resolve()
    release = number == PENDING
    batch_number = 0 if number == PENDING else number  # run.json's batch (0: a release)
    if release:
        batch_mod.discover(migrations)  # refuse a malformed folder before anything starts
    else:
        batch_mod.find(migrations, batch_number)  # refuse an unknown batch before anything starts
    reports = Path(reports_dir or config.default_reports_dir()).resolve()
    run = records.RunFolder.create(reports, folder_name or tgt.name, "release" if release else number)
    record = records.RunRecord(
        batch_number,
        run.run_id,
        tgt.shown,
        records.now_iso(),
        rollback_on_failure=rollback_on_failure,
        release=release,
        run_by=f"{ledger.os_user() or 'unknown user'}@{ledger.hostname()}",
    )
    outcome = RunOutcome(record, run.path)
    progress = PhaseProgress(phases, quiet=quiet)
    say = progress.say
    what = (
        "release (every pending migration" + (f" up to {to})" if to is not None else ")")
        if release
        else f"batch {number}"
    )
    say(f"runbook: {what} on {tgt.shown}; run folder {run.path}")
    queue = list(phases)
    summary = None
    generate_pending = names.APPLY in phases  # prisma_generate.json: before the summary, which shows it
    # One kernel for the whole chain (a kernel start and the imports cost about a second per notebook),
    # and nbconvert rendering each executed notebook in the background while the next one runs.
    live_file = run.path / live.FILE_NAME  # what runs in the kernel tells the terminal as it goes
    progress.follow(live_file)
    with runner.SharedKernel(tgt.url, run.path, live_file=live_file) as kernel, render.Renderer() as renderer:
        while queue:
            phase = queue.pop(0)
            if record.failure is not None and phase not in (names.SUMMARY, names.ROLLBACK):
                continue
            if phase == names.SUMMARY and generate_pending:
                generate_pending = False
                _prisma_generate(run, record, options, migrations, tgt, say)
            params: dict[str, object] = {"batch": number, "run_dir": str(run.path)}
            if release and to is not None and phase != names.SUMMARY:
                params["to"] = to
            if phase != names.SUMMARY:
                params["migrations_dir"] = str(migrations)
            if release and phase == names.APPLY and names.VALIDATE in phases:
                params["validate_each"] = True  # each migration's tests see the state it left (phases.validate)
            if phase == names.PREFLIGHT and options.force:
                params["fail_on_nogo"] = False  # --force: the NO-GO is reported, and apply is forced
            params.update(options.parameters(phase))
            out = run.path / runner.PHASE_NOTEBOOKS[phase]
            started = time.perf_counter()
            progress.started(phase)
            try:
                done = runner.execute(phase, out, params, database_url=tgt.url, kernel=kernel)
                record.phases.append(records.PhaseRun(phase, out.name, done.seconds, True))
                progress.done(phase, True, done.seconds)
                if phase == names.ROLLBACK and record.failure is not None:
                    record.rolled_back = True
            except PhaseFailed as exc:
                seconds = round(time.perf_counter() - started, 3)
                record.phases.append(
                    records.PhaseRun(phase, out.name, seconds, False, exc.cell_index, exc.ename, exc.evalue)
                )
                outcome.errors[phase] = exc
                progress.done(phase, False, seconds)
                if phase == names.VALIDATE and rollback_on_failure:
                    say("  validation failed: rolling the batch back (--rollback-on-failure)")
                    queue.insert(0, names.ROLLBACK)
            run.write("run", record)
            if phase != names.SUMMARY and out.exists():
                renderer.audit_copy(out)  # not the summary: its summary.html has no code, and would be overwritten
            elif phase == names.SUMMARY and out.exists() and record.phases[-1].ok:
                summary = renderer.summary(
                    out, run.path, title="Release migration summary" if release else f"Batch {number} migration summary"
                )
        if generate_pending:  # no summary in this chain (`runbook apply`)
            _prisma_generate(run, record, options, migrations, tgt, say)
        progress.close()
        live_file.unlink(missing_ok=True)  # progress, not a record
        kernel.close()  # while the summary renders
        if summary is not None:
            rendered = summary.result()
            outcome.summary_html, outcome.summary_md = rendered.html, rendered.markdown
    render.index(run.path, record)
    site.refresh(reports)  # reports/index.html: every run, this one first
    return outcome


def _prisma_generate(
    run: records.RunFolder,
    record: records.RunRecord,
    options: Options,
    migrations: Path,
    tgt: Target,
    say: Callable[[str], None],
) -> None:
    """prisma_generate.json: `prisma generate` here, in the parent process, when --prisma-generate asked for it and
    the apply succeeded; else why not. Its failure is a WARN: the migration's outcome is unchanged."""
    applied = next((p for p in record.phases if p.phase == names.APPLY), None)
    if (
        options.prisma_generate
        and not options.dry_run
        and applied is not None
        and applied.ok
        and not record.rolled_back
    ):
        say("  prisma generate: running the project's Prisma CLI")
    done = prisma_generate.after_apply(
        options.prisma_generate,
        dry_run=options.dry_run,
        apply_ok=None if applied is None else applied.ok,
        rolled_back=record.rolled_back,
        migrations_dir=migrations,
        database_url=tgt.url,
    )
    run.write(prisma_generate.RECORD, done)
    if done.warning:
        say(f"  WARN: {done.warning}")  # masked: built from the cleaned output
    elif done.ran:
        say(f"  prisma generate: exit 0 in {done.seconds:.1f} s ({done.version or 'prisma'})")
