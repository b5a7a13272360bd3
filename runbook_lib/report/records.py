"""The run folder and its JSON records: the contract between the phases and the summary.

`reports/<database>/<batch>/<run-id>/` holds each executed notebook, a `<phase>.json` record written
by the phase itself, and the rendered reports.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import types
import typing
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from runbook_lib.errors import RunbookError

T = TypeVar("T")
PHASES = ("preflight", "apply", "validate", "rollback", "summary")


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
    return json.dumps(_jsonable(record), indent=2, ensure_ascii=False)


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
        path = self.record_path(phase)
        if not path.exists():
            return None
        return from_json(cls, path.read_text(encoding="utf-8"))

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
