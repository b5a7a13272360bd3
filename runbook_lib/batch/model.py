"""A batch is a folder: batch.toml (optional), migration.sql, rollback.sql, preflight.sql, validation.sql.

Prisma's layout (`<timestamp>_<name>/migration.sql`, no batch.toml) works as it is: such folders are
numbered by their order and each depends on the one before.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from runbook_lib.errors import BatchError

MANIFEST = "batch.toml"
MIGRATION = "migration.sql"
ROLLBACK = "rollback.sql"
PREFLIGHT = "preflight.sql"
VALIDATION = "validation.sql"
README = "README.md"
KNOWN_FILES = (MANIFEST, MIGRATION, ROLLBACK, PREFLIGHT, VALIDATION, README, "schema.prisma")

_TOP_KEYS = {"batch", "title", "type", "depends_on", "description", "checks"}
# The order in which errors list the check kinds: the two every tightening batch uses first.
CHECK_KINDS = ("foreign_keys", "not_null", "unique", "check", "column_type", "index")
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
    def parse(cls, text: str, where: str) -> "TableRef":
        match = _TABLE_RE.match(text.strip()) if isinstance(text, str) else None
        if not match:
            raise BatchError(f"{where}: {text!r} is not a table; write it as \"Table\" (or \"schema.Table\").")
        schema, table = (_unquote(g) for g in match.groups())
        return cls(table=table, schema=schema)

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table

    def column(self, name: str) -> "ColumnRef":
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
    def parse(cls, text: str, where: str) -> "ColumnRef":
        match = _COLUMN_RE.match(text.strip()) if isinstance(text, str) else None
        if not match:
            raise BatchError(f"{where}: {text!r} is not a column; write it as \"Table.column\" (or \"schema.Table.column\").")
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
        for item in (*self.unique, *self.check, *self.index):
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
        for item in (*self.unique, *self.index):
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
        return read_sql(self.migration_path)

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


class _Manifest:
    """batch.toml's text, to point each error at a file and line."""

    def __init__(self, where: str, text: str) -> None:
        self.where = where
        self.text = text

    def at(self, key: str, item: object = None) -> str:
        """`<file> line N`: the line of `item` in the list under `key` when it can be found, else the key's."""
        line = _line_of(self.text, key)
        needle = _needle(item)
        if needle:
            lines = self.text.splitlines()
            for number in range(line, len(lines) + 1):
                if needle in lines[number - 1]:
                    return f"{self.where} line {number}"
        return f"{self.where} line {line}"


def _needle(item: object) -> str | None:
    """A string that finds an item of a list in the TOML text: its text, or its first string field."""
    if isinstance(item, str):
        return f'"{item}"' if '"' not in item and "\\" not in item else None
    if isinstance(item, dict):
        for value in item.values():
            if isinstance(value, str):
                return _needle(value)
    return None


_SHAPES = {
    "not_null": '["Lead.customer_id"]',
    "foreign_keys": '[{ column = "Lead.customer_id", references = "Customer.id", on_delete = "restrict" }]',
    "unique": '["Customer.email"] or [{ table = "Customer", columns = ["email", "phone"] }]',
    "check": '[{ table = "Job", name = "Job_window_check" }]',
    "column_type": '[{ column = "Lead.name", type = "text" }]',
    "index": '[{ table = "Lead", columns = ["customer_id"] }]',
}


def _items(raw: dict, key: str, m: _Manifest) -> list:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise BatchError(f"{m.at(key)}: {key} must be a list, like {key} = {_SHAPES[key]}.")
    return value


def _fields(item: object, key: str, m: _Manifest, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """An inline table of a check, with exactly the known fields and each required one present."""
    if not isinstance(item, dict):
        raise BatchError(f"{m.at(key, item)}: each item of {key} must be a table, like {key} = {_SHAPES[key]}.")
    known = required + optional
    unknown = sorted(set(item) - set(known))
    if unknown:
        raise BatchError(f"{m.at(key, item)}: unknown field {unknown[0]!r} in {key}; use {', '.join(known)}.")
    missing = [name for name in required if name not in item]
    if missing:
        raise BatchError(f"{m.at(key, item)}: an item of {key} needs {missing[0]!r}, like {key} = {_SHAPES[key]}.")
    for name in known:
        if name in item and name != "columns" and not isinstance(item[name], str):
            raise BatchError(f"{m.at(key, item)}: {name} in {key} must be a string.")
    return item


def _column_names(item: dict, key: str, m: _Manifest) -> tuple[str, ...]:
    names = item["columns"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise BatchError(f"{m.at(key, item)}: columns in {key} must be a non-empty list of column names, like {_SHAPES[key]}.")
    if len(set(names)) != len(names):
        raise BatchError(f"{m.at(key, item)}: columns in {key} names a column twice; name each once.")
    return tuple(n.strip() for n in names)


def _parse_unique(item: object, m: _Manifest) -> UniqueCheck:
    if isinstance(item, str):
        ref = ColumnRef.parse(item, m.at("unique", item))
        return UniqueCheck(ref.table_ref, (ref.column,))
    item = _fields(item, "unique", m, ("table", "columns"))
    return UniqueCheck(TableRef.parse(item["table"], m.at("unique", item)), _column_names(item, "unique", m))


def type_name_sql(text: str) -> str | None:
    """`text` as the PostgreSQL parser reads a type name (e.g. "varchar(80)"), or None if it is anything else.

    The text goes into SQL only in this parsed and re-printed form: a cast of NULL with one plain type name
    and constant modifiers, nothing more.
    """
    from pglast import ast, parse_sql
    from pglast.parser import ParseError
    from pglast.stream import RawStream

    if not isinstance(text, str) or not text.strip() or ";" in text:
        return None
    try:
        statements = parse_sql(f"SELECT NULL::{text}")
    except ParseError:
        return None
    if len(statements) != 1 or not isinstance(statements[0].stmt, ast.SelectStmt):
        return None
    select = statements[0].stmt
    if select.fromClause or select.whereClause or select.valuesLists or len(select.targetList or ()) != 1:
        return None
    cast = select.targetList[0].val
    if not isinstance(cast, ast.TypeCast) or not isinstance(cast.arg, ast.A_Const) or not cast.arg.isnull:
        return None
    if not all(isinstance(mod, ast.A_Const) and isinstance(mod.val, ast.Integer) for mod in cast.typeName.typmods or ()):
        return None
    return RawStream()(cast.typeName)


def _parse_checks(raw: object, where: str, text: str) -> Checks:
    if raw is None:
        return Checks()
    m = _Manifest(where, text)
    if not isinstance(raw, dict):
        raise BatchError(f"{m.at('checks')}: [checks] must be a table; see README's batch.toml section.")
    unknown = [key for key in raw if key not in CHECK_KINDS]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, CHECK_KINDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise BatchError(
            f"{m.at(key)}: unknown check {key!r}; {hint}the known checks are {', '.join(CHECK_KINDS)}."
        )
    not_null = []
    for item in _items(raw, "not_null", m):
        not_null.append(ColumnRef.parse(item, m.at("not_null", item)))
    fks = []
    for item in _items(raw, "foreign_keys", m):
        if not isinstance(item, dict):
            raise BatchError(f"{m.at('foreign_keys')}: each foreign key must be a table "
                             "{ column = ..., references = ..., on_delete = ... }.")
        fk_at = m.at("foreign_keys", item)
        unknown = sorted(set(item) - _FK_KEYS)
        if unknown:
            raise BatchError(f"{fk_at}: unknown foreign key field {unknown[0]!r}; use column, references, on_delete.")
        missing = [k for k in ("column", "references") if k not in item]
        if missing:
            raise BatchError(f"{fk_at}: a foreign key needs {missing[0]!r}.")
        action = str(item.get("on_delete", "no action")).strip().lower().replace("_", " ")
        if action not in ON_DELETE_ACTIONS:
            raise BatchError(
                f"{fk_at}: on_delete {item.get('on_delete')!r} is not an action; "
                f"use one of {', '.join(ON_DELETE_ACTIONS)}."
            )
        fks.append(ForeignKeyCheck(ColumnRef.parse(item["column"], fk_at), ColumnRef.parse(item["references"], fk_at), action))
    unique = [_parse_unique(item, m) for item in _items(raw, "unique", m)]
    constraints = []
    for item in _items(raw, "check", m):
        item = _fields(item, "check", m, ("table", "name"))
        constraints.append(CheckConstraintCheck(TableRef.parse(item["table"], m.at("check", item)), item["name"]))
    types = []
    for item in _items(raw, "column_type", m):
        item = _fields(item, "column_type", m, ("column", "type"))
        at = m.at("column_type", item)
        if type_name_sql(item["type"]) is None:
            raise BatchError(f"{at}: {item['type']!r} is not a type name; "
                             'write it as PostgreSQL does, like "text" or "varchar(80)".')
        types.append(ColumnTypeCheck(ColumnRef.parse(item["column"], at), item["type"].strip()))
    indexes = []
    for item in _items(raw, "index", m):
        item = _fields(item, "index", m, ("table", "columns"))
        indexes.append(IndexCheck(TableRef.parse(item["table"], m.at("index", item)), _column_names(item, "index", m)))
    return Checks(not_null=tuple(not_null), foreign_keys=tuple(fks), unique=tuple(unique), check=tuple(constraints),
                  column_type=tuple(types), index=tuple(indexes))


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
