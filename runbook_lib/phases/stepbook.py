"""The runbook notebook `runbook notebook N` writes: a section per step of the plan, each with one cell that runs it.

Written from the plan (`phases.stepwise.BookPlan`), never executed here; like the phase notebooks, every code
cell is one call into runbook_lib and one display, and the notebook carries no output and no password.
"""

from __future__ import annotations

from pathlib import Path

from runbook_lib import names
from runbook_lib.config import ONLINE, Options
from runbook_lib.execution.session import PENDING
from runbook_lib.phases.releasebook import ReleaseWritten
from runbook_lib.phases.stepwise import NOTEBOOK, BookPlan, StepCard

# The options a step takes, as parameters: the same names and meanings as apply.ipynb's.
OPTION_NAMES = (
    "force",
    "lock_timeout_ms",
    "statement_timeout_ms",
    "max_attempts",
    "wait_for_blockers_s",
    "terminate_blockers_after_s",
    "blocker_threshold_ms",
    "backfill_batch_ms",
    "backfill_rows_per_s",
    "backfill_pause_ms",
    "max_replica_lag_ms",
    "backfill_wal_mb_per_s",
    "backfill_flush_from_mb",
    "fail_on_not_run",
)

_HOW = """Run the cells from the top, one at a time. Each **step cell** runs one step of the plan alone, under
everything `runbook apply` does: the migration lock for that step only (no lock and no transaction stays open
between cells, so you can stop here for the night, or finish from a terminal with `{finish}`), a look for
blocking sessions before asking for a lock, `lock_timeout` with retries, the live guard, and the step's progress
in runbook's ledger inside the step's own transaction.

A cell is safe to run again: a step already done says when and by whom, and changes nothing; a step run before
the one it needs is refused, naming it. After a restart, *Restart kernel and run all* goes on from where the
ledger says. Nothing outside a step cell changes the database."""


def _literal(value: object) -> str:
    return repr(value)


def _sql_block(sql: str) -> str:
    return "```sql\n" + sql.strip() + "\n```"


def _step_markdown(card: StepCard, total: int, level: str = "##") -> str:
    return (
        f"{level} Step {card.number} of {total}: {card.purpose}\n\n{card.does}\n\n{_sql_block(card.sql)}\n\n"
        f"- **Locks**: {card.locks}\n- **Estimate**: {card.estimate}"
    )


def _pause_markdown(card: StepCard, level: str = "###") -> str:
    return (
        f"{level} Pause before step {card.number}\n\nThe notebook stops here because {card.pause}. The cell below "
        "says what is already enforced and what the next step will do, and records in the ledger that the run is "
        'waiting. Approve with its button, or with `stepwise.approve(pause, by="your name")`; the next step '
        'refuses until the approval is in the ledger. With `approve = "all"` the pause passes, and that is '
        "recorded too."
    )


class _Cells:
    """The cells of a notebook being written, each with its id and tags."""

    def __init__(self) -> None:
        self.cells: list = []

    def add(self, kind: str, source: str, cell_id: str, tags: tuple[str, ...] = ()) -> None:
        from nbformat.v4 import new_code_cell, new_markdown_cell  # start-up time: only `runbook notebook` writes one

        cell = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
        cell["id"] = cell_id
        if tags:
            cell.metadata["tags"] = list(tags)
        self.cells.append(cell)

    def parameters(self, run_dir: Path, options: Options, *, rollback: bool) -> None:
        params = [
            f"run_dir = {_literal(str(run_dir))}  # this notebook's run folder: its plan (runbook.json) and records",
            "database_url = None  # leave None: the database comes from DATABASE_URL, so no password lands here",
            'approve = None  # None: stop at each pause until someone approves it; "all": pass every pause (recorded)',
        ]
        if rollback:
            params.append(
                "rollback = False  # True: run the Rollback section's cells (undo the batch, a step per cell)"
            )
        params += [f"{name} = {_literal(getattr(options, name))}" for name in OPTION_NAMES]
        self.add("code", "\n".join(params), "parameters", ("parameters",))

    def steps(self, plan: BookPlan, call: str, prefix: str = "", level: str = "##") -> None:
        """A pause cell before the steps that have one, and a section and a cell per step: `call(k)` runs step k."""
        for card in plan.steps:
            if card.pause:
                self.add("md", _pause_markdown(card, level + "#"), f"{prefix}pause-{card.number:02d}-md")
                self.add(
                    "code",
                    f"pause = {call.replace('step(', 'pause(')}{card.number})\npause",
                    f"{prefix}pause-{card.number:02d}",
                    ("approve",),
                )
            self.add("md", _step_markdown(card, len(plan.steps), level), f"{prefix}step-{card.number:02d}-md")
            self.add("code", f"{call}{card.number})", f"{prefix}step-{card.number:02d}", ("step",))

    def write(self, path: Path, metadata: dict) -> Path:
        import nbformat  # start-up time: only `runbook notebook` writes one
        from nbformat.v4 import new_notebook  # start-up time, as above

        notebook = new_notebook(cells=self.cells)
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        notebook.metadata["language_info"] = {"name": "python"}
        notebook.metadata["runbook"] = metadata
        nbformat.write(notebook, str(path))
        return path


def _options_call(prefix: str) -> str:
    arguments = ", ".join(f"{name}={name}" for name in OPTION_NAMES)
    return f"{prefix}(run_dir, database_url=database_url, approve=approve, {arguments})"


def build(plan: BookPlan, run_dir: Path, options: Options) -> Path:
    """The notebook for `plan`, whose records go to `run_dir`."""
    number, steps = plan.batch.number, plan.steps
    nb = _Cells()
    add = nb.add
    add(
        "md",
        f"# Batch {number}: {plan.batch.title}\n\nA runbook notebook for `{plan.batch.name}` "
        f"({plan.strategy} strategy, {len(steps)} step(s)), written {plan.written_at}.\n\n"
        + _HOW.format(finish=f"runbook apply {number} --strategy {plan.strategy}"),
        "intro",
    )
    nb.parameters(run_dir, options, rollback=True)
    add(
        "md",
        "## Target and plan\nThe database (URL with the password redacted), the batch, and the steps with "
        "their locks, estimates and pauses.",
        "target-md",
    )
    add(
        "code",
        "from runbook_lib.phases import stepwise\n\nbook = " + _options_call("stepwise.open_book") + "\nbook",
        "target",
    )
    add(
        "md",
        "## Preflight\nRead-only, ending in a verdict (GO, WARN, NO-GO); NO-GO fails this cell unless `force = True`.",
        "preflight-md",
    )
    add("code", "preflight = book.preflight()\npreflight.verdict_frame()", "preflight")
    if plan.strategy != ONLINE and plan.online_steps > len(steps):
        add(
            "md",
            f"With the **direct** strategy this batch is {len(steps)} transaction(s), so {len(steps)} step(s). "
            f"Its online plan has {plan.online_steps} steps (NOT VALID constraints validated while writes go "
            f"on, data changes in batches): `runbook notebook {number} --strategy online` writes that "
            "notebook.",
            "direct-note",
        )
    nb.steps(plan, "book.step(")
    add(
        "md",
        "## Validation\nWhat the database now enforces: the declared checks and validation.sql, every test "
        "rolled back.",
        "validate-md",
    )
    add("code", "validation = book.validate()\nvalidation.tests_frame()", "validate")
    add("code", "validation.raise_for_failures()\nvalidation.headline", "validate-outcome")
    add(
        "md",
        "## Summary\n`summary.html` and `summary.md` in the run folder, as `runbook run` makes them, with "
        "the pauses and approvals in the timeline.",
        "summary-md",
    )
    add("code", "book.summary()", "summary")
    add(
        "md",
        "## Rollback\nrollback.sql, a cell per step, **not run unless `rollback = True`** (or run "
        f"`runbook rollback {number}` from a terminal).",
        "rollback-md",
    )
    for card in plan.rollback_steps:
        add(
            "md",
            f"### Rollback step {card.number} of {len(plan.rollback_steps)}: {card.purpose}\n\n"
            f"{_sql_block(card.sql)}\n\n- **Locks**: {card.locks}",
            f"rollback-{card.number:02d}-md",
        )
        add("code", f"book.rollback_step({card.number}, run=rollback)", f"rollback-{card.number:02d}", ("rollback",))
    if not plan.rollback_steps:
        add("md", f"Batch {number} has no rollback.sql.", "rollback-none")
    return nb.write(run_dir / NOTEBOOK, {"batch": number, "strategy": plan.strategy, "phase": names.APPLY})


def build_release(written: ReleaseWritten, run_dir: Path, options: Options) -> Path:
    """The notebook of a release (`runbook notebook pending`): a section per migration, in order, each with its
    preflight, its steps and its validation; then the release's summary."""
    plan, migrations = written.plan, written.migrations
    nb = _Cells()
    add = nb.add
    listed = "\n".join(f"- migration {m.batch.number}: `{m.batch.name}`, {len(m.steps)} step(s)" for m in migrations)
    add(
        "md",
        f"# Release: {written.release.label}\n\nA runbook notebook for every migration pending on "
        f"`{plan.database}` when it was written ({plan.written_at}), {plan.strategy} strategy, in order:\n\n"
        f"{listed}\n\n" + _HOW.format(finish="runbook deploy") + "\n\nA migration's cells refuse while a "
        "migration before it in this release is not applied.",
        "intro",
    )
    nb.parameters(run_dir, options, rollback=False)
    add(
        "md",
        "## Target and plan\nThe database (URL with the password redacted), the release, and each migration's "
        "steps and pauses.",
        "target-md",
    )
    add(
        "code",
        "from runbook_lib.phases import releasebook, stepwise\n\nrelease = "
        + _options_call("releasebook.open_release")
        + "\nrelease",
        "target",
    )
    for m in migrations:
        n = m.batch.number
        prefix = f"m{n:04d}-"
        add(
            "md",
            f"## Migration {n}: {m.batch.title}\n\n`{m.batch.name}`, {len(m.steps)} step(s)."
            + (
                ""
                if m.strategy == ONLINE or m.online_steps <= len(m.steps)
                else f" Its online plan has {m.online_steps} steps (`--strategy online`)."
            ),
            f"{prefix}md",
        )
        add("code", f"release.preflight({n}).verdict_frame()", f"{prefix}preflight")
        nb.steps(m, f"release.step({n}, ", prefix, level="###")
        add("code", f"validation = release.validate({n})\nvalidation.tests_frame()", f"{prefix}validate")
        add("code", "validation.raise_for_failures()\nvalidation.headline", f"{prefix}validate-outcome")
    add(
        "md",
        "## Summary\n`summary.html` and `summary.md` in the release's run folder, as `runbook deploy` makes "
        "them, with the pauses and approvals in each migration's timeline.",
        "summary-md",
    )
    add("code", "release.summary()", "summary")
    add(
        "md",
        "## Rollback\nA release is undone a migration at a time, the newest first: `runbook rollback N` from a "
        "terminal, or `runbook notebook N` for an applied migration's own notebook and its Rollback "
        "section.",
        "rollback-md",
    )
    return nb.write(
        run_dir / NOTEBOOK, {"batch": PENDING, "strategy": plan.strategy, "phase": names.APPLY, "release": plan.batches}
    )
