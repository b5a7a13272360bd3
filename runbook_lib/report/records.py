"""The run folder and its JSON records: the contract between the phases and the summary.

`reports/<database>/<batch>/<run-id>/` holds each executed notebook, a `<phase>.json` record written
by the phase itself, `run.json`, and the rendered reports. The record types live here together, and
every record carries SCHEMA_VERSION: a summary re-rendered later (`runbook report`) by another
version of runbook reads only what it understands, and says so in one sentence otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import types
import typing
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from runbook_lib import names
from runbook_lib.batch import blocks as sqlblocks
from runbook_lib.batch.model import BatchInfo
from runbook_lib.config import DIRECT
from runbook_lib.db import catalog
from runbook_lib.db.connection import ConnectionFacts
from runbook_lib.errors import (
    PreflightFailed,
    RecordError,
    RunbookError,
    ValidationFailed,
)
from runbook_lib.names import GO, NOGO
from runbook_lib.orm import prisma_history as prisma
from runbook_lib.orm import prisma_schema as orm
from runbook_lib.orm.prisma_schema import OrmMismatch
from runbook_lib.report import frames as tables
from runbook_lib.report.markdown import Section
from runbook_lib.sql.analysis import StatementAnalysis
from runbook_lib.sql.lint import LintResult
from runbook_lib.sql.lockcost import LockCost

T = TypeVar("T")

# The shape of the JSON records. Raise it when a field is renamed, removed or changes meaning (adding a
# field with a default does not need it); `RunFolder.read` refuses any other version in one sentence.
SCHEMA_VERSION = 1


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def to_json(record: Any) -> str:
    data = _jsonable(record)
    if isinstance(data, dict):
        data = {"schema_version": SCHEMA_VERSION, **data}
    return json.dumps(data, indent=2, ensure_ascii=False)


def _build(tp: Any, data: Any) -> Any:
    """Rebuild a value of type `tp` from its JSON form (dataclasses, lists, tuples, optionals)."""
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            try:
                return _build(arg, data)
            except (TypeError, ValueError, KeyError):
                continue
        return data
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        kwargs = {f.name: _build(hints[f.name], data[f.name]) for f in dataclasses.fields(tp) if f.init and f.name in data}
        return tp(**kwargs)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        item = args[0] if args else Any
        items = [_build(item, v) for v in data]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        _, val = typing.get_args(tp) or (Any, Any)
        return {k: _build(val, v) for k, v in data.items()}
    if tp is datetime and isinstance(data, str):
        return datetime.fromisoformat(data)
    if tp is Path:
        return Path(data)
    if tp is float and isinstance(data, int):
        return float(data)
    return data


def from_json(cls: type[T], text: str) -> T:
    return _build(cls, json.loads(text))


def now_iso() -> str:
    """The time records carry: UTC, ISO 8601, milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", part) or "_"


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """`reports/<database>/<batch>/<run-id>/`: one run's executed notebooks, records and reports.

    `write` replaces a record atomically; `read` refuses, in one sentence, a record this version of
    runbook cannot read (another SCHEMA_VERSION, or not JSON).
    """

    """`reports/<database>/<batch>/<run-id>/`: one run's executed notebooks, records and reports.

    `write` replaces a record atomically; `read` refuses, in one sentence, a record this version of
    runbook cannot read (another SCHEMA_VERSION, or not JSON).
    """

    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, reports_dir: Path | str, database: str, batch: int, run_id: str | None = None) -> "RunFolder":
        path = Path(reports_dir) / _safe(database) / str(batch) / (run_id or new_run_id())
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunbookError(
                f"Cannot create the run folder {path} ({exc.strerror}); pass --reports-dir with a writable folder."
            ) from None
        if not os.access(path, os.W_OK):
            raise RunbookError(f"The run folder {path} is not writable; pass --reports-dir with a writable folder.")
        return cls(path)

    @classmethod
    def open(cls, path: Path | str) -> "RunFolder":
        folder = Path(path)
        if not folder.is_dir():
            raise RunbookError(f"Run folder {folder} does not exist; pass the folder a run printed.")
        return cls(folder)

    def record_path(self, phase: str) -> Path:
        return self.path / f"{phase}.json"

    def write(self, phase: str, record: Any) -> Path:
        target = self.record_path(phase)
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(to_json(record), encoding="utf-8")
        tmp.replace(target)  # never a half-written record
        return target

    def read(self, phase: str, cls: type[T]) -> T | None:
        """The record of `phase`, or None when there is none; RecordError when this runbook cannot read it."""
        path = self.record_path(phase)
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RecordError(f"{path} is not a readable JSON record ({exc}); run the phase again to write it anew.") \
                from None
        version = data.get("schema_version", 1) if isinstance(data, dict) else None  # records before versions: 1
        if version != SCHEMA_VERSION:
            raise RecordError(
                f"{path} was written with record schema {version}, and this runbook reads schema {SCHEMA_VERSION}; "
                "render it with the runbook version that wrote it, or run the phase again.")
        try:
            return _build(cls, data)
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise RecordError(f"{path} does not hold a {cls.__name__} record ({type(exc).__name__}: {exc}); "
                              "pass the run folder a run printed, or run the phase again.") from None

    def has(self, phase: str) -> bool:
        return self.record_path(phase).exists()


def latest_run_with(reports_dir: Path | str, database: str, batch: int, phase: str) -> RunFolder | None:
    """The newest run folder of this database and batch that holds `phase`'s record."""
    root = Path(reports_dir) / _safe(database) / str(batch)
    if not root.is_dir():
        return None
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True):
        if (folder / f"{phase}.json").exists():
            return RunFolder(folder)
    return None


@dataclasses.dataclass
class PhaseRun:
    """One phase notebook of a run, as `run.json` keeps it: enough for the summary to say where a run stopped."""

    phase: str
    notebook: str
    seconds: float
    ok: bool
    cell_index: int | None = None
    error_name: str = ""
    error_message: str = ""


@dataclasses.dataclass
class RunRecord:
    """The chain of phases `runbook run` executed into one folder (`run.json`)."""

    batch: int
    run_id: str
    database: str  # redacted URL
    started_at: str
    phases: list[PhaseRun] = dataclasses.field(default_factory=list)
    rollback_on_failure: bool = False
    rolled_back: bool = False

    @property
    def failure(self) -> PhaseRun | None:
        return next((p for p in self.phases if not p.ok), None)


# --- the phase records: what each phase writes as <phase>.json and the summary reads ---


@dataclass(frozen=True)
class LedgerCheck:
    """The batch and its dependencies as the ledger sees them."""

    applied: bool
    applied_checksum: str | None
    applied_at: str | None
    applied_by: str | None
    checksum: str
    drift: bool
    dependencies: tuple[tuple[int, bool], ...] = ()
    source: str = ""  # where "applied" comes from: runbook's ledger, Prisma's history, both
    notes: str = ""  # where the two histories disagree
    prisma_failed: str = ""  # a failed _prisma_migrations row: the refusal with Prisma's way out

    @property
    def missing_dependencies(self) -> list[int]:
        return [number for number, applied in self.dependencies if not applied]


@dataclass(frozen=True)
class TableSize:
    table: str
    exists: bool
    rows_estimate: int
    bytes: int


@dataclass(frozen=True)
class Blocker:
    """A session that would make the migration's DDL wait, and every writer queue behind it."""

    pid: int
    user: str
    application: str
    state: str
    transaction_age_s: float
    locks: str
    query: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    """GO, WARN or NO-GO, with every reason that made it so."""

    """GO, WARN or NO-GO, with every reason that made it so."""

    status: str
    reasons: tuple[str, ...] = ()

    def __str__(self) -> str:
        if not self.reasons:
            return self.status
        return self.status + ": " + "; ".join(self.reasons)


@dataclass
class PreflightResult:
    """preflight.json: everything preflight found, read-only, and the verdict it came to.

    The notebook shows each part as a table (the *_frame methods); `raise_for_verdict` fails the
    notebook on NO-GO so papermill and the CLI stop there.
    """

    """preflight.json: everything preflight found, read-only, and the verdict it came to.

    The notebook shows each part as a table (the *_frame methods); `raise_for_verdict` fails the
    notebook on NO-GO so papermill and the CLI stop there.
    """

    batch: BatchInfo
    connection: ConnectionFacts
    run_id: str
    started_at: str
    duration_s: float
    ledger: LedgerCheck
    gates: list[sqlblocks.BlockResult]
    statements: list[StatementAnalysis] = field(default_factory=list)
    lint: LintResult | None = None
    tables: list[TableSize] = field(default_factory=list)
    blockers: list[Blocker] = field(default_factory=list)
    lock_costs: list[LockCost] = field(default_factory=list)
    lock_threshold_ms: float = 0.0
    verdict: Verdict = field(default_factory=lambda: Verdict(GO))

    @property
    def write_block_estimate_ms(self) -> float:
        """In one transaction every lock is held to the commit: the costs add up."""
        return round(sum(c.estimate_ms for c in self.lock_costs), 3)

    def gates_frame(self) -> pd.DataFrame:
        return tables.frame(self.gates, ["name", "expectation", "outcome", "status", "source"], empty="no gates")

    def ledger_frame(self) -> pd.DataFrame:
        lc = self.ledger
        rows = [("this batch", "applied" if lc.applied else "not applied",
                 f"{lc.applied_at or ''} {lc.applied_by or ''}".strip()
                 + (f" ({getattr(lc, 'source', '')})" if getattr(lc, "source", "") else ""))]
        if getattr(lc, "notes", ""):
            rows.append(("histories disagree", "DISAGREE", lc.notes))
        if getattr(lc, "prisma_failed", ""):
            rows.append(("_prisma_migrations", "FAILED ROW", lc.prisma_failed))
        rows.append(("migration.sql checksum", lc.checksum[:16],
                     f"DRIFT: applied with {lc.applied_checksum[:16]}" if lc.drift else "matches" if lc.applied else ""))
        rows += [(f"depends on batch {n}", "applied" if ok else "NOT APPLIED", "") for n, ok in lc.dependencies]
        return pd.DataFrame(rows, columns=["item", "state", "detail"])

    def statements_frame(self) -> pd.DataFrame:
        return tables.frame(
            self.statements,
            ["index", "line", "kind", "lock_summary", "scans", "rewrites", "transactional", "blocks_writes"],
            empty="no statements",
        )

    def lint_frame(self) -> pd.DataFrame:
        if self.lint is None or not self.lint.available:
            return pd.DataFrame({"lint": [self.lint.note if self.lint else "squawk was not run"]})
        return tables.frame(self.lint.findings, ["statement_index", "line", "rule", "message", "help"],
                            empty="squawk found nothing")

    def tables_frame(self) -> pd.DataFrame:
        return tables.frame(self.tables, ["table", "exists", "rows_estimate", "bytes"], empty="no tables")

    def lock_costs_frame(self) -> pd.DataFrame:
        return tables.frame(
            self.lock_costs,
            ["statement_index", "kind", "table", "mode", "rows_estimate", "bytes", "estimate_ms", "method",
             "over_threshold", "alternative"],
            empty="no statement blocks writes while it scans or rewrites a table",
        )

    def blockers_frame(self) -> pd.DataFrame:
        return tables.frame(
            self.blockers,
            ["pid", "user", "application", "state", "transaction_age_s", "locks", "query", "reason"],
            empty="no blocking sessions",
        )

    def verdict_frame(self) -> pd.DataFrame:
        reasons = self.verdict.reasons or ("all gates passed",)
        return pd.DataFrame({"verdict": [self.verdict.status] * len(reasons), "reason": list(reasons)})

    def raise_for_verdict(self, fail_on_nogo: bool = True) -> None:
        """Fail the notebook (and so papermill and the CLI) on NO-GO, unless told to go on (--force)."""
        if self.verdict.status == NOGO and fail_on_nogo:
            raise PreflightFailed(
                f"Preflight of batch {self.batch.number} says NO-GO: " + "; ".join(self.verdict.reasons) + ".",
                list(self.verdict.reasons),
            )


@dataclass(frozen=True)
class StatementRun:
    """One attempt at one statement, as the timeline shows it."""

    index: int
    line: int
    kind: str
    sql: str
    attempt: int
    started_offset_s: float
    duration_s: float
    rowcount: int
    status: str  # ok | failed | lock timeout | rolled back
    locks: str = ""  # the locks this statement newly took, measured in pg_locks
    error: str = ""
    step: int = 1
    expected_locks: str = ""  # what the parser says the statement takes (it may already hold them)


@dataclass(frozen=True)
class HeldLock:
    """A lock held until the step committed, and for how long: what writers waited behind."""

    """A lock held until the step committed, and for how long: what writers waited behind."""

    relation: str
    mode: str
    blocks_writes: bool
    held_s: float | None = None  # from the statement that took it to the end of the commit
    step: int = 1


@dataclass(frozen=True)
class StepRun:
    """One step of the plan: committed, failed, skipped (an earlier run committed it) or rolled back."""

    """One step of the plan: committed, failed, skipped (an earlier run committed it) or rolled back."""

    number: int
    purpose: str
    transactional: bool
    status: str  # committed | failed | skipped (already done by an earlier run) | rolled back (dry run)
    attempts: int = 0
    duration_s: float = 0.0
    longest_write_block_s: float = 0.0


@dataclass
class ExecutionResult:
    """apply.json or rollback.json: what running a SQL file did, measured, on success and on failure.

    The steps of the plan, every attempt of every statement with the locks it took (from pg_locks),
    the longest write-blocking lock, catalog snapshots before and after, and what a failure cleaned up.
    """

    """apply.json or rollback.json: what running a SQL file did, measured, on success and on failure.

    The steps of the plan, every attempt of every statement with the locks it took (from pg_locks),
    the longest write-blocking lock, catalog snapshots before and after, and what a failure cleaned up.
    """

    phase: str
    batch: BatchInfo
    connection: ConnectionFacts
    run_id: str
    started_at: str
    finished_at: str = ""
    duration_s: float = 0.0
    status: str = names.RUNNING  # applied | rolled back | dry run | already applied | failed (names.py)
    dry_run: bool = False
    strategy: str = DIRECT
    attempts: int = 0
    lock_timeout_ms: int = 0
    statement_timeout_ms: int = 0
    plan: list[str] = field(default_factory=list)
    steps: list[StepRun] = field(default_factory=list)
    statements: list[StatementRun] = field(default_factory=list)
    locks_before_commit: list[HeldLock] = field(default_factory=list)
    longest_write_block_s: float = 0.0  # the longest of: a write-blocking lock held, a queued lock request
    longest_queue_wait_s: float = 0.0  # a timed-out lock request that writers queued behind
    before: catalog.CatalogSnapshot | None = None
    after: catalog.CatalogSnapshot | None = None
    changes: list[catalog.CatalogChange] = field(default_factory=list)
    verification: list[sqlblocks.BlockResult] = field(default_factory=list)
    cleanup: list[str] = field(default_factory=list)
    prisma: prisma.PrismaRecord | None = None
    message: str = ""
    statements_started_at: str = ""  # wall clock of offset 0 of the statements' timeline

    @property
    def longest_lock_hold_s(self) -> float:
        """The longest a lock that blocks writes was held (to its commit), over all steps."""
        return max((h.held_s or 0.0 for h in self.locks_before_commit if h.blocks_writes), default=0.0)

    @property
    def succeeded(self) -> bool:
        return self.status != names.FAILED

    steps_kept: int = 0  # steps whose effects are in the database: a rerun resumes after them

    def timeline_frame(self) -> pd.DataFrame:
        return tables.frame(
            self.statements,
            ["step", "index", "attempt", "kind", "started_offset_s", "duration_s", "rowcount", "status", "locks", "error"],
            empty="no statement ran",
        )

    def steps_frame(self) -> pd.DataFrame:
        return tables.frame(self.steps, ["number", "purpose", "transactional", "status", "attempts", "duration_s",
                                         "longest_write_block_s"], empty="no step ran")

    def locks_frame(self) -> pd.DataFrame:
        return tables.frame(self.locks_before_commit, ["step", "relation", "mode", "blocks_writes", "held_s"],
                            empty="no locks recorded")

    def changes_frame(self) -> pd.DataFrame:
        return tables.frame(self.changes, ["table", "object", "change", "before", "after"], empty="no catalog change")

    def summary_frame(self) -> pd.DataFrame:
        rows = [
            ("status", self.status),
            ("strategy", f"{self.strategy}: {len(self.plan)} step(s)"),
            ("duration", f"{self.duration_s:.3f} s"),
            ("attempts", self.attempts),
            ("statements", len({s.index for s in self.statements})),
            ("longest write-blocking lock", f"{self.longest_write_block_s * 1000:.1f} ms"),
            ("lock_timeout / statement_timeout", f"{self.lock_timeout_ms} ms / {self.statement_timeout_ms} ms"),
            ("message", self.message),
        ]
        return pd.DataFrame(rows, columns=["item", "value"]).set_index("item")


@dataclass
class ValidationResult:
    """validate.json: each test of what the database now enforces (X/Y), every one rolled back.

    Declared checks and validation.sql blocks with their outcomes, the ORM alignment with schema.prisma,
    and the row counts before and after that prove nothing was left behind.
    """

    """validate.json: each test of what the database now enforces (X/Y), every one rolled back.

    Declared checks and validation.sql blocks with their outcomes, the ORM alignment with schema.prisma,
    and the row counts before and after that prove nothing was left behind.
    """

    batch: BatchInfo
    connection: ConnectionFacts
    run_id: str
    started_at: str
    duration_s: float
    tests: list[sqlblocks.BlockResult] = field(default_factory=list)
    leftover_rows: int = 0  # rows the tests left behind in the touched tables: must be 0
    prisma_schema: str | None = None  # the schema.prisma compared with the database, if one was found
    orm_mismatches: list[OrmMismatch] = field(default_factory=list)
    orm_strict: bool = False  # whether a mismatch fails the validation

    @property
    def passed(self) -> int:
        return sum(1 for t in self.tests if t.passed)

    @property
    def total(self) -> int:
        return len(self.tests)

    @property
    def percent(self) -> float:
        return round(100.0 * self.passed / self.total, 1) if self.total else 0.0

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.passed == self.total and not (self.orm_strict and self.orm_mismatches)

    @property
    def headline(self) -> str:
        return f"{self.passed}/{self.total} tests passed ({self.percent:g}%)"

    def tests_frame(self) -> pd.DataFrame:
        return tables.frame(self.tests, ["name", "expectation", "outcome", "status", "source"], empty="no tests")

    def orm_frame(self) -> pd.DataFrame:
        """schema.prisma against the database, one row per field that disagrees."""
        if self.prisma_schema is None:
            return pd.DataFrame({"model": ["no schema.prisma found next to the batch"]})
        return orm.frame(self.orm_mismatches)

    def orm_section(self) -> Section:
        """The reference document's "Prisma Schema Updates" section, from this result."""
        return orm.section(self.orm_mismatches, self.prisma_schema)

    def raise_for_failures(self) -> None:
        failed = [t for t in self.tests if not t.passed]
        if not self.tests:
            raise ValidationFailed(
                f"Batch {self.batch.number} has no tests: add [checks] to batch.toml or a validation.sql."
            )
        problems = []
        if failed:
            problems.append(self.headline + "; failing: "
                            + "; ".join(f"'{t.name}' expected {t.expectation}, got {t.outcome}" for t in failed))
        if self.orm_strict and self.orm_mismatches:
            problems.append(f"{self.prisma_schema} disagrees with the database: " + "; ".join(
                f"{m.model}.{m.field} reads '{m.schema_prisma}' but the database has {m.database} "
                f"(write '{m.fix}')" for m in self.orm_mismatches))
        if problems:
            raise ValidationFailed(f"Validation of batch {self.batch.number}: " + "; and ".join(problems) + ".")


# Each phase's record type, by the name of its file (`<phase>.json`).
RECORD_TYPES: dict[str, type] = {
    "preflight": PreflightResult, "apply": ExecutionResult, "validate": ValidationResult, "rollback": ExecutionResult,
}
