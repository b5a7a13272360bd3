"""The run folder and its JSON records: the contract between the phases and the summary.

`reports/<database>/<batch>/<run-id>/` holds each executed notebook, a `<phase>.json` record written
by the phase itself, `run.json`, and the rendered reports. The record types live here together, and
every record carries SCHEMA_VERSION: a summary re-rendered later (`runbook report`) by another
version of runbook reads only what it understands, and says so in one sentence otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import secrets
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from runbook_lib import names
from runbook_lib.batch import blocks as sqlblocks
from runbook_lib.batch.model import BatchInfo
from runbook_lib.config import DIRECT
from runbook_lib.db import catalog
from runbook_lib.db.connection import ConnectionFacts
from runbook_lib.display import frames as tables
from runbook_lib.display.markdown import Section
from runbook_lib.errors import (
    PreflightFailed,
    RecordError,
    RunbookError,
    ValidationFailed,
)
from runbook_lib.layouts import prisma
from runbook_lib.names import GO, NOGO
from runbook_lib.orm import prisma_schema as orm
from runbook_lib.orm.prisma_schema import OrmMismatch
from runbook_lib.sql.analysis import StatementAnalysis
from runbook_lib.sql.batching import BackfillCheck
from runbook_lib.sql.lint import LintResult
from runbook_lib.sql.lockcost import LockCost
from runbook_lib.sql.privileges import PrivilegeCheck

if TYPE_CHECKING:  # the annotations' DataFrame (start-up time: pandas loads when a table is built)
    import pandas as pd

T = TypeVar("T")

# The shape of the JSON records. Raise it when a field is renamed, removed or changes meaning (adding a
# field with a default does not need it); `RunFolder.read` refuses any other version in one sentence.
# 2: each test, gate and verification check has `outcome` passed / failed / not_run, `observed` (the text of
# what happened, schema 1's `outcome`) and `reason` (why it was not run), instead of `passed` (a bool).
SCHEMA_VERSION = 2
# The lists of BlockResults a record holds: validate's tests, preflight's gates, apply's and rollback's checks.
_TEST_LISTS = ("tests", "gates", "verification")


def _test_of_schema_1(test: Any) -> Any:
    """A schema-1 test in schema 2's keys: its `outcome` text is `observed`, its `passed` bool an `outcome`."""
    if not isinstance(test, dict) or "passed" not in test or "observed" in test:
        return test
    out: dict[str, Any] = {}
    for key, value in test.items():
        if key == "outcome":
            out["observed"] = value
        elif key == "passed":
            out["outcome"] = names.PASSED if value else names.TEST_FAILED
        else:
            out[key] = value
    out.setdefault("observed", "")
    out.setdefault("reason", "")
    return out


def _upgraded(data: dict[str, Any], version: int) -> dict[str, Any]:
    """A record of an earlier schema in this one's keys (its `schema_version` stays as written)."""
    if version == 1:
        for key in _TEST_LISTS:
            if isinstance(data.get(key), list):
                data[key] = [_test_of_schema_1(t) for t in data[key]]
    return data


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # a record holds thousands of BlockResults: fields read once per class


def tally(tests: Any) -> tuple[int, int] | None:
    """X/Y of tests as a record's JSON holds them: those passed, and those that ran (None: no list of tests)."""
    if not isinstance(tests, list):
        return None
    outcomes = [t.get("outcome") for t in tests if isinstance(t, dict)]
    return sum(1 for o in outcomes if o == names.PASSED), sum(1 for o in outcomes if o != names.NOT_RUN)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    kind = type(value)
    names_of = _FIELD_NAMES.get(kind)
    if names_of is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names_of = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(value))
    if names_of is not None:
        return {name: _jsonable(getattr(value, name)) for name in names_of}
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


def _orjson_default(value: Any) -> Any:
    """What orjson does not write itself, as `_jsonable` writes it."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)


def to_json(record: Any) -> str:
    # What json.dumps(_jsonable(record), indent=2, ensure_ascii=False) writes, many times faster: orjson writes the
    # dataclasses, dates and nested values itself (json's indenting encoder and `_jsonable` are pure Python), and
    # a release writes several records per migration, of hundreds of statements.
    names = _FIELD_NAMES.get(type(record))
    if names is None and dataclasses.is_dataclass(record) and not isinstance(record, type):
        names = _FIELD_NAMES[type(record)] = tuple(f.name for f in dataclasses.fields(record))
    if names is not None:
        top = {"schema_version": SCHEMA_VERSION, **{name: getattr(record, name) for name in names}}
        try:
            return orjson.dumps(top, default=_orjson_default, option=orjson.OPT_INDENT_2).decode()
        except orjson.JSONEncodeError:
            pass  # an integer past 64 bits, a key orjson will not write: as below
    data = _jsonable(record)
    if isinstance(data, dict):
        data = {"schema_version": SCHEMA_VERSION, **data}
    try:
        return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONEncodeError:  # an integer past 64 bits: json writes any
        return json.dumps(data, indent=2, ensure_ascii=False)


def _loads(raw: bytes) -> Any:
    """A record's JSON; json reads what orjson refuses (a NaN an older runbook wrote), and says what is wrong."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw.decode("utf-8"))


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
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        kwargs = {
            name: data[name] if plain else _build(hint, data[name])
            for name, hint, plain in _fields_of(tp)
            if name in data
        }
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


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """Resolved once per class: a release reads thousands of records, and resolving costs a compile each."""
    return typing.get_type_hints(cls)


_PLAIN = (str, int, bool, type(None))


def _plain(hint: Any) -> bool:
    """A JSON value of this type is the value itself (str, int, bool, Any, or an optional one of them)."""
    if hint is Any or hint in _PLAIN:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return all(arg in _PLAIN for arg in typing.get_args(hint))
    return False


@functools.cache
def _fields_of(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type, plain) of each field a dataclass takes: a release's records hold tens of thousands of tests,
    and a plain field is copied as it is instead of rebuilt."""
    hints = _type_hints(cls)
    return tuple((f.name, hints[f.name], _plain(hints[f.name])) for f in dataclasses.fields(cls) if f.init)


def from_json(cls: type[T], text: str) -> T:
    return _build(cls, json.loads(text))


def now_iso() -> str:
    """The time records carry: UTC, ISO 8601, milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", part) or "_"


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """`reports/<database>/<batch>/<run-id>/`: one run's executed notebooks, records and reports.

    `write` replaces a record atomically; `read` refuses, in one sentence, a record this version of
    runbook cannot read (a later SCHEMA_VERSION, or not JSON); a record of schema 1 is read in schema 2's keys.
    """

    path: Path

    @property
    def run_id(self) -> str:
        """The folder's name; a release's migration folder says whose it is (`<release run>/0007`), so the ledger's
        rows and a notebook's approvals of one release are never taken for another's."""
        if self.path.name.isdigit() and (self.path.parent / "release.json").exists():
            return f"{self.path.parent.name}/{self.path.name}"
        return self.path.name

    @classmethod
    def create(cls, reports_dir: Path | str, database: str, batch: int | str, run_id: str | None = None) -> RunFolder:
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
    def open(cls, path: Path | str) -> RunFolder:
        folder = Path(path)
        if not folder.is_dir():
            raise RunbookError(f"Run folder {folder} does not exist; pass the folder a run printed.")
        return cls(folder)

    def child(self, batch: int) -> RunFolder:
        """A release's folder for one of its migrations: `<run>/<batch, 4 digits>/`, made on first use."""
        path = self.path / f"{batch:04d}"
        path.mkdir(exist_ok=True)
        return RunFolder(path)

    def children(self) -> list[RunFolder]:
        """The migrations' folders of a release, in order."""
        return [RunFolder(p) for p in sorted(self.path.iterdir()) if p.is_dir() and p.name.isdigit()]

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
        return self.record_of(phase, cls, self.read_data(phase))

    def record_of(self, phase: str, cls: type[T], data: dict[str, Any] | None) -> T | None:
        """`data` (what `read_data(phase)` gave) as a record of `cls`: `read` for whoever needs both."""
        if data is None:
            return None
        try:
            return _build(cls, data)
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise RecordError(
                f"{self.record_path(phase)} does not hold a {cls.__name__} record "
                f"({type(exc).__name__}: {exc}); pass the run folder a run printed, or run the phase "
                "again."
            ) from None

    def read_data(self, phase: str) -> dict[str, Any] | None:
        """`<phase>.json` as JSON data, its schema version checked; for those who need a few fields, not the record."""
        path = self.record_path(phase)
        if not path.exists():
            return None
        try:
            data = _loads(path.read_bytes())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RecordError(
                f"{path} is not a readable JSON record ({exc}); run the phase again to write it anew."
            ) from None
        version = data.get("schema_version", 1) if isinstance(data, dict) else None  # records before versions: 1
        if version not in (1, SCHEMA_VERSION):
            raise RecordError(
                f"{path} was written with record schema {version}, and this runbook reads schema {SCHEMA_VERSION} "
                "and the schemas before it; render it with the runbook version that wrote it, or run the phase again."
            )
        return _upgraded(data, version)

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
    release: bool = False  # `runbook deploy`: batch is 0 and each migration has a folder of its own (release.json)
    run_by: str = ""  # who ran it: the operating-system user and host ("" in a record written before this field)

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
    backfills: list[BackfillCheck] = field(default_factory=list)  # each data statement: batched online, or why not
    privileges: PrivilegeCheck | None = None  # the role's gaps (None: a record written before they were checked)

    @property
    def write_block_estimate_ms(self) -> float:
        """In one transaction every lock is held to the commit: the costs add up."""
        return round(sum(c.estimate_ms for c in self.lock_costs), 3)

    def gates_frame(self) -> pd.DataFrame:
        return tables.frame(self.gates, ["name", "expectation", "observed", "status", "source"], empty="no gates")

    def privileges_frame(self) -> pd.DataFrame:
        """The role acted as and each gap: what it cannot do, what follows, the GRANT that fixes it."""
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

        p = self.privileges
        if p is None:
            return pd.DataFrame({"privileges": ["not checked"]})
        acting = p.role if p.role == p.login else f"{p.role} (logged in as {p.login})"
        rows = [
            ("role", "superuser" if p.superuser else "not a superuser", acting),
            ("predefined roles", ", ".join(p.held) or "none", "pg_read_all_stats, pg_signal_backend"),
        ]
        rows += [(g.severity, g.text, g.fix) for g in p.gaps]
        if not p.gaps:
            rows.append(("OK", "the role may run every statement and write the ledger", ""))
        return pd.DataFrame(rows, columns=_GAP_COLUMNS)

    def gaps_frame(self) -> pd.DataFrame | None:
        """This migration's gaps alone (None: none), for a release's table under the role's rows."""
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

        if self.privileges is None or not self.privileges.gaps:
            return None
        return pd.DataFrame([(g.severity, g.text, g.fix) for g in self.privileges.gaps], columns=_GAP_COLUMNS)

    def ledger_frame(self) -> pd.DataFrame:
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

        lc = self.ledger
        rows = [
            (
                "this batch",
                "applied" if lc.applied else "not applied",
                f"{lc.applied_at or ''} {lc.applied_by or ''}".strip()
                + (f" ({getattr(lc, 'source', '')})" if getattr(lc, "source", "") else ""),
            )
        ]
        if getattr(lc, "notes", ""):
            rows.append(("histories disagree", "DISAGREE", lc.notes))
        if getattr(lc, "prisma_failed", ""):
            rows.append(("_prisma_migrations", "FAILED ROW", lc.prisma_failed))
        checked = "matches" if lc.applied else ""
        if lc.drift:
            assert lc.applied_checksum is not None  # drift: a history recorded another checksum than the file's
            checked = f"DRIFT: applied with {lc.applied_checksum[:16]}"
        rows.append(("migration.sql checksum", lc.checksum[:16], checked))
        rows += [(f"depends on batch {n}", "applied" if ok else "NOT APPLIED", "") for n, ok in lc.dependencies]
        return pd.DataFrame(rows, columns=["item", "state", "detail"])

    def statements_frame(self) -> pd.DataFrame:
        return tables.frame(
            self.statements,
            ["index", "line", "kind", "lock_summary", "scans", "rewrites", "transactional", "blocks_writes"],
            empty="no statements",
        )

    def lint_frame(self) -> pd.DataFrame:
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

        if self.lint is None or not self.lint.available:
            return pd.DataFrame({"lint": [self.lint.note if self.lint else "squawk was not run"]})
        return tables.frame(
            self.lint.findings, ["statement_index", "line", "rule", "message", "help"], empty="squawk found nothing"
        )

    def tables_frame(self) -> pd.DataFrame:
        return tables.frame(self.tables, ["table", "exists", "rows_estimate", "bytes"], empty="no tables")

    def lock_costs_frame(self) -> pd.DataFrame:
        return tables.frame(
            self.lock_costs,
            [
                "statement_index",
                "kind",
                "table",
                "mode",
                "rows_estimate",
                "bytes",
                "estimate_ms",
                "method",
                "over_threshold",
                "alternative",
            ],
            empty="no statement blocks writes while it scans or rewrites a table",
        )

    def backfills_frame(self) -> pd.DataFrame:
        return tables.frame(
            self.backfills,
            ["statement_index", "line", "kind", "table", "batched", "key", "reason"],
            empty="no INSERT, UPDATE or DELETE in migration.sql",
        )

    def blockers_frame(self) -> pd.DataFrame:
        return tables.frame(
            self.blockers,
            ["pid", "user", "application", "state", "transaction_age_s", "locks", "query", "reason"],
            empty="no blocking sessions",
        )

    def verdict_frame(self) -> pd.DataFrame:
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

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

    relation: str
    mode: str
    blocks_writes: bool
    held_s: float | None = None  # from the statement that took it to the end of the commit
    step: int = 1
    rows: int = 0  # row locks (mode "row locks"): how many rows were held


def _row_verb(kind: str) -> str | None:
    """How a data statement's row count reads ("inserted into"); None for a statement that changes no rows."""
    first = kind.split()[0].upper() if kind else ""
    return {"INSERT": "inserted into", "UPDATE": "updated in", "DELETE": "deleted from", "MERGE": "merged into"}.get(
        first
    )


@dataclass(frozen=True)
class BackfillRun:
    """One data statement run in batches by keyset: how many rows each batch locked, and for how long.

    Each batch's transaction holds the locks of the rows it changed until it commits: `row_lock_longest_s`
    is the longest an application write to one of them could have waited.
    """

    step: int
    statement_index: int
    kind: str
    table: str
    key: str
    status: str  # completed | stopped
    rows: int = 0  # rows changed, this run
    keys_scanned: int = 0
    batches: int = 0
    rows_per_batch_median: float = 0.0
    rows_per_batch_max: int = 0
    batch_median_s: float = 0.0
    batch_longest_s: float = 0.0
    row_lock_longest_s: float = 0.0  # from the batch's statement to the end of its COMMIT
    target_ms: int = 0
    batch_size_first: int = 0  # keys per batch, as adapted toward target_ms
    batch_size_last: int = 0
    lock_timeouts: int = 0  # batches retried smaller after waiting lock_timeout for a lock
    replica_pause_s: float = 0.0
    throttle_pause_s: float = 0.0
    duration_s: float = 0.0
    resumed_after: str = ""  # the key an earlier, stopped run had committed through
    rows_before: int = 0  # rows an earlier run committed
    last_key: str = ""
    analyzed: str = ""  # tables given fresh statistics before the first batch planned, and why
    vacuumed: str = ""  # the VACUUM (ANALYZE) after the last batch (execution.upkeep), or why there was none
    vacuum_s: float = 0.0
    wal_mb: float = 0.0  # WAL the server wrote while the batches ran (execution.walrate)
    wal_mb_per_s: float = 0.0  # the WAL budget the batches were paced to (0: none)
    wal_pause_s: float = 0.0  # time slept to keep to it
    # execution.writeback: the migration's WAL (MB) from which its session wrote back the pages it dirtied as it
    # went (None: it did not, by this statement's end), backend_flush_after then, whether that was the session's
    # own setting (kept), and the WAL it was to wait for (None: never asked, or the server did not say)
    flush_from_mb: float | None = None
    flush_setting: str = ""
    flush_kept: bool = False
    flush_threshold_mb: float | None = None
    flush_threshold: str = ""  # where that figure came from

    @property
    def changed(self) -> str:
        """Its rows as a person reads them: "4,500 updated in Lead (statement 5, in 45 batches)"."""
        return (
            f"{self.rows:,} {_row_verb(self.kind) or self.kind} {self.table} (statement {self.statement_index}, "
            f"in {self.batches:,} batches)"
        )


@dataclass(frozen=True)
class StepRun:
    """One step of the plan: committed, failed, skipped (an earlier run committed it) or rolled back."""

    number: int
    purpose: str
    transactional: bool
    status: str  # committed | failed | skipped (already done by an earlier run) | rolled back (dry run)
    attempts: int = 0
    duration_s: float = 0.0
    longest_write_block_s: float = 0.0


@dataclass(frozen=True)
class StepApproval:
    """A pause of a runbook notebook before one step: since when it waited, and who approved it, when and how."""

    step: int
    waiting_since: str  # ISO time the pause cell first ran ("" when approved before it was reached)
    approved_at: str
    by: str
    how: str  # "approve() in the notebook", "approve = \"all\"", ...
    reason: str = ""  # why the notebook pauses there

    @property
    def waited_s(self) -> float:
        if not self.waiting_since or not self.approved_at:
            return 0.0
        gap = datetime.fromisoformat(self.approved_at) - datetime.fromisoformat(self.waiting_since)
        return max(gap.total_seconds(), 0.0)


_GAP_COLUMNS = ["status", "finding", "fix"]  # a preflight's privileges table
HIDDEN_STATE = "state hidden"  # a session of another role, seen by a role without pg_read_all_stats


@dataclass(frozen=True)
class BlockerWait:
    """A session apply waited for instead of queuing behind it (or terminated, when told to), as it was seen.

    `query` is cut short: it is the application's SQL and may carry its data.
    """

    step: int
    pid: int
    user: str
    application: str
    state: str
    since: str  # when its transaction began (ISO 8601); when hidden, "transaction <pg_locks.virtualtransaction>"
    lock: str  # the conflicting lock: "ACCESS SHARE on Lead"
    query: str
    waiting_ahead: bool = False  # it did not hold the lock yet, but waited for it ahead of where apply would
    waited_s: float = 0.0  # from the first look that saw it to the last
    outcome: str = "ended"  # ended | terminated | budget spent | not terminated: <why>

    @property
    def who(self) -> str:
        return f"session {self.pid} ({self.application or self.user or 'no application_name'}, {self.state})"

    @property
    def hidden(self) -> bool:
        """Its state was hidden from the role (no pg_read_all_stats): `since` names its transaction instead."""
        return self.state == HIDDEN_STATE


@dataclass
class ExecutionResult:
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
    tool_history: str = ""  # what another tool's history (golang-migrate's, Flyway's, Drizzle's) was told
    message: str = ""
    statements_started_at: str = ""  # wall clock of offset 0 of the statements' timeline
    blocker_waits: list[BlockerWait] = field(default_factory=list)  # whom apply waited for, not queuing
    blocker_wait_s: float = 0.0  # how long apply waited for them, in all (never queued meanwhile)
    guard_cancels: int = 0  # lock requests cancelled because an application session queued behind them
    gates_from: str = ""  # where the gates were judged when apply did not evaluate them again
    backfills: list[BackfillRun] = field(default_factory=list)  # data statements run in batches (online)
    partly_applied: str = ""  # a rollback of a batch whose apply stopped part way: what that apply had committed
    resumed: str = ""  # this run went on from an earlier one of its phase that stopped part way: what it had committed
    approvals: list[StepApproval] = field(default_factory=list)  # a runbook notebook's pauses, and who let it go on
    stepped: bool = False  # run one step per cell by a runbook notebook (`phases.stepwise`): the steps' records merged

    @property
    def terminated(self) -> list[BlockerWait]:
        """The sessions apply terminated (--terminate-blockers-after): never without that option."""
        return [w for w in self.blocker_waits if w.outcome == "terminated"]

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
            [
                "step",
                "index",
                "attempt",
                "kind",
                "started_offset_s",
                "duration_s",
                "rowcount",
                "status",
                "locks",
                "error",
            ],
            empty="no statement ran",
        )

    def row_changes(self) -> list[str]:
        """The rows each data statement changed, with its table ("90 inserted into Customer"), in file order:
        a backfill's effect, which the catalog's changes do not show. Statements run in batches are left
        to their own lines (`backfills`); the counts are the attempts that went through."""
        batched = {b.statement_index for b in self.backfills}
        said = []
        for run in self.statements:
            verb = _row_verb(run.kind)
            if verb is None or run.status != "ok" or run.index in batched:
                continue
            # the parser's, then what pg_locks saw (a data-modifying WITH the parser reads as one table)
            tables = list(
                dict.fromkeys(
                    part.split(" on ", 1)[1]
                    for part in f"{run.expected_locks}, {run.locks}".split(", ")
                    if part.startswith("ROW EXCLUSIVE on ")
                )
            )
            said.append(f"{run.rowcount:,} {verb} {', '.join(tables) or 'its table'} (statement {run.index})")
        return said

    def blocker_lines(self) -> list[str]:
        """Whom the run waited for instead of queuing, for how long, and whom it terminated: one line each."""
        lines = []
        if self.blocker_waits:
            lines.append(
                f"waited {self.blocker_wait_s:.1f} s in all for {len(self.blocker_waits)} blocking "
                "session(s), without queuing behind them"
            )
        for w in self.blocker_waits:
            what = "terminated" if w.outcome == "terminated" else f"waited {w.waited_s:.1f} s for"
            tail = "" if w.outcome in ("ended", "terminated") else f" ({w.outcome})"
            holds = "waiting ahead for" if w.waiting_ahead else "holding"
            if w.hidden:
                lines.append(
                    f"step {w.step}: {what} {w.who}, user {w.user or '?'}, in {w.since}, {holds} {w.lock} "
                    f"(its state and query are hidden from this role){tail}"
                )
                continue
            lines.append(
                f"step {w.step}: {what} {w.who}, user {w.user or '?'}, in a transaction since "
                f"{w.since[:23]}, {holds} {w.lock}: {' '.join(w.query.split())[:80]}{tail}"
            )
        if self.guard_cancels:
            lines.append(
                f"{self.guard_cancels} lock request(s) cancelled as soon as an application session "
                "queued behind them, then retried"
            )
        return lines

    def blockers_frame(self) -> pd.DataFrame:
        return tables.frame(
            self.blocker_waits,
            ["step", "pid", "user", "application", "state", "since", "lock", "waited_s", "outcome", "query"],
            empty="no session blocked the migration's locks",
        )

    def steps_frame(self) -> pd.DataFrame:
        return tables.frame(
            self.steps,
            ["number", "purpose", "transactional", "status", "attempts", "duration_s", "longest_write_block_s"],
            empty="no step ran",
        )

    def locks_frame(self) -> pd.DataFrame:
        return tables.frame(
            self.locks_before_commit, ["step", "relation", "mode", "blocks_writes", "held_s"], empty="no locks recorded"
        )

    def backfills_frame(self) -> pd.DataFrame:
        return tables.frame(
            self.backfills,
            [
                "step",
                "statement_index",
                "kind",
                "table",
                "key",
                "status",
                "rows",
                "batches",
                "rows_per_batch_median",
                "rows_per_batch_max",
                "batch_median_s",
                "batch_longest_s",
                "row_lock_longest_s",
                "lock_timeouts",
                "replica_pause_s",
                "wal_mb",
                "wal_pause_s",
                "duration_s",
            ],
            empty="no statement ran in batches",
        )

    def changes_frame(self) -> pd.DataFrame:
        return tables.frame(self.changes, ["table", "object", "change", "before", "after"], empty="no catalog change")

    def summary_frame(self) -> pd.DataFrame:
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

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

    Declared checks, validation.sql blocks and the tests derived from migration.sql with their outcomes,
    the ORM alignment with schema.prisma, and the row counts before and after that prove nothing was
    left behind. No test at all is not a failure (a pure data migration has nothing to derive): the
    headline says so and X/Y is 0/0. A test that was not run (its precondition could not be established)
    proved nothing: X/Y counts the tests that ran, the headline adds "N not run", and it fails the validation
    only with `fail_on_not_run`.
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
    # What migration.sql held that gave no derived test (skipped statements, behaviour tests not built).
    derived_notes: list[str] = field(default_factory=list)
    orm_scope: str = ""  # which part of schema.prisma was compared, and why
    fail_on_not_run: bool = False  # whether a test that was not run fails the validation (--fail-on-not-run)

    @property
    def passed(self) -> int:
        return sum(1 for t in self.tests if t.passed)

    @property
    def total(self) -> int:
        """Y of X/Y: the tests that ran (those not run are counted apart, in `not_run`)."""
        return sum(1 for t in self.tests if t.ran)

    @property
    def failures(self) -> list[sqlblocks.BlockResult]:
        return [t for t in self.tests if t.failed]

    @property
    def not_run(self) -> list[sqlblocks.BlockResult]:
        """The tests whose precondition could not be established: neither passed nor failed."""
        return [t for t in self.tests if not t.ran]

    @property
    def not_run_note(self) -> str:
        """ " (2 not run)" after an X/Y, or nothing when every test ran."""
        return f" ({len(self.not_run)} not run)" if self.not_run else ""

    @property
    def percent(self) -> float:
        return round(100.0 * self.passed / self.total, 1) if self.total else 0.0

    @property
    def derived(self) -> int:
        """How many of the tests that ran were derived from migration.sql (the rest were declared)."""
        return sum(1 for t in self.tests if t.derived and t.ran)

    @property
    def ok(self) -> bool:
        """No test failed (a test not run is allowed, unless `fail_on_not_run`), nor schema.prisma under orm_strict."""
        return (
            not self.failures
            and not (self.orm_strict and self.orm_mismatches)
            and not (self.fail_on_not_run and self.not_run)
        )

    @property
    def headline(self) -> str:
        if not self.tests:
            return "0/0 tests: no derived tests and none declared"
        declared = self.total - self.derived
        split = (
            f"{declared} declared, {self.derived} derived" if self.derived else f"{declared} declared, no derived tests"
        )
        ran = (
            f"{self.passed}/{self.total} tests passed ({self.percent:g}%; {split})"
            if self.total
            else "0/0 tests passed (none ran)"
        )
        return ran + (f"; {len(self.not_run)} not run" if self.not_run else "")

    def tests_frame(self) -> pd.DataFrame:
        """One row per test: what it expected, what happened, PASS, FAIL or NOT RUN (and why not)."""
        return tables.frame(self.tests, ["name", "expectation", "observed", "status", "source"], empty="no tests")

    def orm_frame(self) -> pd.DataFrame:
        """schema.prisma against the database, one row per field that disagrees."""
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

        if self.prisma_schema is None:
            return pd.DataFrame({"model": ["no schema.prisma found next to the batch"]})
        return orm.frame(self.orm_mismatches)

    def orm_section(self) -> Section:
        """The reference document's "Prisma Schema Updates" section, from this result."""
        return orm.section(self.orm_mismatches, self.prisma_schema, self.orm_scope)

    def raise_for_failures(self) -> None:
        """ValidationFailed naming each failing test (and each test not run, under `fail_on_not_run`)."""
        failed = self.failures
        problems = []
        if failed:
            problems.append(
                self.headline
                + "; failing: "
                + "; ".join(f"'{t.name}' expected {t.expectation}, got {t.observed}" for t in failed)
            )
        if self.fail_on_not_run and self.not_run:
            problems.append(
                (self.headline + "; " if not failed else "")
                + f"{len(self.not_run)} test(s) not run, which fail_on_not_run (--fail-on-not-run) makes a failure: "
                + "; ".join(f"'{t.name}' ({t.reason})" for t in self.not_run)
                + "; remove what stopped each one (its reason says what), or run without --fail-on-not-run"
            )
        if self.orm_strict and self.orm_mismatches:
            problems.append(
                f"{self.prisma_schema} disagrees with the database: "
                + "; ".join(
                    f"{m.model}.{m.field} reads '{m.schema_prisma}' but the database has {m.database} (write '{m.fix}')"
                    for m in self.orm_mismatches
                )
            )
        if problems:
            raise ValidationFailed(f"Validation of batch {self.batch.number}: " + "; and ".join(problems) + ".")


@dataclass
class ReleasePlan:
    """release.json: the migrations a release deploys, fixed when its first phase starts.

    Each later phase of the same run reads it, so validate checks what apply applied even though
    nothing is pending any more by then.
    """

    batches: list[BatchInfo]
    to: int | None
    created_at: str
    skipped: list[str] = field(default_factory=list)  # folders of the migrations dir that hold no migration
    drift: list[str] = field(default_factory=list)  # applied migrations whose file changed since: NO-GO
    empty_folder: str = ""  # the migrations folder, when it holds no migration at all (a new project)

    @property
    def numbers(self) -> list[int]:
        return [b.number for b in self.batches]


# --- a release: what each phase did across its migrations, as the notebooks show it ---------------


def _each(results: list[Any], frame_of: Callable[[Any], pd.DataFrame | None], empty: str) -> pd.DataFrame:
    """Each migration's frame with its number in front; migrations with nothing to show are left out."""
    import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

    frames = []
    for result in results:
        frame = frame_of(result)
        if frame is None or frame.empty or list(frame.columns) == ["note"]:
            continue
        frames.append(frame.assign(migration=f"{result.batch.number} {result.batch.name}").set_index("migration"))
    return pd.concat(frames) if frames else pd.DataFrame({"note": [empty]})


@dataclass
class ReleasePreflight:
    """Preflight of every migration of a release, read-only, before the first is applied; one verdict.

    Each migration keeps its own preflight.json in its subfolder; the release's verdict is the worst.
    """

    plan: ReleasePlan
    results: list[PreflightResult] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        if self.plan.drift:  # the history the release builds on is not what the folder says
            return Verdict(
                NOGO,
                tuple(
                    f"{d}; restore the applied file, or write the change as a new migration" for d in self.plan.drift
                ),
            )
        worst = names.worst_verdict(r.verdict.status for r in self.results) or GO
        reasons = tuple(
            f"migration {r.batch.number} ({r.batch.name}): {reason}"
            for r in self.results
            for reason in r.verdict.reasons
            if r.verdict.status == worst
        )
        return Verdict(worst, reasons)

    def verdict_frame(self) -> pd.DataFrame:
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

        if not self.results:
            return pd.DataFrame({"verdict": [GO], "reason": ["nothing pending: every migration is applied"]})
        rows = [(r.batch.number, r.batch.name, r.verdict.status, "; ".join(r.verdict.reasons)) for r in self.results]
        return pd.DataFrame(rows, columns=["migration", "name", "verdict", "reasons"]).set_index("migration")

    def ledger_frame(self) -> pd.DataFrame:
        return _each(self.results, lambda r: r.ledger_frame(), "nothing pending")

    def gates_frame(self) -> pd.DataFrame:
        return _each(self.results, lambda r: r.gates_frame() if r.gates else None, "no gates")

    def privileges_frame(self) -> pd.DataFrame:
        """The role (checked once, with the first migration) and each migration's gaps."""
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

        if not self.results:
            return pd.DataFrame({"note": ["nothing pending"]})
        first = self.results[0].privileges_frame()
        rest = _each(self.results[1:], PreflightResult.gaps_frame, "")
        return first if "note" in rest.columns else pd.concat([first, rest.reset_index(drop=True)], ignore_index=True)

    def statements_frame(self) -> pd.DataFrame:
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

        rows = [
            (
                r.batch.number,
                r.batch.name,
                len(r.statements),
                sum(1 for s in r.statements if s.blocks_writes),
                sum(1 for s in r.statements if not s.transactional),
            )
            for r in self.results
        ]
        return pd.DataFrame(
            rows, columns=["migration", "name", "statements", "block writes", "outside a transaction"]
        ).set_index("migration")

    def lint_frame(self) -> pd.DataFrame:
        return _each(
            self.results, lambda r: r.lint_frame() if r.lint and r.lint.findings else None, "squawk found nothing"
        )

    def tables_frame(self) -> pd.DataFrame:
        return _each(
            self.results,
            lambda r: r.tables_frame() if any(t.exists for t in r.tables) else None,
            "no existing table is touched",
        )

    def lock_costs_frame(self) -> pd.DataFrame:
        return _each(
            self.results,
            lambda r: r.lock_costs_frame() if r.lock_costs else None,
            "no statement blocks writes while it scans or rewrites a table",
        )

    def backfills_frame(self) -> pd.DataFrame:
        return _each(
            self.results,
            lambda r: r.backfills_frame() if r.backfills else None,
            "no INSERT, UPDATE or DELETE in the release's migrations",
        )

    def blockers_frame(self) -> pd.DataFrame:
        return _each(self.results[:1], lambda r: r.blockers_frame() if r.blockers else None, "no blocking sessions")

    def raise_for_verdict(self, fail_on_nogo: bool = True) -> None:
        verdict = self.verdict
        if verdict.status == NOGO and fail_on_nogo:
            raise PreflightFailed(
                "Preflight of the release says NO-GO: " + "; ".join(verdict.reasons) + ".", list(verdict.reasons)
            )


@dataclass
class ReleaseApply:
    """Each migration of a release applied in order, each in its own transaction(s); stops at the first failure."""

    plan: ReleasePlan
    results: list[ExecutionResult] = field(default_factory=list)
    message: str = ""

    @property
    def applied(self) -> list[ExecutionResult]:
        return [r for r in self.results if r.status in (names.APPLIED, names.ALREADY_APPLIED, names.DRY_RUN)]

    @property
    def failed(self) -> ExecutionResult | None:
        return next((r for r in self.results if r.status == names.FAILED), None)

    def summary_frame(self) -> pd.DataFrame:
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

        rows = [
            (
                r.batch.number,
                r.batch.name,
                r.status,
                len(r.plan),
                r.attempts,
                round(r.duration_s, 3),
                round(r.longest_write_block_s * 1000, 1),
            )
            for r in self.results
        ]
        done = {r.batch.number for r in self.results}
        rows += [(b.number, b.name, "not applied", 0, 0, 0.0, 0.0) for b in self.plan.batches if b.number not in done]
        if not rows:
            return pd.DataFrame({"note": ["nothing pending: every migration is applied"]})
        return pd.DataFrame(
            rows, columns=["migration", "name", "status", "steps", "attempts", "duration_s", "longest write block (ms)"]
        ).set_index("migration")

    def blockers_frame(self) -> pd.DataFrame:
        return _each(
            self.results,
            lambda r: r.blockers_frame() if r.blocker_waits else None,
            "no session blocked the migrations' locks",
        )

    def steps_frame(self) -> pd.DataFrame:
        return _each(
            self.results, lambda r: r.steps_frame() if len(r.steps) > 1 else None, "every migration ran as one step"
        )

    def backfills_frame(self) -> pd.DataFrame:
        return _each(
            self.results, lambda r: r.backfills_frame() if r.backfills else None, "no statement ran in batches"
        )

    def timeline_frame(self) -> pd.DataFrame:
        return _each(
            self.results,
            lambda r: r.timeline_frame() if any(s.status != names.OK for s in r.statements) else None,
            "every statement ran at its first attempt",
        )

    def locks_frame(self) -> pd.DataFrame:
        return _each(
            self.results,
            lambda r: r.locks_frame() if any(h.blocks_writes for h in r.locks_before_commit) else None,
            "no write-blocking lock",
        )

    def changes_frame(self) -> pd.DataFrame:
        return _each(self.results, lambda r: r.changes_frame() if r.changes else None, "no catalog change")


@dataclass
class ReleaseValidation:
    """Validation of each migration the release applied: X/Y over all of them (the tests that ran)."""

    plan: ReleasePlan
    results: list[ValidationResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def total(self) -> int:
        """Y of X/Y: the tests that ran, over every migration."""
        return sum(r.total for r in self.results)

    @property
    def not_run(self) -> list[sqlblocks.BlockResult]:
        return [t for r in self.results for t in r.not_run]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def headline(self) -> str:
        percent = round(100.0 * self.passed / self.total, 1) if self.total else 0.0
        return f"{self.passed}/{self.total} tests passed ({percent:g}%) over {len(self.results)} migration(s)" + (
            f"; {len(self.not_run)} not run" if self.not_run else ""
        )

    def tests_frame(self) -> pd.DataFrame:
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

        rows = [(r.batch.number, r.batch.name, r.passed, r.total, len(r.not_run)) for r in self.results]
        if not rows:
            return pd.DataFrame({"note": ["no migration was applied by this release"]})
        return pd.DataFrame(rows, columns=["migration", "name", "passed", "tests run", "not run"]).set_index(
            "migration"
        )

    def orm_frame(self) -> pd.DataFrame:
        return _each(
            self.results[-1:], lambda r: r.orm_frame() if r.orm_mismatches else None, "no schema.prisma mismatch"
        )

    def raise_for_failures(self) -> None:
        problems = []
        for result in self.results:
            try:
                result.raise_for_failures()
            except ValidationFailed as exc:
                problems.append(str(exc).rstrip("."))
        if problems:
            raise ValidationFailed("; ".join(problems) + ".")


# Each phase's record type, by the name of its file (`<phase>.json`).
RECORD_TYPES: dict[str, type] = {
    "preflight": PreflightResult,
    "apply": ExecutionResult,
    "validate": ValidationResult,
    "rollback": ExecutionResult,
}
