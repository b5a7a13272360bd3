"""A batch is a folder: batch.toml (optional), migration.sql, rollback.sql, preflight.sql, validation.sql.

Prisma's layout (`<timestamp>_<name>/migration.sql`, no batch.toml) works as it is: such folders are
numbered by their order and each depends on the one before.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BatchError

MANIFEST = "batch.toml"
MIGRATION = "migration.sql"
ROLLBACK = "rollback.sql"
PREFLIGHT = "preflight.sql"
VALIDATION = "validation.sql"
README = "README.md"
KNOWN_FILES = (MANIFEST, MIGRATION, ROLLBACK, PREFLIGHT, VALIDATION, README, "schema.prisma")

_TOP_KEYS = {"batch", "title", "type", "depends_on", "description", "checks"}
_CHECK_KEYS = {"not_null", "foreign_keys"}
_FK_KEYS = {"column", "references", "on_delete"}
ON_DELETE_ACTIONS = {
    "restrict": "r",
    "no action": "a",
    "cascade": "c",
    "set null": "n",
    "set default": "d",
}
_IDENT = r'(?:"(?:[^"]|"")+"|[^".\s]+)'
_COLUMN_RE = re.compile(rf"^(?:({_IDENT})\.)?({_IDENT})\.({_IDENT})$")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _unquote(part: str | None) -> str | None:
    if part is None:
        return None
    if part.startswith('"') and part.endswith('"'):
        return part[1:-1].replace('""', '"')
    return part


@dataclass(frozen=True)
class ColumnRef:
    """`Table.column` or `schema.Table.column`, as written in batch.toml (case kept, as Prisma names them)."""

    table: str
    column: str
    schema: str | None = None

    @classmethod
    def parse(cls, text: str, where: str) -> "ColumnRef":
        match = _COLUMN_RE.match(text.strip()) if isinstance(text, str) else None
        if not match:
            raise BatchError(f"{where}: {text!r} is not a column; write it as \"Table.column\" (or \"schema.Table.column\").")
        schema, table, column = (_unquote(g) for g in match.groups())
        return cls(table=table, column=column, schema=schema)

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table

    def __str__(self) -> str:
        return f"{self.qualified_table}.{self.column}"


@dataclass(frozen=True)
class ForeignKeyCheck:
    column: ColumnRef
    references: ColumnRef
    on_delete: str  # one of ON_DELETE_ACTIONS

    def __str__(self) -> str:
        return f"{self.column} -> {self.references} ON DELETE {self.on_delete.upper()}"


@dataclass(frozen=True)
class Checks:
    """What the batch means, declared; expanded into gates (preflight) and tests (validate)."""

    not_null: tuple[ColumnRef, ...] = ()
    foreign_keys: tuple[ForeignKeyCheck, ...] = ()

    @property
    def tables(self) -> list[str]:
        seen: dict[str, None] = {}
        for ref in self.not_null:
            seen[ref.qualified_table] = None
        for fk in self.foreign_keys:
            seen[fk.column.qualified_table] = None
            seen[fk.references.qualified_table] = None
        return list(seen)

    def __bool__(self) -> bool:
        return bool(self.not_null or self.foreign_keys)


@dataclass(frozen=True)
class BatchFile:
    name: str
    path: Path
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Batch:
    number: int
    name: str
    path: Path
    title: str
    type: str
    depends_on: tuple[int, ...]
    checks: Checks = field(default_factory=Checks)
    description: str = ""

    def file(self, name: str) -> Path | None:
        path = self.path / name
        return path if path.is_file() else None

    @property
    def migration_path(self) -> Path:
        return self.path / MIGRATION

    @property
    def migration_sql(self) -> str:
        return self.migration_path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        """sha256 hex of migration.sql, as Prisma records it in _prisma_migrations."""
        return sha256_file(self.migration_path)

    def require(self, name: str, purpose: str) -> Path:
        path = self.file(name)
        if path is None:
            raise BatchError(f"Batch {self.number} has no {name} in {self.path}; add one to {purpose}.")
        return path

    @property
    def files(self) -> tuple[BatchFile, ...]:
        found = []
        for path in sorted(self.path.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                found.append(BatchFile(path.name, path, sha256_file(path), path.stat().st_size))
        return tuple(found)

    @property
    def readme(self) -> str:
        path = self.file(README)
        return path.read_text(encoding="utf-8") if path else ""

    @property
    def label(self) -> str:
        return f"batch {self.number} ({self.name})"


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"\s*{re.escape(key)}\s*=", line) or re.match(rf"\s*\[{re.escape(key)}\]", line):
            return number
    return 1


def _parse_checks(raw: object, where: str, text: str) -> Checks:
    if raw is None:
        return Checks()
    if not isinstance(raw, dict):
        raise BatchError(f"{where} line {_line_of(text, 'checks')}: [checks] must be a table; see README's batch.toml section.")
    unknown = sorted(set(raw) - _CHECK_KEYS)
    if unknown:
        key = unknown[0]
        raise BatchError(
            f"{where} line {_line_of(text, key)}: unknown check {key!r}; "
            f"the known checks are {', '.join(sorted(_CHECK_KEYS))}."
        )
    not_null_raw = raw.get("not_null", [])
    if not isinstance(not_null_raw, list):
        raise BatchError(f"{where} line {_line_of(text, 'not_null')}: not_null must be a list like [\"Lead.customer_id\"].")
    not_null = tuple(ColumnRef.parse(item, f"{where} line {_line_of(text, 'not_null')}") for item in not_null_raw)
    fks = []
    fk_raw = raw.get("foreign_keys", [])
    fk_line = _line_of(text, "foreign_keys")
    if not isinstance(fk_raw, list):
        raise BatchError(f"{where} line {fk_line}: foreign_keys must be a list of {{ column, references, on_delete }} tables.")
    for item in fk_raw:
        if not isinstance(item, dict):
            raise BatchError(f"{where} line {fk_line}: each foreign key must be a table {{ column = ..., references = ..., on_delete = ... }}.")
        unknown = sorted(set(item) - _FK_KEYS)
        if unknown:
            raise BatchError(f"{where} line {fk_line}: unknown foreign key field {unknown[0]!r}; use column, references, on_delete.")
        missing = [k for k in ("column", "references") if k not in item]
        if missing:
            raise BatchError(f"{where} line {fk_line}: a foreign key needs {missing[0]!r}.")
        action = str(item.get("on_delete", "no action")).strip().lower().replace("_", " ")
        if action not in ON_DELETE_ACTIONS:
            raise BatchError(
                f"{where} line {fk_line}: on_delete {item.get('on_delete')!r} is not an action; "
                f"use one of {', '.join(ON_DELETE_ACTIONS)}."
            )
        fks.append(
            ForeignKeyCheck(
                ColumnRef.parse(item["column"], f"{where} line {fk_line}"),
                ColumnRef.parse(item["references"], f"{where} line {fk_line}"),
                action,
            )
        )
    return Checks(not_null=not_null, foreign_keys=tuple(fks))


def _folder_number(path: Path) -> int | None:
    match = re.match(r"^(\d+)", path.name)
    return int(match.group(1)) if match else None


def load_folder(path: Path, *, position: int, previous: int | None) -> Batch:
    """One batch folder; `position` and `previous` number folders that have no batch.toml (Prisma)."""
    if not (path / MIGRATION).is_file():
        raise BatchError(f"{path} has no {MIGRATION}; every batch folder needs one (the forward change).")
    manifest = path / MANIFEST
    if not manifest.is_file():
        return Batch(
            number=position,
            name=path.name,
            path=path,
            title=path.name,
            type="Prisma migration",
            depends_on=(previous,) if previous is not None else (),
        )
    text = manifest.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BatchError(f"{manifest} is not valid TOML ({exc}); fix that line.") from None
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        key = unknown[0]
        raise BatchError(
            f"{manifest} line {_line_of(text, key)}: unknown key {key!r}; "
            f"the known keys are {', '.join(sorted(_TOP_KEYS))}."
        )
    number = raw.get("batch")
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise BatchError(f"{manifest} line {_line_of(text, 'batch')}: 'batch' must be a whole number, like batch = 7.")
    depends = raw.get("depends_on", [])
    if not isinstance(depends, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in depends):
        raise BatchError(f"{manifest} line {_line_of(text, 'depends_on')}: depends_on must be a list of batch numbers, like [6].")
    for key in ("title", "type", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise BatchError(f"{manifest} line {_line_of(text, key)}: {key} must be a string.")
    return Batch(
        number=number,
        name=path.name,
        path=path,
        title=raw.get("title") or path.name,
        type=raw.get("type") or "Schema migration",
        depends_on=tuple(depends),
        checks=_parse_checks(raw.get("checks"), str(manifest), text),
        description=raw.get("description", ""),
    )


def _where(batch: Batch, key: str) -> str:
    """`<folder>/batch.toml line N` where `key` is set; the folder alone for a Prisma folder (no batch.toml)."""
    manifest = batch.path / MANIFEST
    if not manifest.is_file():
        return str(batch.path)
    return f"{manifest} line {_line_of(manifest.read_text(encoding='utf-8'), key)}"


def discover(migrations_dir: Path | str) -> list[Batch]:
    """Every batch under `migrations_dir`, in order; duplicate numbers and unknown dependencies refused."""
    root = Path(migrations_dir)
    if not root.is_dir():
        raise BatchError(f"Migrations folder {root} does not exist; pass --migrations-dir with the folder holding your batches.")
    folders = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))),
        key=lambda p: (_folder_number(p) is None, _folder_number(p) or 0, p.name),
    )
    batches: list[Batch] = []
    previous: int | None = None
    for position, folder in enumerate(folders, start=1):
        if not any((folder / name).exists() for name in (MIGRATION, MANIFEST)):
            continue
        batch = load_folder(folder, position=position, previous=previous)
        batches.append(batch)
        previous = batch.number
    seen: dict[int, Batch] = {}
    for batch in batches:
        if batch.number in seen:
            raise BatchError(
                f"Batch number {batch.number} is used by both {_where(seen[batch.number], 'batch')} and "
                f"{_where(batch, 'batch')}; give each batch its own number in batch.toml."
            )
        seen[batch.number] = batch
    for batch in batches:
        for dep in batch.depends_on:
            if dep not in seen:
                raise BatchError(
                    f"{_where(batch, 'depends_on')}: depends_on names batch {dep}, which is not in {root}; "
                    "fix depends_on or add that batch."
                )
    _refuse_cycles(seen)
    return sorted(batches, key=lambda b: b.number)


def _refuse_cycles(batches: dict[int, Batch]) -> None:
    state: dict[int, int] = {}

    def visit(number: int, trail: list[int]) -> None:
        if state.get(number) == 2:
            return
        if state.get(number) == 1:
            cycle = " -> ".join(str(n) for n in trail[trail.index(number):] + [number])
            where = ", ".join(_where(batches[n], "depends_on") for n in trail[trail.index(number):])
            raise BatchError(
                f"Batches depend on each other in a cycle ({cycle}; see {where}); "
                "remove one of these depends_on entries."
            )
        state[number] = 1
        for dep in batches[number].depends_on:
            visit(dep, trail + [number])
        state[number] = 2

    for number in batches:
        visit(number, [])


def find(migrations_dir: Path | str, number: int) -> Batch:
    batches = discover(migrations_dir)
    for batch in batches:
        if batch.number == number:
            return batch
    known = ", ".join(str(b.number) for b in batches) or "none"
    raise BatchError(f"Batch {number} is not in {migrations_dir} (batches there: {known}); check the number or --migrations-dir.")


@dataclass(frozen=True)
class BatchInfo:
    """What a record keeps of a batch: enough to render a report without the folder."""

    number: int
    name: str
    title: str
    type: str
    path: str
    checksum: str
    depends_on: tuple[int, ...] = ()

    @classmethod
    def of(cls, batch: "Batch") -> "BatchInfo":
        return cls(batch.number, batch.name, batch.title, batch.type, str(batch.path), batch.checksum, batch.depends_on)
