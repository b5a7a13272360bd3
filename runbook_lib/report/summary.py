"""The migration summary, built only from the run's records: every figure in it was measured in that run."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from runbook_lib import config, names
from runbook_lib.batch import ROLLBACK, find
from runbook_lib.batch.blocks import BlockResult
from runbook_lib.batch.model import BatchInfo
from runbook_lib.db import catalog, embedded
from runbook_lib.db import connection as database_mod
from runbook_lib.display import markdown as md
from runbook_lib.display.markdown import Section
from runbook_lib.errors import RunbookError
from runbook_lib.orm import prisma_generate, prisma_impact, prisma_models
from runbook_lib.orm import prisma_schema as orm
from runbook_lib.report import records
from runbook_lib.report.chart import timeline_svg
from runbook_lib.report.records import (
    ExecutionResult,
    PreflightResult,
    ValidationResult,
)

_R = TypeVar("_R")


@dataclass
class Summary:
    run_dir: Path
    batch_number: int
    preflight: PreflightResult | None
    apply: ExecutionResult | None
    validate: ValidationResult | None
    rollback: ExecutionResult | None
    run: records.RunRecord | None = None

    # -- facts --------------------------------------------------------------------------------
    @property
    def batch(self) -> BatchInfo:
        for rec in (self.apply, self.preflight, self.validate, self.rollback):
            if rec is not None:
                return rec.batch
        raise RunbookError(f"The run folder {self.run_dir} holds no phase record; run a phase into it first.")

    @property
    def connection(self) -> database_mod.ConnectionFacts | None:
        for rec in (self.apply, self.preflight, self.validate, self.rollback):
            if rec is not None:
                return rec.connection
        return None

    @property
    def status(self) -> str:
        failure = self.run.failure if self.run else None
        if failure is not None:
            if (
                failure.phase == names.PREFLIGHT
                and self.preflight is not None
                and self.preflight.verdict.status == names.NOGO
            ):
                return names.NOGO
            assert self.run is not None  # the failure is the run record's
            if self.run.rolled_back:
                return "ROLLED BACK"
            return "FAILED"
        if self.apply is not None and self.apply.status == names.FAILED:
            return "FAILED"
        if self.preflight is not None and self.preflight.verdict.status == names.NOGO and self.apply is None:
            return names.NOGO
        if self.validate is not None and not self.validate.ok:
            return "FAILED"
        if self.rollback is not None and self.rollback.status == names.ROLLED_BACK:
            return "ROLLED BACK"
        if self.apply is not None and self.apply.status == names.DRY_RUN:
            return "DRY RUN"
        if self.apply is not None and self.validate is not None and self.validate.ok:
            return "COMPLETED"
        return "INCOMPLETE"

    # -- sections -----------------------------------------------------------------------------
    def header(self) -> Section:
        b = self.batch
        conn = self.connection
        started = min((r.started_at for r in (self.preflight, self.apply, self.validate) if r), default="")
        rows = [
            ("Date", started[:19].replace("T", " ") + " UTC" if started else ""),
            ("Status", self.status),
            ("Type", b.type),
            ("Batch", f"{b.number}: {b.title}"),
            ("Database", f"{conn.database} on PostgreSQL {conn.server_version}" if conn else ""),
            ("URL", conn.url if conn else ""),
            ("Run", self.run_dir.name),
        ]
        rows += _run_by(self.run, conn)
        failure = self.run.failure if self.run else None
        if failure is not None:
            where = f"cell {failure.cell_index}" if failure.cell_index is not None else "the kernel"
            rows.append(("Stopped at", f"{failure.phase}, {where} of {failure.notebook}"))
            rows.append(("Error", f"{failure.error_name}: {failure.error_message}"))
        if self.run is not None and self.run.rolled_back:
            rows.append(("Rolled back", "validation failed, so the batch was rolled back (--rollback-on-failure)"))
        body = md.table(["", ""], rows)
        return Section(f"Batch {b.number} Migration Summary: {self.status}", body, level=1)

    def what_was_done(self) -> Section:
        b = self.batch
        lines = [md.text(b.title) + "."]
        readme = Path(b.path, "README.md")
        if readme.exists():
            first = next(
                (
                    p
                    for p in readme.read_text(encoding="utf-8").split("\n\n")
                    if p.strip() and not p.lstrip().startswith("#")
                ),
                "",
            )
            if first:  # the author's prose, as written (its HTML escaped)
                lines.append(md.prose(" ".join(first.split())))
        statements = self.preflight.statements if self.preflight else []
        if statements:
            lines.append(
                md.table(
                    ["#", "Statement", "Lock"],
                    [(s.index, s.kind, s.lock_summary or "no table lock") for s in statements],
                )
            )
        return Section("What Was Done", "\n\n".join(lines))

    def changes(self) -> Section:
        if self.apply is None:
            return Section("Changes Applied", "Not applied in this run.")
        parts = []
        rows = self.apply.row_changes() if self.apply.succeeded else []
        batched = [b for b in self.apply.backfills if b.rows]
        if rows or batched:  # a backfill's effect, which the catalog's changes do not show
            parts.append(
                ("Rows, rolled back with the dry run" if self.apply.dry_run else "Rows changed")
                + " (measured: each statement's row count):"
            )
            parts.append("\n".join([f"- {md.text(r)}" for r in rows] + [f"- {md.text(b.changed)}" for b in batched]))
        if not self.apply.changes:
            parts.append(f"No catalog change ({md.text(self.apply.status)}).")
            return Section("Changes Applied", "\n\n".join(parts))
        for n, change in enumerate(self.apply.changes, start=1):
            parts.append(f"### {n}. {md.text(change.table)}: {md.text(change.object)} ({change.change})")
            parts.append("**Before**:\n\n" + (md.block(change.before) if change.before else "*absent*"))
            parts.append("**After**:\n\n" + (md.block(change.after) if change.after else "*absent*"))
        return Section("Changes Applied", "\n\n".join(parts))

    def preflight_checks(self) -> Section:
        p = self.preflight
        if p is None:
            return Section("Pre-flight Checks", "No preflight record in this run.")
        body = [f"**Verdict**: {md.text(p.verdict.status)}"]
        if p.verdict.reasons:
            body.append("\n".join(f"- {md.text(r)}" for r in p.verdict.reasons))
        body.append(
            md.table(
                ["Gate", "Expected", "Result", "Status"],
                [(g.name, g.expectation, g.reason if not g.ran else g.observed, g.status) for g in p.gates],
            )
        )
        if p.lock_costs:
            body.append(
                "Estimated write-blocking time, from a measured read of each table "
                f"(threshold {p.lock_threshold_ms:g} ms):"
            )
            body.append(
                md.table(
                    ["#", "Statement", "Table", "Lock", "Rows", "Estimate", "Method"],
                    [
                        (
                            c.statement_index,
                            c.kind,
                            c.table,
                            c.mode,
                            c.rows_estimate,
                            f"{c.estimate_ms:.1f} ms",
                            c.method,
                        )
                        for c in p.lock_costs
                    ],
                )
            )
        if p.backfills:
            body.append(
                "Data statements with --strategy online (batched by keyset, or run in one transaction, and why):"
            )
            body.append(
                md.table(
                    ["#", "Statement", "Table", "Batched", "Why"],
                    [(c.statement_index, c.kind, c.table, "yes" if c.batched else "no", c.reason) for c in p.backfills],
                )
            )
        if p.blockers:
            body.append(
                md.table(
                    ["Blocking session", "Application", "State", "Reason"],
                    [(b.pid, b.application, b.state, b.reason) for b in p.blockers],
                )
            )
        if p.lint is not None and p.lint.available and p.lint.findings:
            body.append(
                md.table(
                    ["Statement", "squawk rule", "Message"],
                    [(f.statement_index, md.text(f.rule), md.text_with_code(f.message)) for f in p.lint.findings],
                    raw_columns=(1, 2),
                )
            )
        deps = ", ".join(f"batch {n}: {'applied' if ok else 'NOT applied'}" for n, ok in p.ledger.dependencies)
        if deps:
            body.append(f"Dependencies: {md.text(deps)}")
        return Section("Pre-flight Checks", "\n\n".join(body))

    def validation_results(self) -> Section:
        v = self.validate
        if v is None:
            return Section("Validation Results", "No validation in this run.")
        parts = []
        for n, t in enumerate(v.tests, start=1):
            lines = [
                f"**Test {n}: {md.text(t.name)}**",
                "",
                f"- Attempted: {md.code(t.sql)}",
                f"- Expected: {md.text(t.expectation)}",
                f"- Result: {t.status}: {md.text(t.observed if t.ran else t.reason)}",
            ]
            if t.also_from:  # one behaviour, one test: the same check derived from migration.sql was merged in
                lines.append(f"- From: {md.text(t.sources)}")
            if t.message:
                lines.append(f"- Server: {md.text(t.sqlstate)} {md.text(t.message)}")
            parts.append("\n".join(lines))
        if not v.tests:
            parts.append("No tests: no derived tests (nothing in migration.sql to derive one from) and none declared.")
        if v.derived_notes:
            parts.append(
                "**Not derived from migration.sql**:\n\n" + "\n".join(f"- {md.text(n)}" for n in v.derived_notes)
            )
        return Section("Validation Results", "\n\n".join(parts))

    def test_summary(self, *, passed_listed: bool = True) -> Section:
        """Every test, PASS, FAIL or NOT RUN; in a release (`passed_listed` False) only those that did not pass,
        with the count of those that did: a release of hundreds of migrations runs tens of thousands of tests, and
        each migration's validate.json keeps every one with its SQL."""
        v = self.validate
        if v is None:
            return Section("Test Summary", "No validation in this run.")
        rows = [
            (n, t.name, "derived" if t.derived else "declared", t.status)
            for n, t in enumerate(v.tests, start=1)
            if passed_listed or not t.passed
        ]
        if passed_listed:
            body = md.table(["Test", "Description", "Origin", "Result"], rows) if rows else "No tests."
        else:
            listed = f"{v.passed} passed, each with its SQL in {md.text(self.run_dir.name)}/validate.json"
            body = (
                md.table(["Test", "Description", "Origin", "Result"], rows) + f"\n\nThe other {listed}."
                if rows
                else f"No test failed: {listed}."
                if v.tests
                else "No tests."
            )
        body += f"\n\n**Overall**: {v.headline}"
        if v.not_run:
            body += "\n\n" + _not_run(v.not_run, [n for n, t in enumerate(v.tests, start=1) if not t.ran])
        if v.leftover_rows:
            body += f"\n\nWARNING: the tests left {v.leftover_rows} rows behind."
        return Section("Test Summary", body)

    def database_state(self) -> Section:
        a = self.apply
        if a is None or a.before is None:
            return Section("Database State", "Not applied in this run.")
        rows = []
        for before in a.before.tables:
            after = a.after.table(before.name) if a.after else None
            for col in before.columns:
                new = after.column(col.name) if after else None
                if new is None or new.ddl != col.ddl:
                    rows.append((f"{before.name}.{col.name}", _nullability(col), _nullability(new)))
                    rows.append(
                        (
                            f"{before.name}.{col.name} coverage",
                            _coverage(col, before.rows),
                            _coverage(new, after.rows if after else 0),
                        )
                    )
            rows.append((f"{before.name} rows", _count(before), _count(after) if after else ""))
            rows.append((f"{before.name} size", _bytes(before.bytes), _bytes(after.bytes) if after else ""))
        return Section("Database State", md.table(["Item", "Before", "After"], rows))

    def performance(self) -> Section:
        a = self.apply
        if a is None:
            return Section("Performance Impact (measured)", "Not applied in this run.")
        rows = [
            (s.index, s.attempt, s.kind, f"{s.duration_s * 1000:.1f} ms", s.rowcount, s.status, s.locks)
            for s in a.statements
        ]
        body = [md.table(["#", "Attempt", "Statement", "Duration", "Rows", "Status", "Locks taken"], rows)]
        body.append(
            md.table(
                ["Lock held at commit", "Mode", "Blocks writes", "Held"],
                [
                    (h.relation, h.mode, "yes" if h.blocks_writes else "no", f"{(h.held_s or 0) * 1000:.1f} ms")
                    for h in a.locks_before_commit
                ],
            )
        )
        if a.backfills:
            body.append(_backfills(a.backfills))
        queued = (
            f" A lock request that timed out kept writers queued for {a.longest_queue_wait_s * 1000:.1f} ms."
            if a.longest_queue_wait_s
            else ""
        )
        body.append(
            f"Apply took {a.duration_s:.3f} s in {a.attempts} attempt(s) "
            f"(lock_timeout {a.lock_timeout_ms} ms). The longest lock that blocks writes was held "
            f"{a.longest_lock_hold_s * 1000:.1f} ms."
            + queued
            + f" Writes were blocked for at most {a.longest_write_block_s * 1000:.1f} ms in all"
            + " (table locks, and the row locks each transaction held on the rows it changed until its commit)."
        )
        waits = a.blocker_lines()
        if waits:  # whom apply waited for rather than queue behind, and whom it terminated (opt-in)
            body.append("Blocking sessions: " + waits[0] + ".\n\n" + "\n".join(f"- {line}" for line in waits[1:]))
        return Section("Performance Impact (measured)", "\n\n".join(body))

    def timeline(self) -> Section:
        events = []
        for name, rec in (("Pre-flight check", self.preflight), ("Validation", self.validate)):
            if rec is not None:
                events.append((_ts(rec.started_at), rec.duration_s, name, _outcome(name, rec)))
        if self.apply is not None:
            base = _ts(self.apply.statements_started_at or self.apply.started_at)
            for s in self.apply.statements:
                events.append((base + s.started_offset_s, s.duration_s, f"{s.kind} (statement {s.index})", s.status))
            for a in self.apply.approvals:  # a runbook notebook's pauses: the time a person took to decide
                start = _ts(a.waiting_since or a.approved_at)
                events.append(
                    (
                        start,
                        a.waited_s,
                        f"Pause before step {a.step}" + (f" ({a.reason})" if a.reason else ""),
                        f"approved by {a.by} ({a.how})",
                    )
                )
            label = (
                "Apply (its steps' own time, one cell each; the time between cells not counted)"
                if self.apply.stepped
                else "Apply (total, incl. checks and snapshots)"
            )
            events.append((_ts(self.apply.started_at), self.apply.duration_s, label, self.apply.status))
        if not events:
            return Section("Migration Timeline", "No phase ran.")
        t0 = min(e[0] for e in events)
        events.sort(key=lambda e: (e[0], -e[1]))
        rows = [(f"T+{e[0] - t0:.3f}s", f"{e[1] * 1000:.1f} ms", e[2], e[3]) for e in events]
        end = max(e[0] + e[1] for e in events)
        return Section(
            "Migration Timeline",
            md.table(["Time", "Duration", "Action", "Result"], rows)
            + f"\n\n**Total duration**: {end - t0:.3f} s (measured)",
        )

    def constraint_behaviour(self) -> Section:
        v = self.validate
        if v is None:
            return Section("Constraint Behavior", "No validation in this run.")
        rejected = [
            t for t in v.tests if t.passed and t.expectation.startswith("error")
        ]  # a test not run proved nothing
        allowed = [t for t in v.tests if t.passed and t.expectation == "ok"]
        parts = ["### What is now REJECTED"]
        parts += [
            f"{n}. **{md.text(t.name)}**\n\n{md.block(t.sql)}\n\nServer: {md.text(t.sqlstate)} {md.text(t.message)}"
            for n, t in enumerate(rejected, start=1)
        ] or ["Nothing was tested to be rejected."]
        parts.append("### What is still ALLOWED")
        parts += [
            f"{n}. **{md.text(t.name)}**\n\n{md.block(t.sql)}\n\nResult: {md.text(t.observed)}"
            for n, t in enumerate(allowed, start=1)
        ] or ["Nothing was tested to be allowed."]
        return Section("Constraint Behavior", "\n\n".join(parts))

    def model_updates(self) -> prisma_models.ModelUpdates | None:
        """The Prisma models the batch changed, before and after (None: no schema.prisma, or nothing applied)."""
        if self.apply is None or self.apply.before is None or self.apply.after is None:
            return None
        return _model_updates(self.apply.before, self.apply.after, self._schema_path())

    def _schema_path(self) -> Path | None:
        """The schema.prisma validation compared, else the batch's own or its project's."""
        if self.validate is not None and self.validate.prisma_schema:
            return Path(self.validate.prisma_schema)
        try:
            return orm.find(find(Path(self.batch.path).parent, self.batch.number))
        except RunbookError:
            return None

    def prisma_schema(self) -> Section:
        """The reference document's "Prisma Schema Updates": each changed model before and after, its types,
        optionality, keys and referential actions measured from the catalog, its names from schema.prisma."""
        updates = self.model_updates()
        if updates is None:
            if self.validate is None:
                return Section("Prisma Schema Updates", "No validation in this run.")
            return self.validate.orm_section()
        return Section(
            "Prisma Schema Updates", prisma_models.updates_markdown(updates) + "\n\n" + _regeneration(self.run_dir)
        )

    def application_impact(self) -> Section:
        """What the regenerated Prisma Client's types and errors become, from the models before and after."""
        return _impact_section(self.model_updates())

    def timeline_chart(self) -> Section | _Svg:
        """The apply's statements on a time axis, each bar marked with the lock it took (an image)."""
        if self.apply is None or not self.apply.statements:
            return Section("Timeline Chart", "No statement ran.", level=3)
        return _Svg(timeline_svg(self.apply))

    def rollback_procedure(self) -> Section:
        b = self.batch
        path = Path(b.path) / ROLLBACK
        body = [md.block(f"runbook rollback {b.number}", "bash")]
        body.append(md.block(path.read_text(encoding="utf-8")) if path.exists() else "This batch has no rollback.sql.")
        if self.rollback is not None:
            body.append(
                f"Rolled back in this run: {md.text(self.rollback.status)} in {self.rollback.duration_s:.3f} s."
            )
        return Section("Rollback Procedure", "\n\n".join(body))

    def files(self) -> Section:
        b = self.batch
        try:
            batch = find(Path(b.path).parent, b.number)
            rows = [(f.name, f.bytes, f.sha256[:16]) for f in batch.files]
        except RunbookError:
            rows = []
        return Section(
            "Files Modified",
            md.table(["File", "Bytes", "sha256 (first 16)"], rows)
            + f"\n\nmigration.sql applied with sha256 {md.code(b.checksum)}",
        )

    def monitoring(self) -> Section:
        b = self.batch
        body = [
            "Re-check every applied batch read-only (from cron or CI; exits non-zero on drift):",
            md.block("runbook check", "bash"),
            "Re-run this batch's tests (in a transaction that is rolled back): "
            f"{md.code(f'runbook validate {b.number}')}",
        ]
        queries = [
            t
            for t in (self.validate.tests if self.validate else [])
            if t.source == "batch.toml" and t.sql.lstrip().upper().startswith("SELECT")
        ]
        if queries:
            body.append("The read-only checks, to run by hand:")
            body.append(
                md.block(";\n\n".join(f"-- {t.name} (expect: {t.expectation})\n{t.sql}" for t in queries) + ";")
            )
        return Section("Monitoring", "\n\n".join(body))

    def authors_notes(self) -> md.Sections:
        """Every `##` section of the batch's README, under the author's own heading: their words, not measured."""
        return md.Sections(
            Section(title, f"*The author's notes, from the batch's README.md:*\n\n{md.prose(body)}")
            for title, body in readme_sections(Path(self.batch.path, "README.md"))
        )

    def closing(self) -> Section:
        """The reference's closing "Summary": what changed and what was proved, each figure from the records."""
        b = self.batch
        lines = [f"**Batch {b.number} {md.text(b.name)}: {md.text(self.status)}**"]
        if self.apply is not None and self.apply.changes:
            lines.append(
                "Changes applied:\n\n"
                + "\n".join(
                    f"- {md.text(c.table)}: {md.text(c.object)} ({md.text(c.change)})" for c in self.apply.changes
                )
            )
        v = self.validate
        if v is not None:
            lines.append(f"Validation: {v.passed}/{v.total} tests passed{v.not_run_note}.")
        if self.apply is not None and self.apply.succeeded:
            lines.append(
                f"Longest write-blocking lock {self.apply.longest_write_block_s * 1000:.1f} ms; "
                f"{self.apply.attempts} attempt(s)."
            )
        return Section("Summary", "\n\n".join(lines))

    def sections(self) -> list[Section]:
        return [
            self.header(),
            self.what_was_done(),
            self.changes(),
            self.preflight_checks(),
            self.validation_results(),
            self.test_summary(),
            self.prisma_schema(),
            self.application_impact(),
            self.database_state(),
            self.performance(),
            self.timeline(),
            self.constraint_behaviour(),
            self.rollback_procedure(),
            self.files(),
            self.monitoring(),
            *self.authors_notes(),
            self.closing(),
        ]

    @property
    def markdown(self) -> str:
        return "\n".join(s.markdown for s in self.sections())


def _model_updates(
    before: catalog.CatalogSnapshot, after: catalog.CatalogSnapshot, schema_path: Path | None
) -> prisma_models.ModelUpdates | None:
    """Only for a Prisma project: one with a schema.prisma to take the names from."""
    if schema_path is None or not schema_path.exists():
        return None
    return prisma_models.updates(before, after, orm.load(schema_path))


def _regeneration(run_dir: Path) -> str:
    """The reference's "Prisma Client Regeneration": what `--prisma-generate` ran and said, or the command to run
    (never output that was not produced). In a release, the record is the release's own, one folder up."""
    record = next(
        (
            r
            for r in (
                records.RunFolder.open(folder).read(prisma_generate.RECORD, prisma_generate.PrismaGenerate)
                for folder in (run_dir, run_dir.parent)
            )
            if r is not None
        ),
        None,
    )
    return f"### {prisma_generate.TITLE}\n\n" + prisma_generate.section_markdown(record, heading=False)


def _impact_section(updates: prisma_models.ModelUpdates | None) -> Section:
    if updates is None:
        return Section("Application Impact", "No schema.prisma: not a Prisma project, or nothing was applied.")
    if not updates.models:
        return Section("Application Impact", "No Prisma model changed: the generated client's types stay as they are.")
    return Section("Application Impact", prisma_impact.impact_markdown(prisma_impact.impact(updates)))


def readme_sections(path: Path) -> list[tuple[str, str]]:
    """(heading, body) of each `##` section of a README, in order; nothing where it has none."""
    if not path.exists():
        return []
    found: list[tuple[str, list[str]]] = []
    fence = None
    for line in path.read_text(encoding="utf-8").splitlines():
        marker = re.match(r"\s*(`{3,}|~{3,})", line)
        if marker:
            fence = None if fence and marker.group(1).startswith(fence) else (fence or marker.group(1))
        heading = None if fence else re.match(r"##\s+(.+?)\s*#*\s*$", line)
        if heading and not line.startswith("###"):
            found.append((heading.group(1), []))
        elif found:
            found[-1][1].append(line)
    return [(title, "\n".join(body).strip()) for title, body in found if "\n".join(body).strip()]


def _not_run(tests: list[BlockResult], numbers: list[int], migrations: list[int] | None = None) -> str:
    """The tests that were not run, each with why (the server's message when it refused the statement): they
    proved nothing either way, so X/Y leaves them out; `numbers` are their places in the test list."""
    head = ["#", "Test", "Why it was not run"]
    rows: list[tuple[Any, ...]] = [(n, t.name, t.reason or t.observed) for n, t in zip(numbers, tests, strict=True)]
    if migrations is not None:
        head, rows = ["Migration", *head], [(m, *row) for m, row in zip(migrations, rows, strict=True)]
    return (
        f"**Not run** ({len(tests)}): their precondition could not be established, so they proved nothing "
        "either way; X/Y counts only the tests that ran (`--fail-on-not-run` makes a test not run a failure):"
        "\n\n" + md.table(head, rows)
    )


def _run_by(run: records.RunRecord | None, conn: database_mod.ConnectionFacts | None) -> list[tuple[str, str]]:
    """The header's "Run by" row, for an audit: the person (OS user and host) and the database role."""
    if run is None or not run.run_by:  # a record written before run_by was kept
        return []
    return [("Run by", run.run_by + (f", as database role {conn.user}" if conn else ""))]


def _backfills(runs: list[records.BackfillRun]) -> str:
    """Each batched data statement: rows, batches, rows per batch and how long each batch held its rows."""
    rows = [
        (
            b.statement_index,
            f"{b.kind} {b.table}",
            b.key,
            b.status,
            f"{b.rows:,}" + (f" (+{b.rows_before:,} earlier)" if b.rows_before else ""),
            f"{b.batches:,}",
            f"{b.rows_per_batch_median:,.0f} / {b.rows_per_batch_max:,}",
            f"{b.batch_median_s * 1000:.1f} ms / {b.batch_longest_s * 1000:.1f} ms",
            f"{b.row_lock_longest_s * 1000:.1f} ms",
            b.lock_timeouts,
            f"{b.replica_pause_s:.1f} s",
            f"{b.wal_mb:,.0f} MB" + (f", {b.wal_pause_s:.1f} s paused" if b.wal_pause_s else ""),
        )
        for b in runs
    ]
    budgets = sorted({b.wal_mb_per_s for b in runs if b.wal_mb_per_s})
    return (
        "Batched data statements (--strategy online: each batch a transaction of its own, its rows locked until "
        f"its commit; batch time target {runs[0].target_ms} ms):\n\n"
        + md.table(
            [
                "#",
                "Statement",
                "Key",
                "Status",
                "Rows",
                "Batches",
                "rows per batch (median / max)",
                "Batch time (median / longest batch)",
                "Rows locked at most",
                "Lock timeouts",
                "Paused for replicas",
                "WAL written",
            ],
            rows,
        )
        + "".join(f"\n\nWAL paced to at most {budget:,.1f} MB/s (`--batch-wal-mb-per-s`)." for budget in budgets)
        + _written_back(next((b for b in runs if b.flush_from_mb is not None), None))
        + "".join(
            f"\n\nStatement {b.statement_index}: analyzed first, so that each batch is planned for its "
            f"rows: {b.analyzed}."
            for b in runs
            if b.analyzed
        )
        + "".join(f"\n\nStatement {b.statement_index}, after its last batch: {b.vacuumed}." for b in runs if b.vacuumed)
    )


def _written_back(run: records.BackfillRun | None) -> str:
    """Once per migration: from how much WAL on its session flushed what it dirtied (execution.writeback)."""
    if run is None:
        return ""
    if run.flush_kept:
        return (
            f"\n\nFrom {run.flush_from_mb:,.0f} MB of WAL on ({run.flush_threshold}), the pages the session dirtied "
            f"were written back as they went by its own backend_flush_after ({run.flush_setting}), left as it was."
        )
    return (
        f"\n\nFrom {run.flush_from_mb:,.0f} MB of WAL on ({run.flush_threshold}), the session wrote back the "
        f"pages it dirtied as it went (backend_flush_after = {run.flush_setting}), so that the checkpoints the "
        "backfill brought on did not end waiting for them (`--batch-flush-from-mb`; 0: never)."
    )


def _nullability(col: catalog.ColumnInfo | None) -> str:
    if col is None:
        return "absent"
    return f"{col.type} {'NULL' if col.nullable else 'NOT NULL'}"


def _count(table: catalog.TableSnapshot) -> str:
    return str(table.rows) if table.rows_exact else f"about {table.rows} (planner estimate: large table)"


class _Svg:
    """An image output: nbconvert puts it inline in the HTML and writes it beside the Markdown."""

    def __init__(self, data: str) -> None:
        self.data = data

    def _repr_svg_(self) -> str:
        return self.data


def _coverage(col: catalog.ColumnInfo | None, rows: int) -> str:
    if col is None or col.non_null < 0:
        return ""
    percent = 100.0 * col.non_null / rows if rows else 100.0
    return f"{col.non_null}/{rows} rows have a value ({percent:.1f}%)"


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _outcome(name: str, rec: object) -> str:
    if isinstance(rec, PreflightResult):
        return rec.verdict.status
    if isinstance(rec, ValidationResult):
        return rec.headline
    return ""


def load(
    run_dir: str | Path | None = None,
    *,
    batch: int | None = None,
    database: str | None = None,
    reports_dir: str | Path | None = None,
) -> Summary | ReleaseSummary:
    """The summary of a run folder (a batch's or a release's), or of the latest record of each phase for
    this database and batch."""
    if run_dir is not None:
        folder = records.RunFolder.open(run_dir)
        plan = folder.read("release", records.ReleasePlan)
        if plan is not None:
            return load_release(folder, plan)
        found: dict[str, records.RunFolder | None] = {phase: folder for phase in names.RECORD_PHASES}
    else:
        if batch is None or database is None:
            raise RunbookError("Give the summary a run_dir, or both batch and database to find the latest run.")
        root = reports_dir or config.default_reports_dir()
        found = {phase: records.latest_run_with(root, database, batch, phase) for phase in names.RECORD_PHASES}
        latest = found["apply"] or found["preflight"]
        if latest is None:
            raise RunbookError(f"No run of batch {batch} on {database} under {root}; run `runbook run {batch}` first.")
        folder = latest

    def read(phase: str, cls: type[_R]) -> _R | None:
        at = found[phase]
        return at.read(phase, cls) if at else None

    run = records.RunFolder(folder.path).read("run", records.RunRecord) if run_dir is not None else None
    summary = Summary(
        folder.path,
        batch or 0,
        read("preflight", PreflightResult),
        read("apply", ExecutionResult),
        read("validate", ValidationResult),
        read("rollback", ExecutionResult),
        run,
    )
    summary.batch_number = summary.batch.number
    return summary


# --- a release ------------------------------------------------------------------------------------


def _details(title: str, sections: list[Section]) -> str:
    """A collapsed block in the HTML (and in Markdown viewers that honour <details>); the title escaped."""
    inner = "\n".join(Section(sec.title, sec.body, level=4).markdown for sec in sections)
    return f"<details><summary>{md.text(title)}</summary>\n\n{inner}\n\n</details>"


@dataclass
class ReleaseSummary:
    """The summary of a release: one row per migration, release totals, then each migration collapsed.

    Built from the release's run folder alone: release.json (the plan), run.json, and each migration's
    subfolder with its own preflight/apply/validate records. It answers the same calls as `Summary`, so
    one summary notebook serves both; sections with nothing to say for a release return None.
    """

    run_dir: Path
    plan: records.ReleasePlan
    migrations: list[Summary]
    run: records.RunRecord | None = None

    @property
    def connection(self) -> database_mod.ConnectionFacts | None:
        return next((m.connection for m in self.migrations if m.connection is not None), None)

    def _applied(self) -> list[Summary]:
        return [m for m in self.migrations if m.apply is not None and m.apply.status == names.APPLIED]

    @property
    def status(self) -> str:
        if not self.plan.batches:
            return "NOTHING PENDING"
        failure = self.run.failure if self.run else None
        applied = self._applied()
        if any(m.apply is not None and m.apply.status == names.FAILED for m in self.migrations):
            return "FAILED"
        if any(m.validate is not None and not m.validate.ok for m in self.migrations):
            return "FAILED"
        if not applied and any(
            m.preflight is not None and m.preflight.verdict.status == names.NOGO for m in self.migrations
        ):
            return names.NOGO
        if failure is not None:
            return "FAILED"
        if len(applied) == len(self.plan.batches) and all(m.validate is not None for m in applied):
            return "COMPLETED"
        return "INCOMPLETE"

    def _rows(self) -> list[tuple]:
        rows = []
        for info in self.plan.batches:
            m = next((m for m in self.migrations if m.batch_number == info.number), None)
            a = m.apply if m else None
            v = m.validate if m else None
            rows.append(
                (
                    info.number,
                    info.name,
                    a.status if a else "not applied",
                    f"{a.duration_s:.3f} s" if a else "",
                    a.attempts if a else "",
                    f"{a.longest_write_block_s * 1000:.1f} ms" if a else "",
                    f"{v.passed}/{v.total}{v.not_run_note}" if v else "",
                )
            )
        return rows

    def header(self) -> Section:
        conn = self.connection
        applied = self._applied()
        first, last = (self.plan.batches[0], self.plan.batches[-1]) if self.plan.batches else (None, None)
        rows = [
            ("Date", self.plan.created_at[:19].replace("T", " ") + " UTC"),
            ("Status", self.status),
            ("Type", "Release: every pending migration, in order"),
            (
                "Migrations",
                f"{len(self.plan.batches)}: {first.number} ({first.name}) to {last.number} ({last.name})"
                if first and last
                else "none pending",
            ),
            ("Applied", f"{len(applied)} of {len(self.plan.batches)}"),
            ("Database", f"{conn.database} on PostgreSQL {conn.server_version}" if conn else ""),
            ("URL", conn.url if conn else ""),
            ("Run", self.run_dir.name),
        ]
        rows += _run_by(self.run, conn)
        failure = self.run.failure if self.run else None
        if failure is not None:
            rows.append(("Stopped at", f"{failure.phase}: {failure.error_name}: {failure.error_message}"))
        return Section(f"Release Migration Summary: {self.status}", md.table(["", ""], rows), level=1)

    def what_was_done(self) -> Section:
        rows = self._rows()
        applied = self._applied()
        passed = sum(m.validate.passed for m in self.migrations if m.validate)
        total = sum(m.validate.total for m in self.migrations if m.validate)
        not_run = sum(len(m.validate.not_run) for m in self.migrations if m.validate)
        seconds = sum(m.apply.duration_s for m in self.migrations if m.apply)
        longest = max((m.apply.longest_write_block_s for m in self.migrations if m.apply), default=0.0)
        body = md.table(["#", "Migration", "Status", "Duration", "Lock attempts", "Longest write block", "Tests"], rows)
        body += (
            f"\n\n**Release totals**: {len(applied)}/{len(self.plan.batches)} migrations applied in "
            f"{seconds:.3f} s; tests {passed}/{total} passed"
            + (f", {not_run} not run" if not_run else "")
            + "; longest write-blocking lock "
            f"{longest * 1000:.1f} ms."
        )
        if self.plan.skipped:
            body += "\n\nSkipped folders (no migration.sql): " + ", ".join(md.text(n) for n in self.plan.skipped)
        return Section("What Was Done", body)

    def changes(self) -> Section:
        if not self.migrations:
            return Section("Each Migration", "Nothing was pending.")
        blocks = []
        for m in self.migrations:
            status = m.apply.status if m.apply else "not applied"
            v = m.validate
            tests = f", tests {v.passed}/{v.total}{v.not_run_note}" if v else ""
            approved = _approvals(m.apply) if m.apply else None
            blocks.append(
                _details(
                    f"{m.batch_number} {m.batch.name}: {status}{tests}",
                    [
                        m.what_was_done(),
                        *([approved] if approved else []),
                        m.changes(),
                        m.test_summary(passed_listed=False),
                        *m.authors_notes(),
                    ],
                )
            )
        return Section("Each Migration", "\n\n".join(blocks))

    def preflight_checks(self) -> Section:
        verdicts = [m.preflight.verdict for m in self.migrations if m.preflight]
        worst = names.worst_verdict(v.status for v in verdicts) or names.GO
        rows = [
            (m.batch_number, m.batch.name, m.preflight.verdict.status, "; ".join(m.preflight.verdict.reasons))
            for m in self.migrations
            if m.preflight and m.preflight.verdict.status != names.GO
        ]
        when = (
            "each before its own first step, in a runbook notebook"
            if any(m.apply and m.apply.stepped for m in self.migrations)
            else "before the first was applied"
        )
        body = f"**Release verdict**: {worst} ({len(verdicts)} migrations checked {when})"
        if rows:
            body += "\n\n" + md.table(["#", "Migration", "Verdict", "Reasons"], rows)
        return Section("Pre-flight Checks", body)

    def validation_results(self) -> Section:
        failed = [
            (m.batch_number, t.name, t.expectation, t.observed)
            for m in self.migrations
            if m.validate
            for t in m.validate.failures
        ]
        if not failed:
            ran = "that ran " if any(m.validate.not_run for m in self.migrations if m.validate) else ""
            return Section("Validation Results", f"Every test {ran}of every applied migration passed.")
        return Section("Validation Results", md.table(["#", "Failing test", "Expected", "Got"], failed))

    def test_summary(self) -> Section:
        validated = [(m, m.validate) for m in self.migrations if m.validate]
        passed = sum(v.passed for _, v in validated)
        total = sum(v.total for _, v in validated)
        percent = round(100.0 * passed / total, 1) if total else 0.0
        body = f"**Overall**: {passed}/{total} tests passed ({percent:g}%) over {len(validated)} migrations"
        skipped = [(m.batch_number, n, t) for m, v in validated for n, t in enumerate(v.tests, start=1) if not t.ran]
        if skipped:
            body += f"; {len(skipped)} not run\n\n" + _not_run(
                [t for _, _, t in skipped], [n for _, n, _ in skipped], [b for b, _, _ in skipped]
            )
        return Section("Test Summary", body)

    def performance(self) -> Section:
        applied = [(m, m.apply) for m in self.migrations if m.apply]
        if not applied:
            return Section("Performance Impact (measured)", "Nothing was applied in this run.")
        slowest, slow = max(applied, key=lambda pair: pair[1].duration_s)
        blocking, block = max(applied, key=lambda pair: pair[1].longest_write_block_s)
        body = (
            f"Apply took {sum(a.duration_s for _, a in applied):.3f} s for {len(applied)} migrations "
            f"({sum(a.attempts for _, a in applied)} lock attempts). The slowest was "
            f"{slowest.batch_number} ({md.text(slowest.batch.name)}), {slow.duration_s:.3f} s; the "
            f"longest write-blocking lock, {block.longest_write_block_s * 1000:.1f} ms, was taken by "
            f"{blocking.batch_number} ({md.text(blocking.batch.name)})."
        )
        return Section("Performance Impact (measured)", body)

    def database_state(self) -> None:
        return None

    def timeline(self) -> None:
        return None

    def timeline_chart(self) -> None:
        return None

    def constraint_behaviour(self) -> None:
        return None

    def model_updates(self) -> prisma_models.ModelUpdates | None:
        """The models the release changed: before its first migration touched each table, after its last did;
        names from the project's schema.prisma (the state after the last migration)."""
        applied = [
            (m, m.apply.before, m.apply.after) for m in self.migrations if m.apply and m.apply.before and m.apply.after
        ]
        if not applied:
            return None
        before: dict[str, catalog.TableSnapshot] = {}
        after: dict[str, catalog.TableSnapshot] = {}
        for _, snap_before, snap_after in applied:
            for table in snap_before.tables:
                before.setdefault(table.name, table)
            for table in snap_after.tables:
                after[table.name] = table
        return _model_updates(
            dataclasses.replace(applied[0][1], tables=tuple(before.values())),
            dataclasses.replace(applied[-1][2], tables=tuple(after.values())),
            applied[-1][0]._schema_path(),
        )

    def prisma_schema(self) -> Section | None:
        updates = self.model_updates()
        if updates is not None:
            return Section("Prisma Schema Updates", prisma_models.updates_markdown(updates))
        last = next((m for m in reversed(self.migrations) if m.validate), None)
        return last.prisma_schema() if last and last.validate and last.validate.prisma_schema else None

    def application_impact(self) -> Section | None:
        updates = self.model_updates()
        return _impact_section(updates) if updates is not None else None

    def rollback_procedure(self) -> Section:
        applied = self._applied()
        lines = [f"runbook rollback {m.batch_number}" for m in reversed(applied)]
        return Section(
            "Rollback Procedure",
            "Newest first, one migration at a time:\n\n"
            + md.block("\n".join(lines) or "# nothing was applied", "bash"),
        )

    def files(self) -> None:
        return None

    def monitoring(self) -> Section:
        return Section("Monitoring", md.block("runbook status\nrunbook check", "bash"))

    def authors_notes(self) -> None:
        return None  # each migration's README sections are in its own collapsed block (Each Migration)

    def closing(self) -> Section:
        """The closing "Summary": how many migrations applied, how many tests passed, from the records."""
        applied = self._applied()
        passed = sum(m.validate.passed for m in self.migrations if m.validate)
        total = sum(m.validate.total for m in self.migrations if m.validate)
        return Section(
            "Summary",
            f"**Release: {md.text(self.status)}**\n\n{len(applied)}/{len(self.plan.batches)} "
            f"migrations applied; validation: {passed}/{total} tests passed.",
        )

    def sections(self) -> list[Section]:
        found = [
            self.header(),
            self.what_was_done(),
            self.changes(),
            self.preflight_checks(),
            self.validation_results(),
            self.test_summary(),
            self.prisma_schema(),
            self.application_impact(),
            self.performance(),
            self.rollback_procedure(),
            self.monitoring(),
            self.closing(),
        ]
        return [s for s in found if s is not None]

    @property
    def markdown(self) -> str:
        return "\n".join(s.markdown for s in self.sections())


def _approvals(applied: records.ExecutionResult) -> Section | None:
    """A runbook notebook's pauses in a migration of a release: who approved each step, how, and how long it waited."""
    if not applied.approvals:
        return None
    rows = [(a.step, a.reason, a.by, a.how, f"{a.waited_s:.1f} s") for a in applied.approvals]
    return Section("Pauses and Approvals", md.table(["Before step", "Why", "Approved by", "How", "Waited"], rows))


def load_release(folder: records.RunFolder, plan: records.ReleasePlan) -> ReleaseSummary:
    run = folder.read("run", records.RunRecord)
    migrations = []
    for child in folder.children():
        if any(child.has(p) for p in names.RECORD_PHASES):
            summary = load(child.path)
            assert isinstance(summary, Summary)  # a migration's subfolder holds no release.json
            migrations.append(summary)
    return ReleaseSummary(folder.path, plan, migrations, run)


def load_for_notebook(
    run_dir: str | Path | None,
    *,
    batch: int | None = None,
    database: str | None = None,
    reports_dir: str | Path | None = None,
) -> Summary | ReleaseSummary:
    """The summary notebook's entry: a run folder, or the latest records for the target database."""
    if run_dir is None and database is None:
        url = config.environment_url()
        database = database_mod.database_name(url) if url else embedded.DEMO_DATABASE
    return load(run_dir, batch=batch, database=database, reports_dir=reports_dir)
