"""A runbook notebook: one migration stepped through in Jupyter, a cell per step of the apply plan.

`runbook notebook N` fixes the plan (`describe`, kept as `runbook.json` in a new run folder) and writes the
notebook beside it (`phases.stepbook`). In the kernel, `open_book` reads the plan back, and each cell makes
one call: `book.preflight()`, `book.step(k)`, `book.pause(k)` (and `approve(pause)`), `book.validate()`,
`book.summary()`, `book.rollback_step(k)`.

A step is apply's own path with `only_step=k` (the migration lock taken and released around it, the look
before queueing, lock_timeout retries, the live guard, the ledger's progress inside the step's transaction,
a backfill's batches), so there is one implementation of apply. Where the migration stands is read from the
ledger, never from the kernel: a cell run twice, a restarted kernel and `runbook apply N` from a terminal
all see the same thing. Each step's record is merged into the run folder's `apply.json`, so the summary
reads a stepped apply as it reads any other.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook_lib import batch as batch_mod
from runbook_lib import names
from runbook_lib.batch import history
from runbook_lib.batch.model import ROLLBACK, Batch, BatchInfo, sha256_file
from runbook_lib.config import DEFAULTS, ONLINE, Options
from runbook_lib.db import approvals, catalog, ledger, migration_lock
from runbook_lib.errors import AwaitingApproval, BatchError, RunbookError, StepRefused
from runbook_lib.execution import stepping
from runbook_lib.execution.session import Session, open_session
from runbook_lib.phases import apply as apply_phase
from runbook_lib.phases import preflight as preflight_phase
from runbook_lib.phases import rollback as rollback_phase
from runbook_lib.phases import validate as validate_phase
from runbook_lib.report import records
from runbook_lib.report.records import ExecutionResult, PreflightResult, StepApproval, ValidationResult
from runbook_lib.sql import analysis, linked_locks, lockcost, plan

if TYPE_CHECKING:  # the annotations' DataFrame (start-up time: pandas loads when a table is built)
    import pandas as pd

PLAN = "runbook"  # runbook.json: the plan the notebook was written from
NOTEBOOK = "runbook.ipynb"
ALL = "all"  # approve = "all": every pause passes, and the ledger says so


@dataclass(frozen=True)
class StepCard:
    """One step as the notebook shows it before it runs: its SQL as the parser reads it, what it will lock,
    how long writers would wait, and why (if so) the notebook pauses before it."""

    number: int
    purpose: str
    fingerprint: str
    transactional: bool
    sql: str
    locks: str
    estimate: str
    does: str
    statements: list[int] = field(default_factory=list)
    pause: str = ""  # why the notebook asks for an approval before this step ("" none)
    group: int = 0  # the steps that make one statement online: a failed or killed one is redone whole

    @property
    def label(self) -> str:
        return f"step {self.number} ({self.purpose})"


@dataclass(frozen=True)
class BookPlan:
    """runbook.json: what the notebook was written from; every step cell checks the files still read so."""

    batch: BatchInfo
    migrations_dir: str
    strategy: str
    written_at: str
    lock_threshold_ms: float
    steps: list[StepCard]
    rollback_steps: list[StepCard] = field(default_factory=list)
    rollback_checksum: str = ""
    online_steps: int = 0  # the direct plan is one transaction: the online plan's size, offered instead
    database: str = ""  # the database it was written for (its name): a notebook never runs against another


# --- writing: the plan a notebook is written from ---------------------------------------------------


def _drops_data(stmt: analysis.StatementAnalysis) -> bool:
    kind = stmt.kind.upper()
    return any(what in ("table", "column") for what, _, _ in stmt.drops) or kind.startswith(
        ("TRUNCATE", "DELETE", "DROP TABLE")
    )


def _cards(
    steps: list[plan.Step],
    statements: list[analysis.StatementAnalysis],
    costs: list[lockcost.LockCost],
    threshold_ms: float,
    pause_before: tuple[int, ...],
) -> list[StepCard]:
    """Each step's card; a pause before the first step of a statement the batch marks, one that drops data, and
    one that would block writes longer than the threshold."""
    by_index = {s.index: s for s in statements}
    cost_of = {c.statement_index: c for c in costs}
    cards, paused_for = [], set()
    for step in steps:
        indexes = list(dict.fromkeys(p.index for p in step.statements))
        originals = [
            p for p in step.statements if p.index in by_index and p.sql.strip() == by_index[p.index].sql.strip()
        ]
        blocking = [cost_of[p.index] for p in originals if p.index in cost_of]
        block_ms = sum(c.estimate_ms for c in blocking)
        locks = "; ".join(p.locks for p in step.statements if p.locks) or "none on the application's tables"
        if step.backfill is not None:
            estimate = (
                f"batches of about {DEFAULTS.backfill_batch_ms} ms each by keyset on {step.backfill.table}: "
                "only the rows of one batch are locked at a time; writes go on"
            )
        elif blocking:
            estimate = (
                f"blocks writes for about {block_ms:,.0f} ms ("
                + "; ".join(f"{c.table}: {c.rows_estimate:,} rows, {c.method}" for c in blocking)
                + ")"
            )
        elif any("VALIDATE" in p.kind.upper() or "VALIDATE" in p.sql.upper() for p in step.statements):
            estimate = "scans the table under SHARE UPDATE EXCLUSIVE: writes go on while it runs"
        else:
            estimate = "brief: no scan or rewrite under a lock that blocks writes"
        reasons = []
        marked = [i for i in indexes if i in pause_before and i not in paused_for]
        if marked:
            reasons.append(f"batch.toml's pause_before marks statement {', '.join(map(str, marked))}")
            paused_for.update(marked)
        if block_ms > threshold_ms:
            reasons.append(f"it blocks writes for about {block_ms:,.0f} ms, over the {threshold_ms:g} ms threshold")
        dropping = [by_index[i] for i in indexes if i in by_index and _drops_data(by_index[i])]
        if dropping:
            reasons.append(f"it drops data ({'; '.join(s.kind for s in dropping)})")
        verb = "runs outside a transaction" if not step.transactional else "runs in one transaction"
        does = (
            f"Runs statement{'s' if len(indexes) > 1 else ''} {_span(indexes)} of migration.sql "
            f"({step.purpose}); it {verb}, and its ledger progress commits with it."
        )
        cards.append(
            StepCard(
                step.number,
                step.purpose,
                step.fingerprint,
                step.transactional,
                "\n".join(p.sql.rstrip().rstrip(";") + ";" for p in step.statements),
                locks,
                estimate,
                does,
                indexes,
                "; ".join(reasons),
                step.group or step.number,
            )
        )
    return cards


def _span(indexes: list[int]) -> str:
    return (
        f"{indexes[0]}-{indexes[-1]}"
        if len(indexes) > 2 and indexes == list(range(indexes[0], indexes[-1] + 1))
        else ", ".join(map(str, indexes))
    )


def describe(session: Session, *, strategy: str, lock_threshold_ms: float = 1000.0) -> BookPlan:
    """The plan a runbook notebook is written from: the steps of apply (and of rollback.sql), read-only."""
    batch = session.batch
    statements = apply_phase._statements(session)  # an empty or malformed file is refused before anything
    too_far = [n for n in batch.pause_before if n > len(statements)]
    if too_far:
        raise BatchError(
            f"{batch.name}/batch.toml: pause_before names statement {too_far[0]}, but migration.sql has "
            f"{len(statements)}; name statements as preflight numbers them."
        )
    with session.connect() as conn:
        conn.read_only = True
        with conn.transaction(force_rollback=True):
            statements = linked_locks.refine(conn, statements)
            sizes = preflight_phase.table_sizes(conn, preflight_phase.touched_tables(batch, statements))
            costs = lockcost.estimate(
                conn,
                statements,
                {t.table: (t.rows_estimate, t.bytes) for t in sizes if t.exists},
                threshold_ms=lock_threshold_ms,
            )
    steps = plan.build(statements, strategy)
    rollback_cards, rollback_checksum = [], ""
    path = batch.file(ROLLBACK)
    if path is not None:
        text = batch.rollback_sql
        rollback_checksum = sha256_file(path)
        parsed = analysis.analyze(text, filename=f"{batch.name}/{ROLLBACK}", server_major=session.facts.major)
        rollback_cards = _cards(plan.build(parsed, plan.DIRECT), parsed, [], float("inf"), ())
    return BookPlan(
        BatchInfo.of(batch),
        str(session.migrations_dir),
        strategy,
        records.now_iso(),
        lock_threshold_ms,
        _cards(steps, statements, costs, lock_threshold_ms, batch.pause_before),
        rollback_cards,
        rollback_checksum,
        online_steps=len(plan.build(statements, ONLINE)) if strategy != ONLINE else 0,
        database=session.facts.database,
    )


# --- running: the cells ---------------------------------------------------------------------------


@dataclass(repr=False)
class StepOutcome:
    """What one step cell did: its own record (this step's statements, locks, rows and catalog change)."""

    card: StepCard
    result: ExecutionResult
    phase: str = names.APPLY

    @property
    def ran(self) -> bool:
        return self.result.status not in (names.ALREADY_DONE,)

    @property
    def headline(self) -> str:
        what = "Rollback step" if self.phase == names.ROLLBACK else "Step"
        if not self.ran:
            return f"{what} {self.card.number}: {self.result.message}"
        took = f"{self.result.duration_s:.2f} s"
        if self.result.status == names.PAUSED:
            return f"{what} {self.card.number} committed in {took}; {self.result.message.split(': ', 1)[-1]}"
        return f"{what} {self.card.number} committed in {took}: {self.result.status} ({self.result.message})"

    def frames(self) -> list[tuple[str, pd.DataFrame | str]]:
        r = self.result
        rows = r.row_changes() + [f"{b.rows:,} rows in {b.batches:,} batches ({b.table})" for b in r.backfills]
        return [
            ("Timeline", r.timeline_frame()),
            ("Locks held just before commit", r.locks_frame()),
            ("Rows changed", "; ".join(rows) or "none"),
            ("What changed in the catalog", r.changes_frame()),
        ]

    def __repr__(self) -> str:
        return self.headline

    def _repr_html_(self) -> str:
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

        if not self.ran:
            return f"<p><b>{html.escape(self.headline)}</b></p>"
        parts = [f"<p><b>{html.escape(self.headline)}</b></p>"]
        for title, shown in self.frames():
            body = shown.to_html() if isinstance(shown, pd.DataFrame) else f"<p>{html.escape(shown)}</p>"
            parts.append(f"<h4>{html.escape(title)}</h4>{body}")
        return "".join(parts)


@dataclass(repr=False)
class Pause:
    """A pause before a step: what is already enforced, what the next step will do, and whether it is approved."""

    book: Book
    card: StepCard
    approval: approvals.Approval | None
    enforced: list[str]

    @property
    def approved(self) -> bool:
        return self.approval is not None and self.approval.approved

    @property
    def text(self) -> str:
        done = "; ".join(self.enforced) or "nothing of this batch yet"
        state = (
            f"approved by {self.approval.by} at {self.approval.at:%Y-%m-%d %H:%M:%S %Z}".strip()
            if self.approved and self.approval is not None and self.approval.at
            else 'waiting for an approval: approve it here, or run with approve = "all"'
        )
        return (
            f"Pause before {self.card.label}, because {self.card.pause}. Enforced already: {done}. "
            f"Next: {self.card.does} Locks: {self.card.locks}; {self.card.estimate}. {state}."
        )

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return f'<p>{html.escape(self.text)}</p><p><code>stepwise.approve(pause, by="...")</code></p>'

    def _ipython_display_(self) -> None:
        """The text, and an approval button where ipywidgets is installed (the `interactive` extra)."""
        from IPython.display import HTML, display  # a notebook's display, only in a kernel

        display(HTML(self._repr_html_()))
        if self.approved:
            return
        try:
            import ipywidgets  # optional: the `interactive` extra
        except ImportError:
            return
        button = ipywidgets.Button(description=f"Approve step {self.card.number}", button_style="warning")
        said = ipywidgets.Output()

        def clicked(_button: object) -> None:
            with said:
                print(approve(self))
            button.disabled = True

        button.on_click(clicked)
        display(ipywidgets.VBox([button, said]))


@dataclass(repr=False)
class NotRun:
    """A Rollback cell that was not asked to run."""

    text: str

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return f"<p><i>{html.escape(self.text)}</i></p>"


@dataclass(repr=False)
class SummaryOutcome:
    html: Path
    markdown: Path
    headline: str

    def __repr__(self) -> str:
        return f"{self.headline}\nsummary: {self.html}\n         {self.markdown}"

    def _repr_html_(self) -> str:
        return (
            f"<p><b>{html.escape(self.headline)}</b></p><p>summary: <code>{html.escape(str(self.html))}</code>"
            f" and <code>{html.escape(str(self.markdown))}</code></p>"
        )


def _os_user() -> str:
    return ledger.os_user() or "unknown user"


@dataclass
class Book:
    """The notebook's view of one batch and its plan; every decision is read again from the files and the ledger."""

    session: Session
    plan: BookPlan
    options: Options
    approve_all: bool = False

    # --- what the cells call

    def preflight(self, *, fail_on_nogo: bool = True) -> PreflightResult:
        """The preflight with its verdict (preflight.json); NO-GO fails the cell unless force is set.

        Once a step is committed, the gates describe a state that is gone (a NOT NULL's gate counted the NULLs
        step 1 may have fixed): the preflight this notebook recorded before step 1 stands, and is not run again.
        """
        self._require_unchanged()
        if self._committed() > 0:
            recorded = self.session.run.read(names.PREFLIGHT, PreflightResult)
            if recorded is not None:
                return recorded
            fail_on_nogo = False  # started elsewhere (a terminal): shown, but no longer a reason to stop
        result = preflight_phase.run(
            self.session,
            lock_threshold_ms=self.plan.lock_threshold_ms,
            terminate_blockers_after_s=self.options.terminate_blockers_after_s,
        )
        result.raise_for_verdict(fail_on_nogo and not self.options.force)
        return result

    def pause(self, number: int) -> Pause:
        """The pause cell before step `number`: recorded as waiting in the ledger (or approved, with approve="all")."""
        card = self._card(number)
        if not card.pause:
            raise StepRefused(f"The plan has no pause before step {number}; run the step's cell.")
        found = self._approval(card, record_wait=not self._done(number))
        return Pause(self, card, found, self._enforced(number))

    def step(self, number: int) -> StepOutcome:
        """Step `number` of the apply alone, under every protection apply has; run again, it changes nothing."""
        card = self._card(number)
        self._require_unchanged()
        if card.pause and not self._done(number):
            found = self._approval(card, record_wait=True)
            if found is None or not found.approved:
                raise AwaitingApproval(
                    f"Step {number} of batch {self.number} waits for an approval ({card.pause}); approve it in the "
                    f'pause cell above (its button, or stepwise.approve(pause)), or run with approve = "all" '
                    f"(-p approve all); `runbook status` shows the batch PAUSED until then. Nothing was changed."
                )
        previous = self.session.run.read(names.APPLY, ExecutionResult)
        try:
            result = apply_phase.run(self.session, only_step=number, **self._apply_options())
        except RunbookError:
            self._merge(previous, self.session.run.read(names.APPLY, ExecutionResult), number)
            raise
        assert isinstance(result, ExecutionResult)  # a Session's apply is one batch's
        if result.status != names.ALREADY_DONE:
            self._merge(previous, result, number)
        return StepOutcome(card, result)

    def validate(self) -> ValidationResult:
        """The validation (validate.json), as `runbook validate` runs it."""
        result = validate_phase.run(self.session, fail_on_not_run=self.options.fail_on_not_run)
        assert isinstance(result, ValidationResult)  # a Session's validation is one batch's
        return result

    def summary(self) -> SummaryOutcome:
        """summary.html and summary.md from the run folder's records, as `runbook run` makes them."""
        run = self.session.run
        record = records.RunRecord(
            self.number,
            run.run_id,
            self.session.facts.url,
            self.plan.written_at,
            run_by=f"{_os_user()}@{ledger.hostname()}",
        )
        record.phases = phase_runs([run])
        html_path, md_path = render_summary(run, record, f"Batch {self.number} migration summary")
        applied = run.read(names.APPLY, ExecutionResult)
        validated = run.read(names.VALIDATE, ValidationResult)
        headline = f"batch {self.number}: apply {applied.status if applied else 'not run'}"
        if validated is not None:
            headline += f"; validation {validated.headline}"
        return SummaryOutcome(html_path, md_path, headline)

    def rollback_step(self, number: int, *, run: bool = False) -> StepOutcome | NotRun:
        """Step `number` of rollback.sql alone, only when asked (`rollback = True`); recorded as rollback.json."""
        if not self.plan.rollback_steps:
            return NotRun(f"batch {self.number} has no rollback.sql: nothing to roll back with")
        card = next((c for c in self.plan.rollback_steps if c.number == number), None)
        if card is None:
            raise StepRefused(
                f"rollback.sql of batch {self.number} has {len(self.plan.rollback_steps)} step(s), "
                f"so there is no step {number}."
            )
        if not run:
            return NotRun(
                f"Rollback step {number} not run: set rollback = True (-p rollback True) to undo the batch "
                f"one step per cell, or run `runbook rollback {self.number}` from a terminal."
            )
        batch = self._fresh_batch()
        path = batch.file(ROLLBACK)
        if path is None or sha256_file(path) != self.plan.rollback_checksum:
            raise StepRefused(
                f"{batch.name}/{ROLLBACK} changed since this notebook was written; write a new notebook "
                f"with `runbook notebook {self.number}`. Nothing was changed."
            )
        o = self.options
        result = rollback_phase.run(
            self.session,
            lock_timeout_ms=o.lock_timeout_ms,
            statement_timeout_ms=o.statement_timeout_ms,
            max_attempts=o.max_attempts,
            wait_for_blockers_s=o.wait_for_blockers_s,
            terminate_blockers_after_s=o.terminate_blockers_after_s,
            blocker_threshold_ms=o.blocker_threshold_ms,
            only_step=number,
        )
        return StepOutcome(card, result, names.ROLLBACK)

    # --- display

    @property
    def number(self) -> int:
        return self.plan.batch.number

    def frame(self) -> pd.DataFrame:
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

        rows = [(c.number, c.purpose, c.locks, c.estimate, c.pause or "") for c in self.plan.steps]
        return pd.DataFrame(rows, columns=["step", "what", "locks", "estimate", "pause before it"]).set_index("step")

    def _repr_html_(self) -> str:
        head = self.session.frame().to_html()
        note = f"<p>{self.plan.strategy} strategy: {len(self.plan.steps)} step(s), a cell each.</p>"
        return head + note + self.frame().to_html()

    # --- the checks behind the cells

    def _card(self, number: int) -> StepCard:
        card = next((c for c in self.plan.steps if c.number == number), None)
        if card is None:
            raise StepRefused(
                f"The notebook's plan for batch {self.number} has {len(self.plan.steps)} step(s), "
                f"so there is no step {number}."
            )
        return card

    def _fresh_batch(self) -> Batch:
        return batch_mod.find(Path(self.plan.migrations_dir), self.number)

    def _require_unchanged(self) -> None:
        """The batch's migration.sql and its plan as the notebook was written from them, else refused."""
        batch = self._fresh_batch()
        if batch.checksum != self.plan.batch.checksum:
            raise StepRefused(
                f"{batch.name}/migration.sql changed since this notebook was written (checksum "
                f"{self.plan.batch.checksum[:12]}, now {batch.checksum[:12]}); restore it, or write a new notebook "
                f"with `runbook notebook {self.number}`. Nothing was changed."
            )
        self.session = replace(self.session, batch=batch)
        statements = apply_phase._statements(self.session)
        now = [s.fingerprint for s in plan.build(statements, self.plan.strategy)]
        if now != [c.fingerprint for c in self.plan.steps]:
            raise StepRefused(
                f"Batch {self.number}'s {self.plan.strategy} plan reads otherwise than when this notebook was written "
                f"({len(now)} step(s), was {len(self.plan.steps)}), so its cells no longer match; write a new "
                f"notebook with `runbook notebook {self.number}`. Nothing was changed."
            )

    def _done(self, number: int) -> bool:
        """Whether step `number` is committed already (a pause before it then asks nothing)."""
        return number <= self._committed()

    def _committed(self) -> int:
        """How many steps stand committed, as `execution.stepping.committed` counts them (a failed or killed
        run's half group does not count); all of them once the batch is applied."""
        with self.session.connect() as conn:
            if history.read(conn, self.session.batches()).state(self.number).applied:
                return len(self.plan.steps)
            # a row still 'running' while no one holds the migration lock is a run that died (a killed kernel)
            stopped = ledger.stopped(conn, self.number, dead_running=migration_lock.holder(conn) is None)
        return stepping.committed(
            self.plan.steps, stopped if stopped is not None and stopped.phase == names.APPLY else None
        )

    def _approval(self, card: StepCard, *, record_wait: bool) -> approvals.Approval | None:
        s = self.session
        key: dict[str, Any] = dict(  # the approval's keywords, the same for each call below
            run_id=s.run.run_id, batch=self.number, batch_name=s.batch.name, checksum=s.batch.checksum, step=card.number
        )
        if self.approve_all:
            return approvals.approve(s.url, by=_os_user(), how='approve = "all"', **key)
        if record_wait:
            return approvals.wait(s.url, reason=card.pause, **key)
        with s.connect() as conn:
            return approvals.find(conn, s.run.run_id, self.number, card.number)

    def _enforced(self, number: int) -> list[str]:
        """What the steps committed so far changed in the catalog (against apply.json's snapshot before step 1)."""
        done = self.session.run.read(names.APPLY, ExecutionResult)
        if done is None or done.before is None:
            return []
        with self.session.connect() as conn:
            conn.read_only = True
            now = catalog.snapshot(conn, [t.name for t in done.before.tables], count_rows=False)
        return [
            f"{c.table}: {c.object} {c.change}" + (f" ({c.after})" if c.after else "")
            for c in catalog.diff(done.before, now)
        ]

    def _apply_options(self) -> dict[str, Any]:
        o = self.options
        return dict(
            force=o.force,
            strategy=self.plan.strategy,
            lock_timeout_ms=o.lock_timeout_ms,
            statement_timeout_ms=o.statement_timeout_ms,
            max_attempts=o.max_attempts,
            wait_for_blockers_s=o.wait_for_blockers_s,
            terminate_blockers_after_s=o.terminate_blockers_after_s,
            blocker_threshold_ms=o.blocker_threshold_ms,
            backfill_batch_ms=o.backfill_batch_ms,
            backfill_rows_per_s=o.backfill_rows_per_s,
            backfill_pause_ms=o.backfill_pause_ms,
            max_replica_lag_ms=o.max_replica_lag_ms,
            backfill_wal_mb_per_s=o.backfill_wal_mb_per_s,
            backfill_flush_from_mb=o.backfill_flush_from_mb,
        )

    def _merge(self, previous: ExecutionResult | None, new: ExecutionResult | None, number: int) -> None:
        """apply.json as one apply: this step's record joined to the steps this notebook ran before it."""
        if new is None or new.stepped:
            return  # nothing new was written (a step refused before it ran): apply.json is merged already
        card = self._card(number)
        if card.pause:
            with self.session.connect() as conn:
                found = approvals.find(conn, self.session.run.run_id, self.number, number)
            if found is not None and found.approved:
                new.approvals = [
                    StepApproval(
                        number,
                        found.since.isoformat(),
                        found.at.isoformat() if found.at else "",
                        found.by,
                        found.how,
                        card.pause,
                    )
                ]
        new.stepped = True
        if previous is None or previous is new or previous.run_id != new.run_id or not previous.stepped:
            self.session.run.write(names.APPLY, new)
            return
        self.session.run.write(names.APPLY, merge(previous, new))


def merge(first: ExecutionResult, then: ExecutionResult) -> ExecutionResult:
    """Two records of one stepped apply as one: the steps each committed, every statement on one clock (the
    later step's offsets moved by the time between the two), the catalog before the first and after the last."""
    shift = 0.0
    if first.statements_started_at and then.statements_started_at:
        shift = (
            datetime.fromisoformat(then.statements_started_at) - datetime.fromisoformat(first.statements_started_at)
        ).total_seconds()
    moved = [replace(s, started_offset_s=round(s.started_offset_s + shift, 6)) for s in then.statements]
    steps = {s.number: s for s in first.steps if s.status != names.SKIPPED}
    for s in then.steps:
        if s.status != names.SKIPPED or s.number not in steps:
            steps[s.number] = s
    before = first.before or then.before
    after = then.after or first.after
    approvals_by_step = {a.step: a for a in first.approvals + then.approvals}
    return replace(
        then,
        started_at=first.started_at,
        statements_started_at=first.statements_started_at or then.statements_started_at,
        duration_s=round(first.duration_s + then.duration_s, 6),
        attempts=first.attempts + then.attempts,
        steps=[steps[n] for n in sorted(steps)],
        statements=first.statements + moved,
        locks_before_commit=first.locks_before_commit + then.locks_before_commit,
        longest_write_block_s=max(first.longest_write_block_s, then.longest_write_block_s),
        longest_queue_wait_s=max(first.longest_queue_wait_s, then.longest_queue_wait_s),
        before=before,
        after=after,
        changes=catalog.diff(before, after) if before and after else then.changes,
        cleanup=first.cleanup + then.cleanup,
        blocker_waits=first.blocker_waits + then.blocker_waits,
        blocker_wait_s=round(first.blocker_wait_s + then.blocker_wait_s, 6),
        guard_cancels=first.guard_cancels + then.guard_cancels,
        gates_from=first.gates_from or then.gates_from,
        backfills=first.backfills + then.backfills,
        resumed=first.resumed or then.resumed,
        prisma=then.prisma or first.prisma,
        approvals=[approvals_by_step[n] for n in sorted(approvals_by_step)],
        stepped=True,
    )


def phase_runs(folders: list[records.RunFolder]) -> list[records.PhaseRun]:
    """run.json's phases for a stepped run: each phase whose record a folder holds (a release: every migration's),
    ok unless one failed or said NO-GO."""
    out = []
    for phase in (names.PREFLIGHT, names.APPLY, names.VALIDATE):
        found = [d for d in (f.read_data(phase) for f in folders) if d is not None]
        if found:
            ok = all(
                d.get("status", "") != names.FAILED and (d.get("verdict") or {}).get("status") != names.NOGO
                for d in found
            )
            out.append(
                records.PhaseRun(phase, NOTEBOOK, round(sum(float(d.get("duration_s") or 0.0) for d in found), 6), ok)
            )
    return out


def render_summary(run: records.RunFolder, record: records.RunRecord, title: str) -> tuple[Path, Path]:
    """run.json, then the summary notebook executed and rendered (summary.html, summary.md) as `runbook run` does."""
    from runbook_lib.notebook import runner  # start-up time: papermill, only for the summary
    from runbook_lib.report import render  # start-up time: nbconvert, only for the summary

    run.write("run", record)
    out = run.path / runner.PHASE_NOTEBOOKS[names.SUMMARY]
    runner.execute(names.SUMMARY, out, {"run_dir": str(run.path.resolve())}, database_url="")
    rendered = render.summary(out, run.path, title=title)
    render.index(run.path, record)
    return rendered.html, rendered.markdown


def approve(pause: Pause, *, by: str | None = None) -> str:
    """Approve the pause (the approver defaults to the operating-system user), in the ledger; the next step may run."""
    card, s = pause.card, pause.book.session
    found = approvals.approve(
        s.url,
        run_id=s.run.run_id,
        batch=pause.book.number,
        batch_name=s.batch.name,
        checksum=s.batch.checksum,
        step=card.number,
        by=by or _os_user(),
        how="approve() in the notebook",
    )
    pause.approval = found
    return f"step {card.number} approved by {found.by} at {found.at:%Y-%m-%d %H:%M:%S %Z}".strip()


def open_book(
    run_dir: str | Path, *, database_url: str | None = None, approve: str | None = None, **options: Any
) -> Book:
    """The notebook's first call: the plan it was written from (runbook.json), the target, and the options."""
    run = records.RunFolder.open(run_dir)
    plan_record = run.read(PLAN, BookPlan)
    if plan_record is None:
        raise RunbookError(
            f"{run.path} holds no {PLAN}.json, so it is not a runbook notebook's run folder; write one "
            "with `runbook notebook N`."
        )
    if approve not in (None, ALL):
        raise RunbookError(f'approve must be None (stop at each pause for an approval) or "all", not {approve!r}.')
    chosen = Options(**options).checked()
    if options.get("strategy", plan_record.strategy) != plan_record.strategy:
        raise RunbookError(
            f"This notebook was written for the {plan_record.strategy} strategy; its cells are that "
            f"plan's steps, so write a new notebook with `runbook notebook {plan_record.batch.number} "
            f"--strategy {options['strategy']}`."
        )
    session = open_session(
        plan_record.batch.number,
        migrations_dir=plan_record.migrations_dir,
        run_dir=run.path,
        database_url=database_url,
        from_notebook=True,
    )
    assert isinstance(session, Session)
    if plan_record.database and session.facts.database != plan_record.database:
        raise RunbookError(
            f"This notebook was written for database {plan_record.database}, but DATABASE_URL points at "
            f"{session.facts.url}; point DATABASE_URL at {plan_record.database}, or write a notebook for "
            f"this database with `runbook notebook {plan_record.batch.number}`."
        )
    return Book(session, plan_record, replace(chosen, strategy=plan_record.strategy), approve_all=approve == ALL)


def write_plan(session: Session, *, strategy: str, lock_threshold_ms: float = 1000.0) -> BookPlan:
    """`runbook notebook N`'s first half: the plan, kept as runbook.json in the session's run folder."""
    described = describe(session, strategy=strategy, lock_threshold_ms=lock_threshold_ms)
    session.run.write(PLAN, described)
    return described
