"""A runbook notebook for a release (`runbook notebook pending`): every pending migration, a section each, stepped.

The release's run folder is laid out as `runbook deploy` lays it out: release.json (the migrations, fixed when the
notebook is written), and a folder per migration holding its own runbook.json (its `stepwise.BookPlan`) and, as its
cells run, its preflight, apply and validate records. Each migration's cells are a `stepwise.Book`'s, so a step is
apply's own path; what this module adds is the release's order (a migration's cells refuse while an earlier
migration of the release is not applied) and the release's summary, as `runbook deploy` renders it.
"""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook_lib import names
from runbook_lib.batch import history
from runbook_lib.batch.model import Batch
from runbook_lib.config import Options
from runbook_lib.db import ledger
from runbook_lib.errors import DriftError, RunbookError, StepRefused
from runbook_lib.execution.session import PENDING, Release, open_session
from runbook_lib.phases import stepwise
from runbook_lib.phases.stepwise import ALL, PLAN, Book, BookPlan, Pause, StepOutcome, SummaryOutcome
from runbook_lib.report import records
from runbook_lib.report.records import ExecutionResult, PreflightResult, ValidationResult

if TYPE_CHECKING:  # the annotations' DataFrame (start-up time: pandas loads when a table is built)
    import pandas as pd


@dataclass(frozen=True)
class ReleaseBookPlan:
    """The release folder's runbook.json: what the release notebook was written from (each migration's own plan
    is in its folder's runbook.json)."""

    migrations_dir: str
    strategy: str
    written_at: str
    database: str
    batches: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ReleaseWritten:
    """`runbook notebook pending`'s plans: the release's and each migration's, in order (none: nothing pending)."""

    release: Release
    plan: ReleaseBookPlan
    migrations: list[BookPlan]


def write_plan(release: Release, *, strategy: str, lock_threshold_ms: float = 1000.0) -> ReleaseWritten:
    """Each pending migration's plan into its folder, and the release's; nothing pending leaves no folder behind.

    A release that would build on a changed history is refused here, as `runbook deploy` refuses it."""
    if release.plan.drift:
        shutil.rmtree(release.run.path, ignore_errors=True)
        raise DriftError(
            f"The release would build on a history that changed: {'; '.join(release.plan.drift)}; "
            "restore the applied files, or write the changes as new migrations."
        )
    if not release.batches:
        shutil.rmtree(release.run.path, ignore_errors=True)
        return ReleaseWritten(
            release,
            ReleaseBookPlan(str(release.migrations_dir), strategy, records.now_iso(), release.facts.database),
            [],
        )
    plans = []
    for batch in release.batches:
        plans.append(
            stepwise.write_plan(release.session(batch), strategy=strategy, lock_threshold_ms=lock_threshold_ms)
        )
    plan = ReleaseBookPlan(
        str(release.migrations_dir),
        strategy,
        records.now_iso(),
        release.facts.database,
        [b.number for b in release.batches],
    )
    release.run.write(PLAN, plan)
    return ReleaseWritten(release, plan, plans)


@dataclass
class ReleaseBook:
    """The release notebook's view: a `Book` per migration, opened when its section's first cell runs, and the
    release's order between them, read from the histories (never from the kernel)."""

    release: Release
    plan: ReleaseBookPlan
    database_url: str | None
    approve: str | None
    options: dict
    books: dict[int, Book] = field(default_factory=dict)

    # --- what the cells call

    def preflight(self, number: int) -> PreflightResult:
        """Migration `number`'s preflight, once the migrations before it are applied (its gates judge that state)."""
        return self._turn(number).preflight()

    def pause(self, number: int, step: int) -> Pause:
        return self._turn(number).pause(step)

    def step(self, number: int, step: int) -> StepOutcome:
        """Step `step` of migration `number` alone (`Book.step`), refused while an earlier migration is not applied."""
        return self._turn(number).step(step)

    def validate(self, number: int) -> ValidationResult:
        """Migration `number`'s validation, right after its last step: its tests judge the state it left."""
        return self.book(number).validate()

    def summary(self) -> SummaryOutcome:
        """summary.html and summary.md of the release, as `runbook deploy` renders them."""
        run = self.release.run
        record = records.RunRecord(
            0,
            run.run_id,
            self.release.facts.url,
            self.plan.written_at,
            release=True,
            run_by=f"{ledger.os_user() or 'unknown user'}@{ledger.hostname()}",
        )
        children = [run.child(n) for n in self.plan.batches]
        record.phases = stepwise.phase_runs(children)
        html_path, md_path = stepwise.render_summary(run, record, "Release migration summary")
        applied = [
            r
            for r in (c.read(names.APPLY, ExecutionResult) for c in children)
            if r is not None and r.status == names.APPLIED
        ]
        validated = [v for v in (c.read(names.VALIDATE, ValidationResult) for c in children) if v is not None]
        headline = f"release: {len(applied)}/{len(self.plan.batches)} migrations applied"
        if validated:
            headline += (
                f"; validation {sum(v.passed for v in validated)}/{sum(v.total for v in validated)} tests "
                f"passed over {len(validated)} migration(s)"
            )
        return SummaryOutcome(html_path, md_path, headline)

    # --- display

    def frame(self) -> pd.DataFrame:
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

        rows = []
        for number in self.plan.batches:
            plan = self.release.run.child(number).read(PLAN, BookPlan)
            steps = plan.steps if plan else []
            rows.append(
                (
                    number,
                    plan.batch.name if plan else "?",
                    len(steps),
                    ", ".join(f"before step {c.number}" for c in steps if c.pause) or "none",
                )
            )
        return pd.DataFrame(rows, columns=["migration", "name", "steps", "pauses"]).set_index("migration")

    def _repr_html_(self) -> str:
        note = (
            f"<p>{html.escape(self.release.label)}; {self.plan.strategy} strategy, a section per migration and a "
            "cell per step.</p>"
        )
        return self.release.frame().to_html() + note + self.frame().to_html()

    # --- the release's order

    def book(self, number: int) -> Book:
        """Migration `number`'s Book (its folder's runbook.json), opened once."""
        if number not in self.plan.batches:
            raise StepRefused(
                f"This release notebook deploys migration(s) {', '.join(map(str, self.plan.batches))}, "
                f"so there is no migration {number}."
            )
        if number not in self.books:
            self.books[number] = stepwise.open_book(
                self.release.run.child(number).path,
                database_url=self.database_url,
                approve=self.approve,
                **self.options,
            )
        return self.books[number]

    def _turn(self, number: int) -> Book:
        """The Book of `number`, once every migration before it in the release is applied; else refused."""
        book = self.book(number)
        before = [b for b in self.release.batches if b.number in self.plan.batches[: self.plan.batches.index(number)]]
        if before:
            with book.session.connect() as conn:
                known = history.read(conn, self.release.folder)
            waiting: Batch | None = next((b for b in before if not known.state(b.number).applied), None)
            if waiting is not None:
                raise StepRefused(
                    f"Migration {number} of this release cannot start yet: migration {waiting.number} "
                    f"({waiting.name}) comes first and is not applied; run its cells first. Nothing "
                    "was changed."
                )
        return book


def open_release(
    run_dir: str | Path, *, database_url: str | None = None, approve: str | None = None, **options: Any
) -> ReleaseBook:
    """The release notebook's first call: the plan it was written from, the target, and the options."""
    run = records.RunFolder.open(run_dir)
    plan = run.read(PLAN, ReleaseBookPlan)
    if plan is None or not run.has("release"):
        raise RunbookError(
            f"{run.path} holds no release runbook.json, so it is not a release notebook's run folder; "
            "write one with `runbook notebook pending`."
        )
    if approve not in (None, ALL):
        raise RunbookError(f'approve must be None (stop at each pause for an approval) or "all", not {approve!r}.')
    Options(**options).checked()  # a bad option is named before anything is opened
    release = open_session(
        PENDING, migrations_dir=plan.migrations_dir, run_dir=run.path, database_url=database_url, from_notebook=True
    )
    assert isinstance(release, Release)
    if release.facts.database != plan.database:
        raise RunbookError(
            f"This notebook was written for database {plan.database}, but DATABASE_URL points at "
            f"{release.facts.url}; point DATABASE_URL at {plan.database}, or write a notebook for "
            "this database with `runbook notebook pending`."
        )
    return ReleaseBook(release, plan, database_url, approve, options)
