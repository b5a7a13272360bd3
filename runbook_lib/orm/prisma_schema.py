"""ORM alignment: does schema.prisma say what the database now enforces, for the columns a batch checks?

No Python library reads schema.prisma well (Prisma's own parser ships inside its Node.js/Rust
engines, and the Python client generates code from it rather than exposing it), so this module holds a
small parser for the part that matters here: models, fields (type, `?` optional, `[]` list), `@map`,
`@@map`, `@@schema`, and `@relation(fields:, references:, onDelete:)`. Prisma puts one field per line
and the parser relies on that; comments (`//`, `///`) are dropped, strings are respected.

For each column a batch's checks touch (`compare`), or every field schema.prisma declares
(`compare_all`, what validate runs when the file describes the state after the batch), a mismatch when
- the scalar field is optional (`String?`) but the column is NOT NULL, or the other way round;
- a relation over that field declares (or defaults to) another onDelete than the foreign key's
  ON DELETE action: Prisma's default is SetNull for an optional relation, Restrict for a required one;
  a relation whose optionality differs from the column's is reported with it.
Each mismatch carries the line as schema.prisma has it and the line as it should read, like the
"Prisma Schema Updates" section of the reference document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from runbook_lib.batch.model import Batch, ColumnRef, TableRef
from runbook_lib.batch.tableshape import TableShape, describe
from runbook_lib.display import frames as tables
from runbook_lib.display import markdown as md
from runbook_lib.errors import BatchError, CannotBuild

if TYPE_CHECKING:  # the annotations' DataFrame (start-up time: pandas loads when a table is built)
    import pandas as pd

SCHEMA_FILE = "schema.prisma"

# pg_constraint.confdeltype -> Prisma's referential action, and SQL's spelling.
PRISMA_ACTIONS = {"r": "Restrict", "a": "NoAction", "c": "Cascade", "n": "SetNull", "d": "SetDefault"}
SQL_ACTIONS = {"r": "RESTRICT", "a": "NO ACTION", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}

_BLOCK_START = re.compile(r"^\s*(model|enum|view|type|generator|datasource)\s+(\w+)\s*\{\s*$")
_FIELD = re.compile(
    r'^\s*(?P<name>\w+)\s+(?P<type>Unsupported\("(?:[^"\\]|\\.)*"\)|\w+(?:\.\w+)?)(?P<list>\[\])?(?P<optional>\?)?'
    r"(?P<rest>(?:\s.*)?)$"
)


@dataclass(frozen=True)
class Relation:
    fields: tuple[str, ...]  # the scalar fields of this model holding the key
    references: tuple[str, ...]
    on_delete: str | None  # as written: Restrict, SetNull, ... ; None: Prisma's default
    on_update: str | None = None  # as written; None: Prisma's default (Cascade)
    # the relation's name ("SiteOwner" in @relation("SiteOwner", ...)), if given; not part of equality
    name: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PrismaField:
    name: str
    type: str
    optional: bool
    list: bool
    db_name: str  # @map, else the field's name
    line: int
    text: str  # the line without its comment
    relation: Relation | None = None


@dataclass(frozen=True)
class PrismaModel:
    name: str
    db_name: str  # @@map, else the model's name
    schema: str | None  # @@schema (multiSchema), else None
    fields: tuple[PrismaField, ...]
    line: int
    attributes: tuple[str, ...] = ()  # the block attributes as written: "@@index([customerId])", "@@map(\"Lead\")"

    def field(self, name: str) -> PrismaField | None:
        return next((f for f in self.fields if f.name == name), None)

    def field_for_column(self, column: str) -> PrismaField | None:
        return next((f for f in self.fields if f.db_name == column and f.relation is None), None)


@dataclass(frozen=True)
class PrismaEnum:
    name: str
    db_name: str  # @@map, else the enum's name
    values: tuple[str, ...]


@dataclass(frozen=True)
class PrismaSchema:
    path: str
    models: tuple[PrismaModel, ...]
    enums: tuple[PrismaEnum, ...] = ()

    def enum(self, name: str) -> PrismaEnum | None:
        """The enum called `name` in schema.prisma, or whose @@map is `name` (the database's type name)."""
        return next((e for e in self.enums if name in (e.name, e.db_name)), None)

    def model(self, name: str) -> PrismaModel | None:
        return next((m for m in self.models if m.name == name), None)

    def model_for_table(self, table: TableRef) -> PrismaModel | None:
        for model in self.models:
            if model.db_name == table.table and (table.schema is None or model.schema in (None, table.schema)):
                return model
        return None


@dataclass(frozen=True)
class OrmMismatch:
    """One field whose schema.prisma line disagrees with the database, and the line that would agree."""

    model: str
    field: str
    column: str  # Table.column in the database
    aspect: str  # "required" | "onDelete" | "missing"
    schema_prisma: str  # the line as schema.prisma has it
    database: str  # what the catalog shows
    fix: str  # the line as it should read
    line: int = 0


# --- parsing --------------------------------------------------------------------------------------


def _strip_comment(line: str) -> str:
    """The line without `//` comments; a `//` inside a string stays."""
    for i, ch, _ in _top_level(line):
        if ch == "/" and line[i + 1 : i + 2] == "/":
            return line[:i].rstrip()
    return line.rstrip()


def _top_level(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, bracket depth after it) for each character outside string literals."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
            continue
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        yield i, ch, depth


def _attribute_args(text: str, name: str) -> tuple[str, int, int] | None:
    """The argument text of attribute `name` (e.g. "@relation") in `text`, and its span (the parentheses)."""
    for match in re.finditer(re.escape(name) + r"\s*\(", text):
        if match.start() > 0 and text[match.start() - 1] == "@":
            continue  # "@map" inside "@@map"
        for i, ch, depth in _top_level(text, match.end() - 1):
            if ch in ")]" and depth == 0:
                return text[match.end() : i], match.end() - 1, i
        return None
    return None


def _split_args(text: str) -> list[tuple[str | None, str]]:
    """`"name", fields: [a, b], onDelete: Restrict` -> [(None, '"name"'), ("fields", "[a, b]"), ...]."""
    parts, start = [], 0
    padded = text + ","
    for i, ch, depth in _top_level(padded):
        if ch == "," and depth == 0:
            part = padded[start:i].strip()
            if part:
                key = re.match(r"^(\w+)\s*:\s*(.*)$", part, re.S)
                parts.append((key.group(1), key.group(2).strip()) if key else (None, part))
            start = i + 1
    return parts


def _string(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _names(value: str) -> tuple[str, ...]:
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    return tuple(part.strip() for part in value.split(",") if part.strip())


_COMMENT_OR_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|//[^\n]*|/\*.*?(?:\*/|\Z)', re.S)


def _without_block_comments(text: str) -> str:
    """`/* ... */` and `/** ... */` blanked out, their newlines kept so every line keeps its number.

    A `/*` inside a string ("...") or a line comment is text, not a comment.
    """

    def blank(match: re.Match) -> str:
        found = match.group(0)
        if found.startswith("/*"):
            return "".join(c if c == "\n" else " " for c in found)
        return found

    return _COMMENT_OR_STRING.sub(blank, text)


def parse(text: str, *, path: str = SCHEMA_FILE) -> PrismaSchema:
    """The models of a schema.prisma; a line it cannot read as a field names the file and the line."""
    models, enums = [], []
    lines = _without_block_comments(text).splitlines()
    number = 0
    while number < len(lines):
        line = _strip_comment(lines[number])
        number += 1
        start = _BLOCK_START.match(line)
        if not start:
            continue
        kind, name, first = start.group(1), start.group(2), number
        fields, db_name, schema, attributes, values = [], name, None, [], []
        while number < len(lines):
            body = _strip_comment(lines[number])
            number += 1
            if body.strip() == "}":
                break
            if kind == "enum" and body.strip():
                stripped = body.strip()
                if stripped.startswith("@@"):
                    mapped = _attribute_args(stripped, "@@map")
                    if mapped:
                        db_name = _string(_split_args(mapped[0])[0][1])
                else:
                    values.append(stripped.split()[0])
                continue
            if kind != "model" or not body.strip():
                continue
            stripped = body.strip()
            if stripped.startswith("@@"):
                attributes.append(stripped)
                mapped = _attribute_args(stripped, "@@map")
                if mapped:
                    db_name = _string(_split_args(mapped[0])[0][1])
                in_schema = _attribute_args(stripped, "@@schema")
                if in_schema:
                    schema = _string(_split_args(in_schema[0])[0][1])
                continue
            match = _FIELD.match(body)
            if not match:
                raise BatchError(
                    f"{path} line {number}: cannot read {stripped!r} in model {name} as a field; "
                    "fix the line (one field per line: name Type attributes)."
                )
            rest = match.group("rest")
            mapped = _attribute_args(rest, "@map")
            relation = None
            relation_args = _attribute_args(rest, "@relation")
            if relation_args:
                parts = _split_args(relation_args[0])
                args = dict((k, v) for k, v in parts if k)
                named = next((_string(v) for k, v in parts if k is None), None) or (
                    _string(args["name"]) if "name" in args else None
                )
                if "fields" in args:
                    relation = Relation(
                        _names(args["fields"]),
                        _names(args.get("references", "")),
                        args["onDelete"].strip() if "onDelete" in args else None,
                        args["onUpdate"].strip() if "onUpdate" in args else None,
                        named,
                    )
            fields.append(
                PrismaField(
                    name=match.group("name"),
                    type=match.group("type"),
                    optional=bool(match.group("optional")),
                    list=bool(match.group("list")),
                    db_name=_string(_split_args(mapped[0])[0][1]) if mapped else match.group("name"),
                    line=number,
                    text=stripped,
                    relation=relation,
                )
            )
        else:
            if kind == "model":
                raise BatchError(f"{path} line {first}: model {name} has no closing brace; close it with '}}'.")
        if kind == "model":
            models.append(PrismaModel(name, db_name, schema, tuple(fields), first, tuple(attributes)))
        elif kind == "enum":
            enums.append(PrismaEnum(name, db_name, tuple(values)))
    return PrismaSchema(path, tuple(models), tuple(enums))


_LOADED: dict[tuple, PrismaSchema] = {}  # (path, mtime, size) of each file read -> the schema


def load(path: Path | str) -> PrismaSchema:
    """The parsed schema.prisma, read once per version of the file (a release validates hundreds of batches).

    A folder is a `prismaSchemaFolder` schema: every .prisma file in it (and below), read as one schema."""
    path = Path(path)
    files = sorted(path.rglob("*.prisma")) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        raise BatchError(
            f"{path} does not exist (or holds no .prisma file); pass the schema.prisma (or schema "
            "folder) to compare with, or none to look next to the batch."
        )
    key = tuple((str(f.resolve()), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    if key not in _LOADED:
        _LOADED[key] = parse("\n".join(f.read_text(encoding="utf-8") for f in files), path=str(path))
    return _LOADED[key]


def project_schema(migrations_dir: Path | str) -> Path | None:
    """The project's schema: schema.prisma beside the migrations folder (prisma/schema.prisma), else a schema
    folder (prismaSchemaFolder: the migrations folder's parent holding *.prisma files, or its `schema/`
    subfolder); None when there is neither."""
    parent = Path(migrations_dir).resolve().parent
    if (parent / SCHEMA_FILE).is_file():
        return parent / SCHEMA_FILE
    for folder in (parent, parent / "schema"):
        if folder.is_dir() and any(p.suffix == ".prisma" for p in folder.iterdir() if p.is_file()):
            return folder
    return None


def find(batch: Batch, migrations_dir: Path | str | None = None) -> Path | None:
    """The schema.prisma for a batch: its own folder's (the state after it), else the project's (`project_schema`)."""
    own = batch.path / SCHEMA_FILE
    if own.is_file():
        return own
    return project_schema(migrations_dir or batch.path.parent)


# --- comparing ------------------------------------------------------------------------------------


def _with_optional(text: str, optional: bool) -> str:
    """The field's line with `?` after its type added or removed; the column alignment kept when possible."""
    match = _FIELD.match(text)
    assert match is not None  # a field's line, as the parser read it with _FIELD
    old = match.group("type") + (match.group("list") or "") + (match.group("optional") or "")
    new = match.group("type") + (match.group("list") or "") + ("?" if optional else "")
    start = match.start("type")
    rest = text[start + len(old) :]
    if len(new) < len(old) and rest.startswith(" "):
        rest = " " * (len(old) - len(new)) + rest
    elif len(new) > len(old) and rest.startswith("  "):
        rest = rest[len(new) - len(old) :]
    return text[:start] + new + rest


def _with_on_delete(text: str, action: str) -> str:
    args = _attribute_args(text, "@relation")
    if args is None:
        return text
    inner, open_at, close_at = args
    if re.search(r"\bonDelete\s*:", inner):
        inner = re.sub(r"\bonDelete\s*:\s*\w+", f"onDelete: {action}", inner)
    else:
        inner = inner.rstrip() + f", onDelete: {action}"
    return text[: open_at + 1] + inner + text[close_at:]


def compare(conn: psycopg.Connection, schema: PrismaSchema, columns: list[ColumnRef]) -> list[OrmMismatch]:
    """Every field of `schema` that disagrees with the database about one of `columns` (read from pg_catalog)."""
    mismatches: list[OrmMismatch] = []
    shapes: dict[TableRef, TableShape | None] = {}
    for ref in columns:
        table = ref.table_ref
        model = schema.model_for_table(table)
        if model is None:
            mismatches.append(
                OrmMismatch(
                    "",
                    "",
                    str(ref),
                    "missing",
                    f"no model maps to table {table}",
                    "table exists" if _shape(conn, shapes, table) else "no such table",
                    f'model {table.table} {{ ... @@map("{table.table}") }}',
                )
            )
            continue
        shape = _shape(conn, shapes, table)
        column = shape.column(ref.column) if shape else None
        scalar = model.field_for_column(ref.column)
        if column is None or scalar is None:
            if column is not None or scalar is not None:
                mismatches.append(
                    OrmMismatch(
                        model.name,
                        scalar.name if scalar else "",
                        str(ref),
                        "missing",
                        scalar.text if scalar else f"no field maps to column {ref.column}",
                        f"{ref.column} {column.type}" if column else f"no column {ref.column}",
                        "add the field" if column else "remove the field",
                        scalar.line if scalar else model.line,
                    )
                )
            continue
        assert shape is not None  # the column was found in it
        nullability = "NULL" if not column.not_null else "NOT NULL"
        if scalar.optional == column.not_null:
            mismatches.append(
                OrmMismatch(
                    model.name,
                    scalar.name,
                    str(ref),
                    "required",
                    scalar.text,
                    f"{column.name} {column.type} {nullability}",
                    _with_optional(scalar.text, not column.not_null),
                    scalar.line,
                )
            )
        for relation_field in model.fields:
            relation = relation_field.relation
            if relation is None or scalar.name not in relation.fields:
                continue
            mismatch = _relation_mismatch(model, relation_field, shape, str(ref))
            if mismatch is not None:
                mismatches.append(mismatch)
    # A relation over two checked columns is reported once.
    unique: dict[tuple[str, str, str], OrmMismatch] = {}
    for mismatch in mismatches:
        unique.setdefault((mismatch.model, mismatch.field, mismatch.aspect), mismatch)
    return list(unique.values())


def declared_columns(schema: PrismaSchema) -> list[ColumnRef]:
    """Every column schema.prisma declares: each scalar field (not a relation, not @ignore) of each model."""
    models = {m.name for m in schema.models}
    return [
        ColumnRef(model.db_name, f.db_name, model.schema)
        for model in schema.models
        for f in model.fields
        if f.type not in models and not re.search(r"(?<!@)@ignore\b", f.text)
    ]


def compare_all(conn: psycopg.Connection, schema: PrismaSchema) -> list[OrmMismatch]:
    """Every model and field of `schema` against the database: optionality, relations' onDelete, missing tables."""
    return compare(conn, schema, declared_columns(schema))


def _shape(conn: psycopg.Connection, shapes: dict[TableRef, TableShape | None], table: TableRef) -> TableShape | None:
    if table not in shapes:
        try:
            shapes[table] = describe(conn, table)
        except CannotBuild:
            shapes[table] = None
    return shapes[table]


def _relation_mismatch(
    model: PrismaModel, relation_field: PrismaField, shape: TableShape, column: str
) -> OrmMismatch | None:
    relation = relation_field.relation
    assert relation is not None  # compare passes only a field with a @relation
    scalars = [model.field(name) for name in relation.fields]
    db_columns = tuple(f.db_name if f else name for f, name in zip(scalars, relation.fields, strict=True))
    key = next((fk for fk in shape.foreign_keys if fk.columns == db_columns), None)
    said_action = relation.on_delete or ("SetNull" if relation_field.optional else "Restrict")
    said = relation_field.text + ("" if relation.on_delete else f"  // onDelete: {said_action}, Prisma's default")
    if key is None:
        return OrmMismatch(
            model.name,
            relation_field.name,
            column,
            "onDelete",
            relation_field.text,
            f"no foreign key on ({', '.join(db_columns)})",
            "add the foreign key, or remove the relation",
            relation_field.line,
        )
    nullable = any(c is None or not c.not_null for c in (shape.column(n) for n in db_columns))
    action = PRISMA_ACTIONS.get(key.on_delete, key.on_delete)
    if said_action == action and relation_field.optional == nullable:
        return None
    database = (
        f"{key.name}: FOREIGN KEY ({', '.join(db_columns)}) ON DELETE {SQL_ACTIONS.get(key.on_delete)}, "
        f"{'nullable' if nullable else 'NOT NULL'}"
    )
    fix = _with_on_delete(_with_optional(relation_field.text, nullable), action)
    return OrmMismatch(model.name, relation_field.name, column, "onDelete", said, database, fix, relation_field.line)


# --- showing --------------------------------------------------------------------------------------


def frame(mismatches: list[OrmMismatch]) -> pd.DataFrame:
    return tables.frame(
        mismatches,
        ["model", "field", "column", "schema_prisma", "database", "fix"],
        empty="schema.prisma agrees with the database",
    )


def section(mismatches: list[OrmMismatch], schema_path: str | None, scope: str = "") -> md.Section:
    """ "Prisma Schema Updates": per model, the lines schema.prisma has and the lines that would agree."""
    if schema_path is None:
        return md.Section("Prisma Schema Updates", "No schema.prisma found next to the batch; nothing compared.")
    if not mismatches:
        return md.Section(
            "Prisma Schema Updates",
            f"{md.code(schema_path)} agrees with the database for {md.text(scope or 'every column the batch checks')}.",
        )
    parts = [f"{md.code(schema_path)} disagrees with the database:"]
    for model in dict.fromkeys(m.model for m in mismatches):
        found = [m for m in mismatches if m.model == model]
        parts.append(f"### {md.text(model or 'Missing models')} Model")
        parts.append(
            "**schema.prisma says**:\n\n" + md.block("\n".join(f"  {m.schema_prisma}" for m in found), "prisma")
        )
        parts.append(
            "**Database says**:\n\n"
            + "\n".join(f"- {md.text(m.field or m.column)}: {md.text(m.database)}" for m in found)
        )
        parts.append("**Fix**:\n\n" + md.block("\n".join(f"  {m.fix}" for m in found), "prisma"))
    parts.append("Then regenerate the client: " + md.code("npx prisma generate"))
    return md.Section("Prisma Schema Updates", "\n\n".join(parts))


@dataclass
class OrmAlignment:
    """The comparison of one schema.prisma with the database."""

    schema_path: str | None
    mismatches: list[OrmMismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def align(
    conn: psycopg.Connection,
    batch: Batch,
    schema_path: Path | str | None = None,
    migrations_dir: Path | str | None = None,
) -> OrmAlignment:
    """Compare the batch's checked columns with schema.prisma (given, or found next to the batch)."""
    path = Path(schema_path) if schema_path else find(batch, migrations_dir)
    if path is None:
        return OrmAlignment(None)
    schema = load(path)
    return OrmAlignment(str(path), compare(conn, schema, batch.checks.columns))
