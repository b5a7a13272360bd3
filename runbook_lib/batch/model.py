"""What a batch is: a folder of files, the checks it declares, and what a record keeps of it.

A batch is a folder: batch.toml (optional), migration.sql, rollback.sql, preflight.sql, validation.sql.

Prisma's layout (`<timestamp>_<name>/migration.sql`, no batch.toml) works as it is: such folders are
numbered by their order and each depends on the one before.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

from runbook_lib.errors import BatchError
from runbook_lib.layouts.base import FLYWAY, PRISMA, RUNBOOK, LayoutSettings, Migration

MANIFEST = "batch.toml"
MIGRATION = "migration.sql"
ROLLBACK = "rollback.sql"
PREFLIGHT = "preflight.sql"
VALIDATION = "validation.sql"
README = "README.md"
KNOWN_FILES = (MANIFEST, MIGRATION, ROLLBACK, PREFLIGHT, VALIDATION, README, "schema.prisma")

# The order in which errors list the check kinds: the two every tightening batch uses first.
CHECK_KINDS = ("foreign_keys", "not_null", "unique", "check", "column_type", "index")
ON_DELETE_ACTIONS = {
    "restrict": "r",
    "no action": "a",
    "cascade": "c",
    "set null": "n",
    "set default": "d",
}
_IDENT = r'(?:"(?:[^"]|"")+"|[^".\s]+)'
_COLUMN_RE = re.compile(rf"^(?:({_IDENT})\.)?({_IDENT})\.({_IDENT})$")
_TABLE_RE = re.compile(rf"^(?:({_IDENT})\.)?({_IDENT})$")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_sql(path: Path) -> str:
    """A SQL file's text exactly as its bytes say, as psql and Prisma send it.

    Path.read_text() would turn CRLF into LF, changing every string literal that spans lines in a
    file written on Windows (the checksum, taken over the bytes, would not show it).
    """
    with path.open(encoding="utf-8", newline="") as handle:
        return handle.read()


@overload
def _unquote(part: str) -> str: ...


@overload
def _unquote(part: None) -> None: ...


def _unquote(part: str | None) -> str | None:
    if part is None:
        return None
    if part.startswith('"') and part.endswith('"'):
        return part[1:-1].replace('""', '"')
    return part


@dataclass(frozen=True)
class TableRef:
    """`Table` or `schema.Table`, as written in batch.toml."""

    table: str
    schema: str | None = None

    @classmethod
    def parse(cls, text: str, where: str) -> TableRef:
        match = _TABLE_RE.match(text.strip()) if isinstance(text, str) else None
        if not match:
            raise BatchError(f'{where}: {text!r} is not a table; write it as "Table" (or "schema.Table").')
        schema, table = (_unquote(g) for g in match.groups())
        return cls(table=table, schema=schema)

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table

    def column(self, name: str) -> ColumnRef:
        return ColumnRef(table=self.table, column=name, schema=self.schema)

    def __str__(self) -> str:
        return self.qualified_table


@dataclass(frozen=True)
class ColumnRef:
    """`Table.column` or `schema.Table.column`, as written in batch.toml (case kept, as Prisma names them)."""

    table: str
    column: str
    schema: str | None = None

    @classmethod
    def parse(cls, text: str, where: str) -> ColumnRef:
        match = _COLUMN_RE.match(text.strip()) if isinstance(text, str) else None
        if not match:
            raise BatchError(
                f'{where}: {text!r} is not a column; write it as "Table.column" (or "schema.Table.column").'
            )
        schema, table, column = (_unquote(g) for g in match.groups())
        return cls(table=table, column=column, schema=schema)

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table

    @property
    def table_ref(self) -> TableRef:
        return TableRef(table=self.table, schema=self.schema)

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
class UniqueCheck:
    """A unique constraint or unique index on exactly these columns of one table (in any order)."""

    table: TableRef
    columns: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.table}({', '.join(self.columns)})"


@dataclass(frozen=True)
class CheckConstraintCheck:
    """A CHECK constraint, by name, that exists and is validated (not left NOT VALID)."""

    table: TableRef
    name: str

    def __str__(self) -> str:
        return f"{self.table} CHECK {self.name}"


@dataclass(frozen=True)
class ColumnTypeCheck:
    """A column's type as format_type() shows it; `type` as written in batch.toml (e.g. "varchar(80)")."""

    column: ColumnRef
    type: str

    def __str__(self) -> str:
        return f"{self.column} {self.type}"


@dataclass(frozen=True)
class IndexCheck:
    """A valid index whose key columns are exactly these, in this order."""

    table: TableRef
    columns: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.table}({', '.join(self.columns)})"


@dataclass(frozen=True)
class Checks:
    """What the batch means, declared; expanded into gates (preflight) and tests (validate)."""

    not_null: tuple[ColumnRef, ...] = ()
    foreign_keys: tuple[ForeignKeyCheck, ...] = ()
    unique: tuple[UniqueCheck, ...] = ()
    check: tuple[CheckConstraintCheck, ...] = ()
    column_type: tuple[ColumnTypeCheck, ...] = ()
    index: tuple[IndexCheck, ...] = ()

    @property
    def tables(self) -> list[str]:
        seen: dict[str, None] = {}
        for ref in self.not_null:
            seen[ref.qualified_table] = None
        for fk in self.foreign_keys:
            seen[fk.column.qualified_table] = None
            seen[fk.references.qualified_table] = None
        checks: tuple[UniqueCheck | CheckConstraintCheck | IndexCheck, ...] = (*self.unique, *self.check, *self.index)
        for item in checks:
            seen[item.table.qualified_table] = None
        for typed in self.column_type:
            seen[typed.column.qualified_table] = None
        return list(seen)

    @property
    def columns(self) -> list[ColumnRef]:
        """Every column a check names, once, in order: what ORM alignment compares."""
        seen: dict[ColumnRef, None] = {}
        for ref in self.not_null:
            seen[ref] = None
        for fk in self.foreign_keys:
            seen[fk.column] = None
        keyed: tuple[UniqueCheck | IndexCheck, ...] = (*self.unique, *self.index)
        for item in keyed:
            for name in item.columns:
                seen[item.table.column(name)] = None
        for typed in self.column_type:
            seen[typed.column] = None
        return list(seen)

    def __bool__(self) -> bool:
        return any((self.not_null, self.foreign_keys, self.unique, self.check, self.column_type, self.index))


@dataclass(frozen=True)
class BatchFile:
    name: str
    path: Path
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Batch:
    """A migration as a folder: its number, what it depends on, its files and the checks it declares.

    Found by `batch.find` / `batch.discover` (batch.toml through `batch.manifest`, or a Prisma folder as it
    is); `checks` is the [checks] table that preflight turns into gates and validate into tests.
    """

    number: int
    name: str
    path: Path
    title: str
    type: str
    depends_on: tuple[int, ...]
    checks: Checks = field(default_factory=Checks)
    description: str = ""
    # statements of migration.sql (1-based) a runbook notebook pauses before, for an approval (phases.stepwise)
    pause_before: tuple[int, ...] = ()
    # another tool's migration (golang-migrate, Flyway, Drizzle): `path` is its SQL file, not a folder
    tool: Migration | None = field(default=None, compare=False, repr=False)
    settings: LayoutSettings | None = field(default=None, compare=False, repr=False)

    @property
    def layout(self) -> str:
        if self.settings is not None and self.tool is not None:
            return self.settings.layout or ""
        return PRISMA if self.prisma_layout else RUNBOOK

    def file(self, name: str) -> Path | None:
        if self.tool is not None:  # a tool's migration has its forward file and, maybe, an undo script
            found = {MIGRATION: self.tool.path, ROLLBACK: self.tool.down}.get(name)
            return found if found is not None and found.is_file() else None
        path = self.path / name
        return path if path.is_file() else None

    @property
    def migration_path(self) -> Path:
        return self.tool.path if self.tool is not None else self.path / MIGRATION

    @property
    def migration_sql(self) -> str:
        """The SQL to run: the file's, with a tool's placeholders substituted (Flyway's ${name})."""
        return self.tool.sql if self.tool is not None else read_sql(self.migration_path)

    @property
    def checksum(self) -> str:
        """sha256 hex of migration.sql, as Prisma records it in _prisma_migrations."""
        return sha256_file(self.migration_path)

    @property
    def rollback_sql(self) -> str:
        """The undo script's SQL (rollback.sql, or the tool's): a Flyway undo script with its placeholders
        substituted, as Flyway runs it."""
        path = self.require(ROLLBACK, "make the batch reversible")
        if self.tool is not None and self.settings is not None and self.settings.layout == FLYWAY:
            from runbook_lib.layouts import flyway  # only a Flyway project's undo scripts need it

            return flyway.substitute(read_sql(path), path, self.settings)
        return read_sql(path)

    def require(self, name: str, purpose: str) -> Path:
        path = self.file(name)
        if path is None:
            raise BatchError(f"Batch {self.number} has no {name} in {self.path}; add one to {purpose}.")
        return path

    @property
    def files(self) -> tuple[BatchFile, ...]:
        found = []
        if self.tool is not None:
            paths = [p for p in (self.tool.path, self.tool.down) if p is not None and p.is_file()]
            return tuple(BatchFile(p.name, p, sha256_file(p), p.stat().st_size) for p in paths)
        for path in sorted(self.path.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                found.append(BatchFile(path.name, path, sha256_file(path), path.stat().st_size))
        return tuple(found)

    @property
    def readme(self) -> str:
        if self.tool is not None:
            return ""
        path = self.file(README)
        return path.read_text(encoding="utf-8") if path else ""

    @property
    def prisma_layout(self) -> bool:
        """A folder as Prisma writes it (migration.sql, no batch.toml): Prisma's history is its other ledger."""
        return self.tool is None and not (self.path / MANIFEST).is_file()

    @property
    def label(self) -> str:
        return f"batch {self.number} ({self.name})"


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
    def of(cls, batch: Batch) -> BatchInfo:
        return cls(batch.number, batch.name, batch.title, batch.type, str(batch.path), batch.checksum, batch.depends_on)
