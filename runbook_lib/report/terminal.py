"""What a command prints when it ends: its headline, built from the run folder's records, never from memory.

The run folder is the truth a later `runbook report` renders too, so the terminal reads the same
`<phase>.json` records (a release: release.json and one subfolder per migration). Each function returns
lines; `cli` prints them. Colour only when asked for (a TTY), so piped output and tests read plain text.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook_lib import names
from runbook_lib.report import records

# Colours a verdict or status is painted with on a TTY (ANSI SGR codes).
_COLOURS = {
    names.GO: "32",
    names.WARN: "33",
    names.NOGO: "31",
    names.FAILED: "31",
    "FAIL": "31",
    names.APPLIED: "32",
    names.ROLLED_BACK: "33",
    "ok": "32",
    names.TEST_STATUS[names.NOT_RUN]: "33",
}
# How many rows of a list (catalog changes, failing tests) the terminal shows before "... and N more".
MAX_ROWS = 12


def colour_wanted(stream: Any) -> bool:
    """Colour on a terminal only, and never when NO_COLOR is set (https://no-color.org)."""
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


def paint(text: str, key: str, enabled: bool) -> str:
    code = _COLOURS.get(key)
    return f"\x1b[{code}m{text}\x1b[0m" if enabled and code else text


@dataclass
class FolderRecords:
    """The phase records of one run folder (a batch's, or one migration's inside a release)."""

    path: Path
    preflight: records.PreflightResult | None = None
    apply: records.ExecutionResult | None = None
    validate: records.ValidationResult | None = None
    rollback: records.ExecutionResult | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # each record's JSON data, as written

    @classmethod
    def read(cls, folder: records.RunFolder) -> FolderRecords:
        out = cls(folder.path)
        for phase, tp in records.RECORD_TYPES.items():
            data = folder.read_data(phase)  # each file read and parsed once: a release has hundreds
            record = folder.record_of(phase, tp, data)
            if record is not None:
                setattr(out, phase, record)
                out.raw[phase] = data
        return out


def _cut(items: list[str], indent: str = "    ") -> list[str]:
    shown = [indent + i for i in items[:MAX_ROWS]]
    if len(items) > MAX_ROWS:
        shown.append(f"{indent}... and {len(items) - MAX_ROWS} more (see the summary)")
    return shown


def _one_line(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def preflight_lines(result: records.PreflightResult, tty: bool = False) -> list[str]:
    """The verdict, every reason, then one row per statement: its locks and the estimate of its write block."""
    verdict = result.verdict
    lines = [
        f"preflight: {paint(verdict.status, verdict.status, tty)} (batch {result.batch.number} "
        f"{result.batch.name}, {result.duration_s:.1f} s)"
    ]
    lines += [f"  {paint(verdict.status, verdict.status, tty)}: {reason}" for reason in verdict.reasons]
    if result.statements:
        estimates: dict[int, float] = {}
        for cost in result.lock_costs:
            estimates[cost.statement_index] = max(estimates.get(cost.statement_index, 0.0), cost.estimate_ms)
        rows = [
            (
                str(s.index),
                str(s.line),
                _one_line(s.kind, 28),
                _one_line(s.lock_summary or "no table lock", 100),
                "yes" if s.blocks_writes else "no",
                f"{estimates[s.index]:.1f} ms" if s.index in estimates else "-",
            )
            for s in result.statements
        ]
        lines += _table(("#", "line", "statement", "locks", "blocks writes", "estimate"), rows)
    return lines


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], indent: str = "  ") -> list[str]:
    shown = rows[: MAX_ROWS * 2]
    widths = [max(len(r[i]) for r in [header, *shown]) for i in range(len(header))]
    out = [
        indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *shown]
    ]
    if len(rows) > len(shown):
        out.append(f"{indent}... and {len(rows) - len(shown)} more statement(s) (see the summary)")
    return out


def _written_back(b: records.BackfillRun) -> str:
    own = "the session's own" if b.flush_kept else f"from {b.flush_threshold}"
    return (
        f"from {b.flush_from_mb:,.0f} MB of WAL on, pages it dirtied written back as it went "
        f"(backend_flush_after {b.flush_setting}, {own}), not left to the checkpoints' fsync"
    )


def execution_lines(result: records.ExecutionResult, tty: bool = False) -> list[str]:
    """Apply or rollback: status, steps, attempts, the longest write-blocking lock, duration, what changed."""
    lines = [
        f"{result.phase}: {paint(result.status, result.status, tty)} (batch {result.batch.number} "
        f"{result.batch.name}): {len(result.steps)} step(s), {result.attempts} attempt(s), "
        f"longest write-blocking lock {result.longest_write_block_s * 1000:.1f} ms, {result.duration_s:.2f} s"
    ]
    if result.message and result.status == names.FAILED:
        lines.append(f"  {' '.join(result.message.split())}")  # whole: its end says what stays and what to do
    if result.partly_applied:
        lines.append(f"  undoing a partly applied batch: {result.partly_applied}")
    if result.resumed:
        lines.append(f"  resumed: {result.resumed}")
    lines += [f"  {line}" for line in result.blocker_lines()]
    for b in result.backfills:  # the data statements --strategy online ran in batches
        lines.append(
            f"  batched: statement {b.statement_index} {b.kind} {b.table}: {b.rows:,} rows in {b.batches:,} batches "
            f"(rows per batch median {b.rows_per_batch_median:,.0f}, max {b.rows_per_batch_max:,}; batch median "
            f"{b.batch_median_s * 1000:.1f} ms, longest {b.batch_longest_s * 1000:.1f} ms; WAL {b.wal_mb:,.0f} MB"
            + (f", {b.wal_pause_s:.1f} s paused to keep it to {b.wal_mb_per_s:,.1f} MB/s" if b.wal_pause_s else "")
            + ")"
        )
        if b.flush_from_mb is not None:
            lines.append(f"    {_written_back(b)}")
        if b.vacuum_s:
            lines.append(
                f"    then vacuumed and analyzed {b.table} in {b.vacuum_s:.1f} s, before autovacuum's ANALYZE "
                "could plan queries on its dead index entries"
            )
        elif b.vacuumed:  # due, but not done, and why
            lines.append(f"    {b.vacuumed}")
    rows = result.row_changes()
    if rows and result.succeeded:
        lines.append("  rows, rolled back with the dry run:" if result.dry_run else "  rows:")
        lines += _cut(rows)
    if result.changes:
        lines.append(f"  changed ({len(result.changes)}):")
        lines += _cut([f"{c.table}: {c.change} {c.object}" for c in result.changes])  # object: its kind and name
    elif result.succeeded:
        lines.append("  no catalog change")
    return lines


def validation_lines(result: records.ValidationResult, tty: bool = False) -> list[str]:
    """X/Y and "N not run", then every failing test with what was expected and the server's own message, and
    every test not run with why (its reason holds the server's message when the server refused it)."""
    status = "ok" if result.ok else names.FAILED
    lines = [f"validate: {paint(result.headline, status, tty)}"]
    failing = []
    for t in result.failures:
        said = f" (server: {_one_line(t.message, 160)})" if t.message else ""
        failing.append(f"{paint('FAIL', 'FAIL', tty)} {t.name}: expected {t.expectation}, got {t.observed}{said}")
    not_run = names.TEST_STATUS[names.NOT_RUN]
    failing += [f"{paint(not_run, not_run, tty)} {t.name}: {_one_line(t.reason, 200)}" for t in result.not_run]
    lines += _cut(failing, "  ")
    if result.orm_strict and result.orm_mismatches:
        lines += _cut(
            [
                f"schema.prisma {m.model}.{m.field}: {m.schema_prisma}, database {m.database}"
                for m in result.orm_mismatches
            ],
            "  ",
        )
    return lines


def folder_lines(found: FolderRecords, tty: bool = False) -> list[str]:
    lines: list[str] = []
    if found.preflight:
        lines += preflight_lines(found.preflight, tty)
    if found.apply:
        lines += execution_lines(found.apply, tty)
    if found.validate:
        lines += validation_lines(found.validate, tty)
    if found.rollback:
        lines += execution_lines(found.rollback, tty)
    return lines


def phase_lines(run: records.RunRecord, tty: bool = False) -> list[str]:
    """One line per phase the run executed: ok or FAILED and how long."""
    return [
        f"  {p.phase:<9} "
        + (paint("ok    ", "ok", tty) if p.ok else paint("FAILED", names.FAILED, tty))
        + f" {p.seconds:6.1f} s"
        for p in run.phases
    ]


def release_lines(folder: records.RunFolder, tty: bool = False) -> list[str]:
    """A release: migrations applied X/Y and tests X/Y, then one line per migration."""
    plan = folder.read("release", records.ReleasePlan)
    migrations = [(child.path.name, FolderRecords.read(child)) for child in folder.children()]
    planned = len(plan.batches) if plan else len(migrations)
    applied = sum(
        1 for _, m in migrations if m.apply and m.apply.status in (names.APPLIED, names.ALREADY_APPLIED, names.DRY_RUN)
    )
    passed = sum(m.validate.passed for _, m in migrations if m.validate)
    total = sum(m.validate.total for _, m in migrations if m.validate)
    not_run = sum(len(m.validate.not_run) for _, m in migrations if m.validate)
    drift = plan.drift if plan else []
    # The release's verdict as its preflight gave it: a changed applied migration makes it NO-GO on its own.
    worst = (
        records.ReleasePreflight(plan, [m.preflight for _, m in migrations if m.preflight]).verdict.status
        if plan
        else names.worst_verdict(m.preflight.verdict.status for _, m in migrations if m.preflight)
    )
    worst = worst or names.GO
    lines = [
        f"release: migrations applied {applied}/{planned}, tests {passed}/{total} passed"
        + (f" ({not_run} not run)" if not_run else "")
        + f", preflight {paint(worst, worst, tty)}"
    ]
    for d in drift:  # "migration 7 (name): runbook's ledger recorded ..., the file is now ..."
        which, _, how = d.partition(": ")
        lines.append(
            f"  {paint(names.NOGO, names.NOGO, tty)}: {which}: its migration.sql changed since it was applied"
            + (f" ({how})" if how else "")
            + "; restore the applied file, or write the change as a new migration"
        )
    for name, m in migrations:
        parts = []
        if m.preflight:
            parts.append(paint(m.preflight.verdict.status, m.preflight.verdict.status, tty))
        if m.apply:
            parts.append(paint(m.apply.status, m.apply.status, tty))
        if m.validate:
            parts.append(f"{m.validate.passed}/{m.validate.total} tests{m.validate.not_run_note}")
        title = m.preflight.batch.name if m.preflight else ""
        lines.append(f"  {name} {title:<32} {', '.join(parts)}".rstrip())
        if m.preflight and m.preflight.verdict.status != names.GO:
            lines += [f"      {m.preflight.verdict.status}: {r}" for r in m.preflight.verdict.reasons]
        if m.apply and m.apply.status == names.FAILED:
            lines.append(f"      {' '.join(m.apply.message.split())}")
        if m.validate:
            lines += [line for line in validation_lines(m.validate, tty)[1:]]
    if drift and not applied:
        lines.append("  nothing applied: a release does not build on a history that changed")
    elif plan and plan.empty_folder:
        lines.append(f"  nothing to deploy: {plan.empty_folder} is empty (no migration in it yet)")
    elif not plan or not plan.batches:
        lines.append("  nothing pending: every migration is applied")
    return lines


def outcome_lines(run_dir: Path, tty: bool = False, *, phases: bool = True) -> list[str]:
    """The headline of a run folder: per phase when several ran (unless `phases` is False: the progress has
    just printed those lines on the same screen), then what each phase found."""
    folder = records.RunFolder.open(run_dir)
    run = folder.read("run", records.RunRecord)
    lines: list[str] = []
    if phases and run is not None and sum(1 for p in run.phases if p.phase != names.SUMMARY) > 1:
        lines += phase_lines(run, tty)
    if run is not None and run.release:
        return lines + release_lines(folder, tty)
    return lines + folder_lines(FolderRecords.read(folder), tty)
