"""A migration's state from both histories a database can hold: runbook's ledger and Prisma's.

A project adopted from Prisma has years of `_prisma_migrations` and no runbook ledger; a project run by
runbook records in both. Every question "is migration N applied, with which checksum" is answered here,
once, so apply, preflight, rollback, validate, status, the health check and the fleet agree; where the
two histories disagree the state says so instead of silently trusting one.

Rules: a migration is applied when either history says so (applying it again would fail or double a
change); its checksum is runbook's when runbook recorded it, else Prisma's; a Prisma row that started and
neither finished nor was rolled back blocks every apply, as it blocks `prisma migrate deploy`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

import psycopg

from runbook_lib import names
from runbook_lib.batch.model import Batch
from runbook_lib.db import ledger
from runbook_lib.layouts import detect, prisma
from runbook_lib.layouts.base import GOLANG_MIGRATE, Migration


@dataclass(frozen=True)
class MigrationState:
    """Whether migration `number` is applied, where that comes from, and what the two histories disagree on."""

    number: int
    name: str
    applied: bool
    source: str = ""  # names.SOURCE_RUNBOOK, SOURCE_PRISMA or SOURCE_BOTH; "" when not applied
    checksum: str | None = None
    applied_at: datetime | None = None
    applied_by: str | None = None
    notes: tuple[str, ...] = ()  # disagreements between the histories
    failed_prisma_row: bool = False
    runbook_checksum: str | None = None
    prisma_checksum: str | None = None
    tool: str = ""  # another tool's history (golang-migrate's, Flyway's, Drizzle's), by its label
    tool_checksum: str | None = None  # what that history recorded, in the tool's own checksum (None: it keeps none)

    def drift(self, batch: Batch) -> str:
        """Which history recorded another migration.sql than the folder's ("" when none did)."""
        if not self.applied:
            return ""
        found = []
        if self.runbook_checksum is not None and self.runbook_checksum != batch.checksum:
            found.append(f"{names.SOURCE_RUNBOOK} recorded {self.runbook_checksum}")
        if self.prisma_checksum is not None and not prisma.checksum_matches(
            batch.migration_path.read_bytes(), self.prisma_checksum
        ):
            found.append(f"{names.SOURCE_PRISMA} recorded {self.prisma_checksum}")
        if (
            self.tool_checksum is not None
            and batch.tool is not None
            and batch.tool.checksum
            and self.tool_checksum != batch.tool.checksum
        ):
            found.append(f"{self.tool} recorded checksum {self.tool_checksum} (the file's is {batch.tool.checksum})")
        if not found:
            return ""
        return f"{' and '.join(found)}, the file is now {batch.checksum}"

    @property
    def when(self) -> str:
        return self.applied_at.isoformat(timespec="seconds") if self.applied_at else ""

    @property
    def according(self) -> str:
        """Which history says it is applied, as a sentence says it ("both" alone does not)."""
        if self.source == names.SOURCE_BOTH:
            return f"{names.SOURCE_RUNBOOK} and {self.tool or names.SOURCE_PRISMA}"
        return self.source


@dataclass(frozen=True)
class History:
    """Every migration's merged state, and the failed Prisma rows that stop any apply."""

    states: dict[int, MigrationState] = field(default_factory=dict)
    failed_prisma: tuple[str, ...] = ()  # migration names of failed rows
    prisma_table: bool = False
    blocked: str = ""  # another tool's history says it would go no further (a dirty or failed row), and why

    def state(self, number: int) -> MigrationState:
        return self.states.get(number, MigrationState(number, "", applied=False))

    def applied(self) -> list[int]:
        return sorted(n for n, s in self.states.items() if s.applied)

    def with_applied(self, batch: Batch) -> History:
        """This history after runbook applied `batch` and recorded it: what a release, which holds the migration
        lock (and the tool's) from its first migration to its last, knows without reading both histories again
        before each migration (reading them is a query of every row: a long release would pay it squared)."""
        state = MigrationState(
            batch.number,
            batch.name,
            True,
            names.SOURCE_RUNBOOK,
            checksum=batch.checksum,
            runbook_checksum=batch.checksum,
        )
        return replace(self, states={**self.states, batch.number: state})

    def failed_message(self) -> str:
        """The refusal for a failed Prisma row, with Prisma's own way out; empty when there is none."""
        if not self.failed_prisma:
            return ""
        name = self.failed_prisma[0]
        return (
            f"Prisma's history (_prisma_migrations) shows migration {name} started and never finished, which "
            "stops every migration as it stops `prisma migrate deploy`; fix the database by hand, then run "
            f'`prisma migrate resolve --rolled-back "{name}"` (to run it again) or `prisma migrate resolve '
            f'--applied "{name}"` (if it is in fact applied).'
        )


def _merge(
    number: int, name: str, own: ledger.BatchState | None, rows: list[prisma.PrismaRow], prisma_table: bool
) -> MigrationState:
    """One migration's state from its ledger state (None: never applied or rolled back) and its Prisma rows."""
    live = [r for r in rows if r.applied]
    row = live[-1] if live else None
    failed = any(r.failed for r in rows)
    mine = own if own is not None and own.applied else None  # the ledger's state when it says applied
    by_runbook = mine is not None
    by_prisma = row is not None
    notes: list[str] = []
    if by_runbook and prisma_table and not by_prisma:
        rolled = any(r.rolled_back_at for r in rows)
        notes.append(
            f"{names.SOURCE_RUNBOOK} says applied, {names.SOURCE_PRISMA} "
            + ("has it rolled back" if rolled else "has no finished row for it")
        )
    if by_prisma and own is not None and not own.applied:
        notes.append(f"{names.SOURCE_RUNBOOK} says rolled back, {names.SOURCE_PRISMA} says applied")
    if mine is not None and row is not None and mine.checksum and not _same(mine.checksum, row.checksum):
        notes.append(
            f"checksums differ: {names.SOURCE_RUNBOOK} {mine.checksum[:12]}, {names.SOURCE_PRISMA} {row.checksum[:12]}"
        )
    if failed:
        notes.append(f"{names.SOURCE_PRISMA} has a failed row for it (started, not finished, not rolled back)")
    if mine is not None:
        checksum, applied_at, applied_by = mine.checksum, mine.applied_at, mine.applied_by
    elif row is not None:
        checksum, applied_at, applied_by = row.checksum, row.finished_at, "prisma"
    else:  # neither history says applied
        return MigrationState(number, name, False, notes=tuple(notes), failed_prisma_row=failed)
    source = (
        names.SOURCE_BOTH if by_runbook and by_prisma else (names.SOURCE_RUNBOOK if by_runbook else names.SOURCE_PRISMA)
    )
    return MigrationState(
        number,
        name,
        True,
        source,
        checksum=checksum,
        applied_at=applied_at,
        applied_by=applied_by,
        notes=tuple(notes),
        failed_prisma_row=failed,
        runbook_checksum=mine.checksum if mine is not None else None,
        prisma_checksum=row.checksum if row is not None else None,
    )


def _same(runbook_checksum: str, prisma_checksum: str) -> bool:
    """Both are sha256 hex of the same file; Prisma's may lack zero-padding (early versions)."""
    if runbook_checksum == prisma_checksum:
        return True
    padded = bytes.fromhex(runbook_checksum)
    return "".join(f"{byte:x}" for byte in padded) == prisma_checksum


def read(conn: psycopg.Connection, batches: Iterable[Batch]) -> History:
    """Both histories merged for the folder's batches (Prisma rows match a batch by its folder name).

    Batches runbook's ledger knows but the folder lacks are included under the name the ledger recorded.
    Reading creates nothing.
    """
    batches = list(batches)
    own = ledger.states(conn)
    all_rows = prisma.rows(conn)
    table = bool(all_rows) or prisma.has_table(conn)
    by_name: dict[str, list[prisma.PrismaRow]] = {}
    for row in all_rows:
        by_name.setdefault(row.migration_name, []).append(row)
    states: dict[int, MigrationState] = {}
    for b in batches:
        states[b.number] = _merge(b.number, b.name, own.get(b.number), by_name.get(b.name, []), table)
    for number, st in own.items():
        if number not in states:
            states[number] = _merge(number, st.name, st, by_name.get(st.name, []), table)
    failed = tuple(dict.fromkeys(r.migration_name for r in all_rows if r.failed))
    tools = [b for b in batches if b.tool is not None]
    if not tools:
        return History(states, failed, table)
    blocked = _merge_tool(conn, tools, own, states)
    return History(states, failed, table, blocked)


def _merge_tool(
    conn: psycopg.Connection, batches: list[Batch], own: dict[int, ledger.BatchState], states: dict[int, MigrationState]
) -> str:
    """Another tool's history merged into `states` as Prisma's is: applied when either says so; the tool's
    checksum kept for drift. Returns why the tool would refuse to go on ("" when it would not).

    A dirty or failed row that runbook's own stopped run left is not a block: the ledger knows that run, and
    the next apply resumes it (and writes the tool's row when it commits)."""
    settings = batches[0].settings
    assert settings is not None  # a tool's batches carry its layout's settings (discovery._read_tool)
    history = detect.history(settings)
    migrations = [_tool(b) for b in batches]
    tool_state = history.read(conn, migrations)
    applied = dict(tool_state.applied)
    if settings.layout == GOLANG_MIGRATE:
        if tool_state.blocked and tool_state.last is not None:
            applied.pop(tool_state.last, None)  # dirty: golang-migrate's current version did not finish
        # golang-migrate keeps one row: every version up to it counts as applied, an inference. A version between
        # two that runbook's ledger recorded, which the ledger never recorded itself, was added behind the history
        # (out of order): the tool would skip it forever; runbook says it is pending. (Versions before the first
        # runbook recorded are the adopted history: the inference stands for them.)
        recorded = {s.name for s in own.values() if s.applied}
        ours = [int(_tool(b).version) for b in batches if b.name in recorded]
        if ours:
            for b in batches:
                if min(ours) < int(_tool(b).version) < max(ours) and b.name not in recorded:
                    applied.pop(_tool(b).version, None)
    for b in batches:
        m = _tool(b)
        row = applied.get(m.version or m.name)
        mine = own.get(b.number)
        if mine is not None and mine.name and mine.name != b.name:
            mine = None  # the ledger's row of this position is another file's (a script inserted before it)
        by_runbook = bool(mine and mine.applied)
        if m.kind == "repeatable" and (row is None or row.checksum != m.checksum):
            # Flyway runs a repeatable script again whenever its checksum changed: pending, not drift
            by_runbook = bool(by_runbook and row is None and mine is not None and mine.checksum == b.checksum)
            row = None
        runbook_state = mine if by_runbook else None  # the ledger's state when it counts as applied
        if runbook_state is not None:
            checksum = runbook_state.checksum
            applied_at, applied_by = runbook_state.applied_at, runbook_state.applied_by
        elif row is not None:
            checksum, applied_at, applied_by = row.checksum, row.applied_at, row.applied_by or settings.layout
        else:  # neither history says applied
            states[b.number] = MigrationState(b.number, b.name, False, tool=history.label)
            continue
        source = (
            names.SOURCE_BOTH
            if by_runbook and row is not None
            else (names.SOURCE_RUNBOOK if by_runbook else history.label)
        )
        states[b.number] = MigrationState(
            b.number,
            b.name,
            True,
            source,
            checksum=checksum,
            applied_at=applied_at,
            applied_by=applied_by,
            runbook_checksum=runbook_state.checksum if runbook_state is not None else None,
            tool=history.label,
            tool_checksum=row.checksum if row is not None else None,
        )
    if not tool_state.blocked:
        return ""
    first_pending = next((b for b in batches if not states[b.number].applied), None)
    if first_pending is not None and ledger.stopped(conn, first_pending.number) is not None:
        return ""  # runbook's own run stopped there (and wrote the row): resumed from the ledger
    return tool_state.blocked


def _tool(batch: Batch) -> Migration:
    """The tool's migration of a batch read from a tool's folder (the only batches _merge_tool is given)."""
    assert batch.tool is not None  # read() passes only the batches with a tool migration
    return batch.tool
