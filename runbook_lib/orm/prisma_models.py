"""Prisma Schema Updates, measured: what each changed model's fields are before and after a batch, in
Prisma's own syntax, from the catalog snapshots apply takes (`db.catalog`), with the names schema.prisma gives.

What the catalog decides: each field's type (PostgreSQL's type through Prisma's documented native type
mapping, `@db.*` where the type is not Prisma's default for the scalar), optionality, database defaults,
`@id`/`@@id`, `@unique`/`@@unique`, `@@index` and each relation's referential actions (onDelete, onUpdate).
What schema.prisma decides: model, field and relation names (matched through `@map`/`@@map`), enum names,
back-relations and what only Prisma knows (`@updatedAt`, `@default(cuid())`, `uuid()`, `nanoid()`...).
Every place schema.prisma disagrees with the catalog after the batch is named field by field. Without
schema.prisma the names are the database's, as `prisma db pull` would write them, and the result says so.

Pure: no database; `updates(before, after, schema)` and `updates_markdown(...)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import overload

from runbook_lib.batch.model import TableRef
from runbook_lib.db.catalog import CatalogSnapshot, ColumnInfo, TableSnapshot
from runbook_lib.orm.prisma_schema import PrismaField, PrismaModel, PrismaSchema

# SQL's referential actions (catalog.FK_ACTIONS' spelling) -> Prisma's.
ACTIONS = {
    "NO ACTION": "NoAction",
    "RESTRICT": "Restrict",
    "CASCADE": "Cascade",
    "SET NULL": "SetNull",
    "SET DEFAULT": "SetDefault",
}
PRISMA_ONLY_DEFAULTS = re.compile(r"^(cuid|uuid|nanoid|ulid)\s*\(.*\)$")
SCALARS = ("String", "Boolean", "Int", "BigInt", "Float", "Decimal", "DateTime", "Json", "Bytes")


# --- what one line of a model says ---------------------------------------------------------------


@dataclass(frozen=True)
class RelationInfo:
    target_model: str
    target_table: str
    fields: tuple[str, ...]  # this model's field names
    columns: tuple[str, ...]  # their columns
    references: tuple[str, ...]  # the target's field names
    on_delete: str  # Prisma's spelling: Restrict, SetNull, Cascade, NoAction, SetDefault
    on_update: str
    constraint: str  # the foreign key's name in the database
    name: str | None = None  # @relation("Name", ...)


@dataclass(frozen=True)
class PrismaLine:
    """One line of a model: a scalar field, a relation field, a back-relation (from schema.prisma) or a
    block attribute (`@@index([...])`); `key` identifies it across the two snapshots."""

    key: str
    kind: str  # scalar | relation | backrelation | attribute
    name: str = ""
    type: str = ""  # as written after the name: "String?", "Customer", "String[]"
    attributes: str = ""  # "@id @default(cuid())"
    scalar: str | None = None  # Prisma's scalar ("String"), the enum's name, or None when unknown
    enum: bool = False
    list: bool = False
    optional: bool = False
    column: str | None = None
    pg_type: str | None = None
    default: str | None = None  # inside @default(...), database or Prisma-only
    prisma_only: tuple[str, ...] = ()  # attributes only schema.prisma knows: "@updatedAt", "@default(cuid())"
    relation: RelationInfo | None = None

    @property
    def text(self) -> str:
        return " ".join(p for p in (self.name, self.type, self.attributes) if p)

    @property
    def relation_info(self) -> RelationInfo:
        """A relation line's relation (a line of kind "relation" always has one; no other line has)."""
        if self.relation is None:
            raise ValueError(f"{self.key} is a {self.kind} line, not a relation")
        return self.relation

    @property
    def needs_value(self) -> bool:
        """Must create() give it? A required scalar with no default of any kind."""
        return (
            self.kind == "scalar"
            and not self.optional
            and not self.list
            and self.default is None
            and "@updatedAt" not in self.prisma_only
        )


@dataclass(frozen=True)
class FieldChange:
    key: str
    before: PrismaLine | None  # None: added by the batch
    after: PrismaLine | None  # None: removed by the batch
    what: tuple[str, ...]  # "required (was optional)", "onDelete: Restrict (was SetNull)"

    @property
    def name(self) -> str:
        line = self.after or self.before
        assert line is not None  # a line added, removed or changed: there is one before or after
        return line.name or line.text


@dataclass(frozen=True)
class Disagreement:
    """One place schema.prisma says something else than the catalog after the batch."""

    model: str
    field: str  # the field's name, or the block attribute
    # aspect: missing model | missing field | missing column | type | optional | default | id | unique | index |
    # relation | onDelete | onUpdate
    aspect: str
    schema_prisma: str  # what schema.prisma says
    database: str  # what the catalog says
    line: int = 0


@dataclass
class ModelUpdate:
    model: str
    table: str
    changes: list[FieldChange]
    after: list[PrismaLine]  # the whole model after the batch
    before: list[PrismaLine]
    names_from_schema: bool
    block_attributes: list[str] = field(
        default_factory=list
    )  # @@map, @@schema as schema.prisma or the catalog gives them
    notes: list[str] = field(default_factory=list)

    @property
    def changed_keys(self) -> set[str]:
        return {c.key for c in self.changes}


@dataclass
class ModelUpdates:
    models: list[ModelUpdate]
    disagreements: list[Disagreement]
    schema_path: str | None
    notes: list[str] = field(default_factory=list)


# --- PostgreSQL -> Prisma -------------------------------------------------------------------------

_NATIVE = [
    (r"text", "String", None),
    (r"character varying\((\d+)\)", "String", "@db.VarChar({0})"),
    (r"character varying", "String", "@db.VarChar"),
    (r"character\((\d+)\)", "String", "@db.Char({0})"),
    (r"character", "String", "@db.Char(1)"),
    (r"uuid", "String", "@db.Uuid"),
    (r"xml", "String", "@db.Xml"),
    (r"inet", "String", "@db.Inet"),
    (r"citext", "String", "@db.Citext"),
    (r"bit\((\d+)\)", "String", "@db.Bit({0})"),
    (r"bit varying(?:\((\d+)\))?", "String", "@db.VarBit"),
    (r"boolean", "Boolean", None),
    (r"integer", "Int", None),
    (r"smallint", "Int", "@db.SmallInt"),
    (r"oid", "Int", "@db.Oid"),
    (r"bigint", "BigInt", None),
    (r"double precision", "Float", None),
    (r"real", "Float", "@db.Real"),
    (r"numeric\(65,30\)", "Decimal", None),
    (r"numeric\((\d+),(\d+)\)", "Decimal", "@db.Decimal({0}, {1})"),
    (r"numeric", "Decimal", "@db.Decimal"),
    (r"money", "Decimal", "@db.Money"),
    (r"timestamp\(3\) without time zone", "DateTime", None),
    (r"timestamp\((\d)\) without time zone", "DateTime", "@db.Timestamp({0})"),
    (r"timestamp without time zone", "DateTime", "@db.Timestamp(6)"),
    (r"timestamp\((\d)\) with time zone", "DateTime", "@db.Timestamptz({0})"),
    (r"timestamp with time zone", "DateTime", "@db.Timestamptz(6)"),
    (r"date", "DateTime", "@db.Date"),
    (r"time\((\d)\) without time zone", "DateTime", "@db.Time({0})"),
    (r"time without time zone", "DateTime", "@db.Time(6)"),
    (r"time\((\d)\) with time zone", "DateTime", "@db.Timetz({0})"),
    (r"time with time zone", "DateTime", "@db.Timetz(6)"),
    (r"jsonb", "Json", None),
    (r"json", "Json", "@db.Json"),
    (r"bytea", "Bytes", None),
]
_UNSUPPORTED = (
    "tsvector",
    "tsquery",
    "point",
    "line",
    "lseg",
    "box",
    "path",
    "polygon",
    "circle",
    "cidr",
    "macaddr",
    "macaddr8",
    "interval",
    "int4range",
    "int8range",
    "numrange",
    "tsrange",
    "tstzrange",
    "daterange",
    "pg_lsn",
    "txid_snapshot",
    "geometry",
    "geography",
    "vector",
    "hstore",
    "ltree",
)


def _unquote(name: str) -> str:
    name = name.strip()
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return name


def prisma_type(pg_type: str, schema: PrismaSchema | None = None) -> tuple[str | None, str | None, bool, bool]:
    """(Prisma scalar or enum name, the @db attribute or None, list?, enum?) for a PostgreSQL type as
    format_type() spells it. The scalar is None for a type Prisma cannot read (Unsupported) and for a
    user-defined type schema.prisma does not declare as an enum: the snapshot does not say what it is."""
    text = pg_type.strip()
    is_list = text.endswith("[]")
    base = text[:-2] if is_list else text
    for pattern, scalar, native in _NATIVE:
        match = re.fullmatch(pattern, base)
        if match:
            return scalar, native.format(*match.groups()) if native else None, is_list, False
    name = _unquote(base.split(".")[-1])
    enum = schema.enum(name) if schema is not None else None
    if enum is not None:
        return enum.name, None, is_list, True
    return None, None, is_list, False


def _type_text(pg_type: str, scalar: str | None, is_list: bool, optional: bool) -> str:
    if scalar is None:
        base = pg_type[:-2] if is_list else pg_type
        if _unquote(base.split(".")[-1]).lower() in _UNSUPPORTED or base.split("(")[0] in _UNSUPPORTED:
            return f'Unsupported("{base}")' + ("[]" if is_list else "") + ("?" if optional else "")
        return _unquote(base.split(".")[-1]) + ("[]" if is_list else "") + ("?" if optional and not is_list else "")
    return scalar + ("[]" if is_list else "") + ("?" if optional and not is_list else "")


def prisma_default(expression: str | None, enum: bool = False) -> str | None:
    """A column's DEFAULT (pg_get_expr) as Prisma writes it inside @default(...)."""
    if expression is None:
        return None
    expr = expression.strip()
    if expr.startswith("nextval("):
        return "autoincrement()"
    if re.fullmatch(r"(?i)(CURRENT_TIMESTAMP(\(\d\))?|now\(\)|LOCALTIMESTAMP(\(\d\))?)", expr):
        return "now()"
    if expr in ("true", "false"):
        return expr
    number = re.fullmatch(r"\(?(-?\d+(?:\.\d+)?)\)?(?:::[\w\s]+)?", expr) or re.fullmatch(
        r"'(-?\d+(?:\.\d+)?)'::[\w\s]+(\(\d+,\s*\d+\))?", expr
    )
    if number:
        return number.group(1)
    if re.fullmatch(r"(ARRAY\[\]|'\{\}')::[\w\s\"(),.]+\[\]", expr):
        return "[]"
    literal = re.fullmatch(r"'((?:[^']|'')*)'::(.+)", expr, re.S)
    if literal:
        value = literal.group(1).replace("''", "'")
        cast = literal.group(2).strip()
        if (
            (enum or (cast.startswith('"') and cast.strip('"') not in ("text",)))
            and re.fullmatch(r"\w+", value)
            and not cast.endswith("[]")
        ):
            return value
        if cast.endswith("[]"):
            return "dbgenerated(" + _string(expr) + ")"
        if cast in ("boolean",):
            return value
        return _string(value)
    return "dbgenerated(" + _string(expr) + ")"


def _string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- reading the catalog ---------------------------------------------------------------------------

_IDENT = r'(?:"(?:[^"]|"")+"|[\w$]+)'
_FK = re.compile(
    rf"FOREIGN KEY \((?P<cols>[^)]*)\) REFERENCES (?P<table>{_IDENT}(?:\.{_IDENT})?)\((?P<refs>[^)]*)\)(?P<rest>.*)",
    re.S,
)


def _idents(text: str) -> tuple[str, ...]:
    return tuple(_unquote(p) for p in re.findall(_IDENT, text))


@dataclass(frozen=True)
class _ForeignKey:
    name: str
    columns: tuple[str, ...]
    target: str  # table, schema-qualified when the definition qualifies it
    references: tuple[str, ...]
    on_delete: str  # Prisma's spelling
    on_update: str


def _foreign_keys(table: TableSnapshot) -> list[_ForeignKey]:
    keys = []
    for c in table.constraints:
        if c.kind != "foreign key":
            continue
        match = _FK.match(c.definition)
        if not match:
            continue
        rest = match.group("rest")
        on_update = re.search(r"ON UPDATE (NO ACTION|RESTRICT|CASCADE|SET NULL|SET DEFAULT)", rest)
        written = re.search(r"ON DELETE (NO ACTION|RESTRICT|CASCADE|SET NULL|SET DEFAULT)", rest)
        on_delete = c.on_delete or (written.group(1) if written else "NO ACTION")
        target = ".".join(_unquote(p) for p in re.findall(_IDENT, match.group("table")))
        keys.append(
            _ForeignKey(
                c.name,
                _idents(match.group("cols")),
                target,
                _idents(match.group("refs")),
                ACTIONS.get(on_delete, on_delete),
                ACTIONS[on_update.group(1)] if on_update else "NoAction",
            )
        )
    return keys


@dataclass(frozen=True)
class _Index:
    name: str
    unique: bool
    columns: tuple[str, ...]  # empty when an element is an expression
    elements: tuple[str, ...]
    method: str
    partial: bool
    definition: str


_INDEX = re.compile(
    r"CREATE (?P<unique>UNIQUE )?INDEX (?P<name>\S+) ON (?:ONLY )?\S+ USING (?P<method>\w+) "
    r"\((?P<body>.*)\)(?P<rest>.*)$",
    re.S,
)


def _split_top(text: str) -> list[str]:
    parts, depth, start, quoted = [], 0, 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _indexes(table: TableSnapshot) -> list[_Index]:
    constraint_names = {c.name for c in table.constraints if c.kind == "primary key"}
    found = []
    for index in table.indexes:
        match = _INDEX.match(index.definition)
        name = _unquote(match.group("name")) if match else index.name
        if not match or name in constraint_names:
            continue
        body, rest = match.group("body"), match.group("rest")
        # "INCLUDE (...)" closes the first parenthesis early: keep the key columns only
        include = re.search(r"\)\s+INCLUDE \(", body)
        if include:
            body = body[: include.start()]
        elements = tuple(_split_top(body))
        columns: list[str] = []
        for element in elements:
            ident = re.match(rf"^({_IDENT})(?:\s|$)", element)
            if ident is None or "(" in element.split(" ")[0]:
                columns = []
                break
            columns.append(_unquote(ident.group(1)))
        found.append(
            _Index(
                index.name,
                bool(match.group("unique")),
                tuple(columns),
                elements,
                match.group("method"),
                " WHERE " in rest or bool(include),
                index.definition,
            )
        )
    return found


def _primary_key(table: TableSnapshot) -> tuple[str, ...]:
    for c in table.constraints:
        if c.kind == "primary key":
            match = re.match(r"PRIMARY KEY \((.*)\)", c.definition)
            if match:
                return _idents(match.group(1))
    return ()


def _table_ref(name: str) -> TableRef:
    if "." in name and not name.startswith('"'):
        schema, table = name.split(".", 1)
        return TableRef(table, schema)
    return TableRef(name, None)


# --- one model from one table snapshot ------------------------------------------------------------


def _prisma_only(schema_field: PrismaField | None) -> tuple[tuple[str, ...], str | None]:
    """The attributes of schema.prisma's field that the catalog cannot show, and a Prisma-only default."""
    if schema_field is None:
        return (), None
    attrs, default = [], None
    if re.search(r"(?<!@)@updatedAt\b", schema_field.text):
        attrs.append("@updatedAt")
    found = _attribute(schema_field.text, "@default")
    if found is not None and PRISMA_ONLY_DEFAULTS.match(found):
        default = found
    if re.search(r"(?<!@)@ignore\b", schema_field.text):
        attrs.append("@ignore")
    return tuple(attrs), default


def _attribute(text: str, name: str) -> str | None:
    """The argument text of a field attribute (e.g. @default) as written, or None."""
    from_schema = _args_of(text, name)
    return from_schema.strip() if from_schema is not None else None


def _args_of(text: str, name: str) -> str | None:
    for match in re.finditer(re.escape(name) + r"\s*\(", text):
        if match.start() > 0 and text[match.start() - 1] == "@":
            continue
        depth, quoted, escaped = 0, False, False
        for i in range(match.end() - 1, len(text)):
            ch = text[i]
            if quoted:
                escaped = (ch == "\\") and not escaped
                if ch == '"' and not escaped:
                    quoted = False
                continue
            if ch == '"':
                quoted = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    return text[match.end() : i]
        return None
    return None


def _default_index_name(table: str, columns: tuple[str, ...], suffix: str) -> str:
    return f"{table}_{'_'.join(columns)}_{suffix}"[:63]


@dataclass
class _Context:
    schema: PrismaSchema | None
    table: TableSnapshot
    model: PrismaModel | None
    notes: list[str]

    @property
    def table_name(self) -> str:
        return _table_ref(self.table.name).table

    def field_name(self, column: str) -> str:
        if self.model is not None:
            found = self.model.field_for_column(column)
            if found is not None:
                return found.name
        return column

    def schema_field(self, column: str) -> PrismaField | None:
        return self.model.field_for_column(column) if self.model is not None else None

    def model_name(self, table: str) -> str:
        if self.schema is not None:
            found = self.schema.model_for_table(_table_ref(table))
            if found is not None:
                return found.name
        return _table_ref(table).table

    def target_field_names(self, table: str, columns: tuple[str, ...]) -> tuple[str, ...]:
        target = self.schema.model_for_table(_table_ref(table)) if self.schema is not None else None
        names = []
        for column in columns:
            found = target.field_for_column(column) if target is not None else None
            names.append(found.name if found is not None else column)
        return tuple(names)


def _scalar_line(
    ctx: _Context, column: ColumnInfo, pk: tuple[str, ...], uniques: dict[tuple[str, ...], _Index]
) -> PrismaLine:
    schema_field = ctx.schema_field(column.name)
    scalar, native, is_list, enum = prisma_type(column.type, ctx.schema)
    if (
        scalar is None
        and schema_field is not None
        and schema_field.type not in SCALARS
        and ctx.schema is not None
        and (declared_enum := ctx.schema.enum(schema_field.type)) is not None
        and _unquote(column.type.rstrip("[]").split(".")[-1]) == declared_enum.db_name
    ):
        scalar, enum = schema_field.type, True
    optional = column.nullable and not is_list
    prisma_only, only_default = _prisma_only(schema_field)
    default = prisma_default(column.default, enum) or only_default
    attrs = []
    if pk == (column.name,):
        attrs.append("@id")
    unique = uniques.get((column.name,))
    if unique is not None:
        default_name = _default_index_name(ctx.table_name, (column.name,), "key")
        attrs.append("@unique" if unique.name == default_name else f'@unique(map: "{unique.name}")')
    if default is not None:
        attrs.append(f"@default({default})")
    attrs.extend(a for a in prisma_only)
    name = ctx.field_name(column.name)
    if name != column.name:
        attrs.append(f'@map("{column.name}")')
    if native:
        attrs.append(native)
    if scalar is None and not _type_text(column.type, None, is_list, False).startswith("Unsupported"):
        ctx.notes.append(
            f"{name}: type {column.type} is not a built-in PostgreSQL type and schema.prisma declares no "
            f"enum mapped to it; the snapshot does not say whether it is an enum or another type."
        )
    return PrismaLine(
        key=f"column:{column.name}",
        kind="scalar",
        name=name,
        type=_type_text(column.type, scalar, is_list, optional),
        attributes=" ".join(attrs),
        scalar=scalar,
        enum=enum,
        list=is_list,
        optional=optional,
        column=column.name,
        pg_type=column.type,
        default=default,
        prisma_only=prisma_only + ((f"@default({only_default})",) if only_default and not column.default else ()),
    )


def _relation_line(ctx: _Context, key: _ForeignKey, used: set[str]) -> PrismaLine:
    fields = tuple(ctx.field_name(c) for c in key.columns)
    schema_relation = None
    if ctx.model is not None:
        for f in ctx.model.fields:
            if f.relation is not None and tuple(_column_of(ctx.model, n) for n in f.relation.fields) == key.columns:
                schema_relation = f
                break
    target_model = ctx.model_name(key.target)
    if schema_relation is not None:
        name = schema_relation.name
    else:
        name = target_model if target_model not in used else f"{target_model}_{'_'.join(key.columns)}"
    used.add(name)
    optional = any(column is None or column.nullable for column in (ctx.table.column(c) for c in key.columns))
    references = ctx.target_field_names(key.target, key.references)
    written = schema_relation.relation if schema_relation is not None else None  # its @relation(...)
    relation_name = written.name if written is not None else None
    args = ([f'"{relation_name}"'] if relation_name else []) + [
        f"fields: [{', '.join(fields)}]",
        f"references: [{', '.join(references)}]",
        f"onDelete: {key.on_delete}",
    ]
    wrote_on_update = written is not None and written.on_update is not None
    if key.on_update != "Cascade" or wrote_on_update:
        args.append(f"onUpdate: {key.on_update}")
    default_name = _default_index_name(ctx.table_name, key.columns, "fkey")
    if key.name != default_name:
        args.append(f'map: "{key.name}"')
    info = RelationInfo(
        target_model, key.target, fields, key.columns, references, key.on_delete, key.on_update, key.name, relation_name
    )
    return PrismaLine(
        key=f"relation:{','.join(key.columns)}->{key.target}",
        kind="relation",
        name=name,
        type=target_model + ("?" if optional else ""),
        attributes=f"@relation({', '.join(args)})",
        optional=optional,
        relation=info,
    )


def _index_attribute(ctx: _Context, index: _Index) -> PrismaLine | None:
    if not index.columns or index.partial:
        ctx.notes.append(
            f"index {index.name} cannot be written in schema.prisma (an expression, INCLUDE or WHERE): "
            f"{index.definition}"
        )
        return None
    names = []
    for column, element in zip(index.columns, index.elements, strict=True):
        name = ctx.field_name(column)
        if re.search(r"\sDESC\b", element):
            name += "(sort: Desc)"
        names.append(name)
    args = [f"[{', '.join(names)}]"]
    suffix = "key" if index.unique else "idx"
    if index.method != "btree":
        args.append(
            "type: "
            + {"gin": "Gin", "gist": "Gist", "hash": "Hash", "brin": "Brin", "spgist": "SpGist"}.get(
                index.method, index.method
            )
        )
    if index.name != _default_index_name(ctx.table_name, index.columns, suffix):
        args.append(f'map: "{index.name}"')
    attr = "@@unique" if index.unique else "@@index"
    text = f"{attr}({', '.join(args)})"
    return PrismaLine(
        key=f"attribute:{attr}({','.join(index.columns)})", kind="attribute", name="", type="", attributes=text
    )


def _model_lines(ctx: _Context) -> list[PrismaLine]:
    table = ctx.table
    pk = _primary_key(table)
    indexes = _indexes(table)
    uniques: dict[tuple[str, ...], _Index] = {
        i.columns: i for i in indexes if i.unique and len(i.columns) == 1 and not i.partial
    }
    keys = _foreign_keys(table)
    used: set[str] = set()
    scalars = {c.name: _scalar_line(ctx, c, pk, uniques) for c in table.columns}
    relations = {k.columns: _relation_line(ctx, k, used) for k in keys}
    lines: list[PrismaLine] = []
    placed_columns: set[str] = set()
    placed_keys: set[tuple[str, ...]] = set()
    if ctx.model is not None:
        for f in ctx.model.fields:
            if f.relation is not None:
                columns = tuple(_column_of(ctx.model, n) for n in f.relation.fields)
                if columns in relations and columns not in placed_keys:
                    lines.append(relations[columns])
                    placed_keys.add(columns)
            elif ctx.schema is not None and ctx.schema.model(f.type) is not None:
                lines.append(
                    PrismaLine(
                        key=f"backrelation:{f.name}",
                        kind="backrelation",
                        name=f.name,
                        type=f.type + ("[]" if f.list else "") + ("?" if f.optional else ""),
                        attributes=" ".join(re.findall(r'(?<!@)@relation\((?:[^()"]|"[^"]*")*\)', f.text)),
                    )
                )
            elif f.db_name in scalars and f.db_name not in placed_columns:
                lines.append(scalars[f.db_name])
                placed_columns.add(f.db_name)
    for column in table.columns:
        if column.name in placed_columns:
            continue
        lines.append(scalars[column.name])
        placed_columns.add(column.name)
        for columns, line in relations.items():
            if columns not in placed_keys and columns[-1] == column.name and set(columns) <= placed_columns:
                lines.append(line)
                placed_keys.add(columns)
    lines.extend(line for columns, line in relations.items() if columns not in placed_keys)
    if len(pk) > 1:
        lines.append(
            PrismaLine(
                key="attribute:@@id", kind="attribute", attributes=f"@@id([{', '.join(ctx.field_name(c) for c in pk)}])"
            )
        )
    for index in indexes:
        if index.unique and len(index.columns) == 1 and not index.partial:
            continue
        attribute = _index_attribute(ctx, index)
        if attribute is not None:
            lines.append(attribute)
    return lines


def _block_attributes(ctx: _Context, model_name: str) -> list[str]:
    attrs = []
    written = ctx.model is not None and any(t.startswith("@@map") for t in ctx.model.attributes)
    if model_name != ctx.table_name or written:
        attrs.append(f'@@map("{ctx.table_name}")')
    if ctx.model is not None:
        for text in ctx.model.attributes:
            if text.startswith(("@@index", "@@unique", "@@id", "@@map")):
                continue
            attrs.append(text)
    return attrs


# --- comparing two versions of a line --------------------------------------------------------------


def _aspects(line: PrismaLine) -> dict[str, str]:
    if line.kind == "relation":
        r = line.relation_info
        return {
            "optional": "optional" if line.optional else "required",
            "target": r.target_model,
            "fields": ", ".join(r.fields),
            "references": ", ".join(r.references),
            "onDelete": r.on_delete,
            "onUpdate": r.on_update,
        }
    if line.kind == "scalar":
        attrs = line.attributes
        return {
            "optional": "optional" if line.optional else "required",
            "type": line.type.rstrip("?"),
            "default": line.default or "none",
            "id": "@id" if re.search(r"(?<!@)@id\b", attrs) else "no @id",
            "unique": "@unique" if re.search(r"(?<!@)@unique\b", attrs) else "no @unique",
            "native": " ".join(re.findall(r"@db\.\S+", attrs)) or "default",
        }
    return {"text": line.text}


def _describe(before: PrismaLine | None, after: PrismaLine | None) -> tuple[str, ...]:
    if before is None:
        return ("added",)
    if after is None:
        return ("removed",)
    a, b = _aspects(before), _aspects(after)
    what = []
    for aspect, new in b.items():
        old = a.get(aspect)
        if old == new:
            continue
        if aspect == "optional":
            what.append(f"{new} (was {old})")
        elif aspect in ("onDelete", "onUpdate"):
            what.append(f"{aspect}: {new} (was {old})")
        elif aspect == "default":
            what.append(f"default {new} (was {old})" if new != "none" else f"default removed (was {old})")
        elif aspect in ("id", "unique"):
            what.append(f"{new} (was {old})")
        elif aspect == "text":
            what.append("changed")
        else:
            what.append(f"{aspect} {new} (was {old})")
    return tuple(what)


# --- schema.prisma against the catalog after -------------------------------------------------------


def _field_default(text: str) -> str | None:
    return _attribute(text, "@default")  # as written in schema.prisma


@overload
def _normal(text: str) -> str: ...


@overload
def _normal(text: None) -> None: ...


def _normal(text: str | None) -> str | None:
    return re.sub(r"\s+", "", text) if text is not None else None


def _disagreements(ctx: _Context, lines: list[PrismaLine]) -> list[Disagreement]:
    model = ctx.model
    if model is None:
        return [
            Disagreement(
                ctx.model_name(ctx.table.name),
                "",
                "missing model",
                f"no model maps to table {ctx.table.name}",
                f"table {ctx.table.name} exists",
            )
        ]
    found: list[Disagreement] = []
    by_column = {line.column: line for line in lines if line.kind == "scalar"}
    by_columns = {line.relation_info.columns: line for line in lines if line.kind == "relation"}
    enum_names = {e.name for e in ctx.schema.enums} if ctx.schema is not None else set()
    models = {m.name for m in ctx.schema.models} if ctx.schema is not None else set()

    def add(f: PrismaField | None, name: str, aspect: str, said: str, database: str) -> None:
        found.append(Disagreement(model.name, name, aspect, said, database, f.line if f else model.line))

    for f in model.fields:
        if f.relation is not None:
            columns = tuple(_column_of(model, n) for n in f.relation.fields)
            line = by_columns.get(columns)
            if line is None:
                add(f, f.name, "relation", f.text, f"no foreign key on ({', '.join(columns)})")
                continue
            r = line.relation_info
            said_delete = f.relation.on_delete or ("SetNull" if f.optional else "Restrict")
            said_update = f.relation.on_update or "Cascade"
            if said_delete != r.on_delete:
                add(
                    f,
                    f.name,
                    "onDelete",
                    f"onDelete: {said_delete}" + ("" if f.relation.on_delete else " (Prisma's default)"),
                    f"{r.constraint}: ON DELETE {_sql_action(r.on_delete)}",
                )
            if said_update != r.on_update:
                add(
                    f,
                    f.name,
                    "onUpdate",
                    f"onUpdate: {said_update}" + ("" if f.relation.on_update else " (Prisma's default)"),
                    f"{r.constraint}: ON UPDATE {_sql_action(r.on_update)}",
                )
            if f.optional != line.optional:
                add(
                    f,
                    f.name,
                    "optional",
                    f"{f.name} {f.type}{'?' if f.optional else ''}",
                    f"({', '.join(columns)}) {'nullable' if line.optional else 'NOT NULL'}: the relation is "
                    f"{'optional' if line.optional else 'required'}",
                )
            if f.type != r.target_model:
                add(f, f.name, "relation", f"{f.name} {f.type}", f"{r.constraint} references {r.target_table}")
            continue
        if f.type in models or re.search(r"(?<!@)@ignore\b", f.text):
            continue
        line = by_column.get(f.db_name)
        if line is None:
            add(f, f.name, "missing column", f.text, f"no column {f.db_name} in {ctx.table.name}")
            continue
        column = ctx.table.column(f.db_name)
        assert column is not None  # `line` is this column's (by_column)
        if line.scalar is not None and (line.scalar != f.type or line.list != f.list):
            add(
                f,
                f.name,
                "type",
                f"{f.name} {f.type}{'[]' if f.list else ''}",
                f"{f.db_name} {column.type} (Prisma: {line.scalar}{'[]' if line.list else ''})",
            )
        elif line.scalar is None and f.type in SCALARS:
            add(
                f,
                f.name,
                "type",
                f"{f.name} {f.type}",
                f"{f.db_name} {column.type}: not a type Prisma maps to {f.type}",
            )
        elif line.scalar is None and f.type not in enum_names and not f.type.startswith("Unsupported"):
            add(f, f.name, "type", f"{f.name} {f.type}", f"{f.db_name} {column.type}: not declared in schema.prisma")
        if not f.list and f.optional != line.optional:
            add(
                f,
                f.name,
                "optional",
                f"{f.name} {f.type}{'?' if f.optional else ''}",
                f"{f.db_name} {'nullable' if column.nullable else 'NOT NULL'}",
            )
        said = _field_default(f.text)
        database = prisma_default(column.default, line.enum)
        if said is not None and PRISMA_ONLY_DEFAULTS.match(said):
            said = None  # client-side: the database has none, and needs none
        if (
            _normal(said) != _normal(database)
            and not _equivalent_defaults(said, database)
            and not _same_array(said, column.default)
        ):
            add(
                f,
                f.name,
                "default",
                f"@default({said})" if said else "no @default",
                f"DEFAULT {column.default}" if column.default else "no DEFAULT",
            )
        attrs = line.attributes
        for attr, aspect in (("@id", "id"), ("@unique", "unique")):
            # `@@unique([x])` says what `x ... @unique` says (and `@@id([x])` what `@id` does)
            block = {_attribute_columns(ctx, t) for t in model.attributes if t.startswith(f"@{attr}(")}
            says = bool(re.search(rf"(?<!@){attr}\b", f.text)) or (f.db_name,) in block
            has = bool(re.search(rf"(?<!@){attr}\b", attrs))
            if says != has:
                add(
                    f,
                    f.name,
                    aspect,
                    attr if says else f"no {attr}",
                    f"{'a' if has else 'no'} {'primary key' if aspect == 'id' else 'unique index'} on {f.db_name}",
                )
    declared = {f.db_name for f in model.fields if f.relation is None}
    for line in lines:
        if line.kind == "scalar" and line.column not in declared:
            add(
                None,
                line.name,
                "missing field",
                f"no field maps to column {line.column}",
                f"{line.column} {line.pg_type}{'' if line.optional else ' NOT NULL'}",
            )
    declared_keys = {
        tuple(_column_of(model, n) for n in f.relation.fields) for f in model.fields if f.relation is not None
    }
    for columns, line in by_columns.items():
        if columns not in declared_keys:
            add(
                None,
                line.name,
                "relation",
                f"no relation over ({', '.join(columns)})",
                f"{line.relation_info.constraint}: FOREIGN KEY ({', '.join(columns)}) REFERENCES "
                f"{line.relation_info.target_table}",
            )
    found.extend(_attribute_disagreements(ctx, lines))
    return found


def _same_array(said: str | None, column_default: str | None) -> bool:
    """`@default(["NEW"])` and `ARRAY['NEW'::text]`: the same list of strings."""
    if not said or not column_default or not said.startswith("["):
        return False
    found = re.fullmatch(r"ARRAY\[(.*)\](?:::[\w\s\[\]]+)?", column_default.strip(), re.S)
    if not found:
        return False
    database = re.findall(r"'((?:[^']|'')*)'(?:::[\w\s]+)?", found.group(1))
    declared = re.findall(r'"((?:[^"\\]|\\.)*)"', said)
    return [d.replace("''", "'") for d in database] == declared


def _equivalent_defaults(said: str | None, database: str | None) -> bool:
    if said is None or database is None:
        return False
    s, d = _normal(said), _normal(database)
    if s.startswith("dbgenerated(") or d.startswith("dbgenerated("):
        strip = lambda t: t[len("dbgenerated(") : -1].strip('"') if t.startswith("dbgenerated(") else t.strip('"')  # noqa: E731
        return _normal(strip(s)).lower() == _normal(strip(d)).lower()
    try:
        return float(s.strip('"')) == float(d.strip('"'))
    except ValueError:
        return False


def _attribute_columns(ctx: _Context, text: str) -> tuple[str, ...]:
    inner = _args_of(text, text.split("(")[0])
    if inner is None:
        return ()
    first = re.match(r"\s*(?:fields\s*:\s*)?(?:\[([^\]]*)\]|([A-Za-z_]\w*)\s*(?:,|$))", inner)
    if not first:
        return ()
    listed = first.group(1) if first.group(1) is not None else first.group(2)  # @@index(orgId): one bare field
    names = [re.sub(r"\(.*\)", "", n).strip() for n in listed.split(",") if n.strip()]
    model = ctx.model
    assert model is not None  # asked only where a model maps to the table (_disagreements)
    return tuple(_column_of(model, n) for n in names)


def _column_of(model: PrismaModel, name: str) -> str:
    """The column field `name` maps to; the name itself when the model has no such field."""
    found = model.field(name)
    return found.db_name if found else name


def _attribute_disagreements(ctx: _Context, lines: list[PrismaLine]) -> list[Disagreement]:
    model = ctx.model
    assert model is not None  # asked only where a model maps to the table (_disagreements)
    found = []
    for kind in ("@@index", "@@unique", "@@id"):
        said = {_attribute_columns(ctx, t): t for t in model.attributes if t.startswith(kind + "(")}
        has = {}
        for line in lines:
            if line.kind == "attribute" and line.attributes.startswith(kind + "("):
                has[_attribute_columns(ctx, line.attributes)] = line.attributes
        on_a_field: set[tuple[str | None, ...]] = set()  # a one-column @@unique / @@id: the field's @unique / @id there
        if kind != "@@index":
            field_level = "@unique" if kind == "@@unique" else "@id"
            on_a_field = {
                (line.column,)
                for line in lines
                if line.kind == "scalar" and re.search(rf"(?<!@){field_level}\b", line.attributes)
            }
        for columns, text in said.items():
            if columns not in has and columns not in on_a_field:
                found.append(
                    Disagreement(
                        model.name,
                        text,
                        "index" if kind == "@@index" else kind.strip("@"),
                        text,
                        f"no {'unique ' if kind == '@@unique' else ''}{'primary key' if kind == '@@id' else 'index'} "
                        f"on ({', '.join(columns)})",
                        model.line,
                    )
                )
        for columns, text in has.items():
            if columns not in said:
                found.append(
                    Disagreement(
                        model.name,
                        text,
                        "index" if kind == "@@index" else kind.strip("@"),
                        f"no {kind}([{', '.join(ctx.field_name(c) for c in columns)}])",
                        f"the database has {text}",
                        model.line,
                    )
                )
    return found


def _sql_action(prisma: str) -> str:
    return {v: k for k, v in ACTIONS.items()}.get(prisma, prisma)


# --- the whole measurement -------------------------------------------------------------------------


def updates(before: CatalogSnapshot, after: CatalogSnapshot, schema: PrismaSchema | None = None) -> ModelUpdates:
    """For each table whose catalog changed between the snapshots, the model's changed lines before and
    after, the whole model after, and every disagreement between schema.prisma and the catalog after."""
    notes = []
    if schema is None:
        notes.append(
            "No schema.prisma: model, field and relation names are the database's (as `prisma db pull` "
            "names them); Prisma-only attributes (`@updatedAt`, `@default(cuid())`) and back-relations are unknown."
        )
    models: list[ModelUpdate] = []
    disagreements: list[Disagreement] = []
    names = [t.name for t in before.tables] + [t.name for t in after.tables if before.table(t.name) is None]
    for name in names:
        old = before.table(name) or TableSnapshot(name, False)
        new = after.table(name) or TableSnapshot(name, False)
        model = schema.model_for_table(_table_ref(name)) if schema is not None else None
        table_notes: list[str] = []
        old_lines = _model_lines(_Context(schema, old, model, [])) if old.exists else []
        new_ctx = _Context(schema, new, model, table_notes)
        new_lines = _model_lines(new_ctx) if new.exists else []
        if schema is not None and new.exists:
            disagreements.extend(_disagreements(new_ctx, new_lines))
        old_by_key = {line.key: line for line in old_lines}
        new_by_key = {line.key: line for line in new_lines}
        changes = []
        for key in list(old_by_key) + [k for k in new_by_key if k not in old_by_key]:
            a, b = old_by_key.get(key), new_by_key.get(key)
            if a is not None and b is not None and a.text == b.text:
                continue
            either = a or b
            assert either is not None  # the key is old_by_key's or new_by_key's
            if either.kind == "backrelation":
                continue
            changes.append(FieldChange(key, a, b, _describe(a, b)))
        if not changes and old.exists == new.exists:
            continue
        model_name = model.name if model is not None else new_ctx.model_name(name)
        if schema is not None and model is None:
            table_notes.append(f"No model in schema.prisma maps to table {name}: names are the database's.")
        if not new.exists:
            table_notes.append(f"Table {name} was dropped: remove model {model_name}.")
        elif not old.exists:
            table_notes.append(f"Table {name} was created: model {model_name} is new.")
        models.append(
            ModelUpdate(
                model_name,
                name,
                changes,
                new_lines,
                old_lines,
                model is not None,
                _block_attributes(new_ctx, model_name),
                list(dict.fromkeys(table_notes)),
            )
        )
    return ModelUpdates(models, disagreements, schema.path if schema is not None else None, notes)


# --- Markdown --------------------------------------------------------------------------------------


def _fence(body: str, language: str = "") -> str:
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{body}\n{fence}"


def _code(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _escape(text: str) -> str:
    """Plain text for Markdown: characters that would start markup are escaped (no HTML entities)."""
    return re.sub(r"([\\`*_\[\]<>#|])", r"\\\1", text)


def _code_spans(note: str) -> str:
    """A note about names from the database: each name and definition it quotes in a code span."""
    return re.sub(r"(CREATE [^:]*$|\b\S*[_@*<>|\[\]`#\\]\S*)", lambda m: _code(m.group(1)), note)


def model_text(
    model: str,
    lines: list[PrismaLine],
    comments: dict[str, str] | None = None,
    block_attributes: list[str] | None = None,
) -> str:
    """`model X { ... }` as `prisma format` aligns it; `comments` adds a trailing `// ...` to lines by key."""
    comments = comments or {}
    fields = [line for line in lines if line.kind != "attribute"]
    attributes = [line for line in lines if line.kind == "attribute"]
    name_width = max((len(line.name) for line in fields), default=0)
    type_width = max((len(line.type) for line in fields), default=0)
    body = []
    for line in fields:
        text = f"  {line.name.ljust(name_width)} {line.type.ljust(type_width)}"
        text = (text + " " + line.attributes) if line.attributes else text
        text = (text + f" // {comments[line.key]}") if line.key in comments else text.rstrip()
        body.append(text)
    extra = [line.attributes + (f" // {comments[line.key]}" if line.key in comments else "") for line in attributes]
    extra += list(block_attributes or [])
    if extra:
        if body:
            body.append("")
        body.extend(f"  {text}" for text in extra)
    return "\n".join([f"model {model} {{", *body, "}"])


def updates_markdown(result: ModelUpdates) -> str:
    """Per changed model: the changed lines Before and After in ```prisma blocks (each After line ends with
    `// changed: ...`), then the whole model after, changed lines marked; then every disagreement."""
    parts = []
    parts.extend(result.notes)  # written here, with their code spans
    if not result.models:
        parts.append("No model changed: the catalog of the tables the batch touched is the same before and after.")
    for update in result.models:
        parts.append(f"### {_escape(update.model)} Model")
        source = "names from schema.prisma" if update.names_from_schema else "names from the database"
        parts.append(
            f"Table {_code(update.table)}; {source}; types, optionality, defaults, keys, indexes and "
            f"referential actions measured from the catalog before and after the batch."
        )
        parts.extend(_code_spans(note) for note in update.notes)
        before_lines = [c.before for c in update.changes if c.before is not None]
        after_lines = [c.after for c in update.changes if c.after is not None]
        removed = {c.key: "removed" for c in update.changes if c.after is None}
        if before_lines:
            parts.append("**Before**:\n\n" + _fence(model_text(update.model, before_lines, removed), "prisma"))
        parts.append(
            "**After**:\n\n"
            + _fence(
                model_text(
                    update.model,
                    after_lines,
                    {c.key: "changed: " + "; ".join(c.what) for c in update.changes if c.after is not None},
                ),
                "prisma",
            )
            if after_lines
            else "**After**: the changed lines are gone (see Before)."
        )
        if update.after and before_lines:  # a new model's After block is the whole model already
            parts.append(
                f"**Model {_escape(update.model)} (after)**, changed lines marked {_code('// changed')}:\n\n"
                + _fence(
                    model_text(
                        update.model,
                        update.after,
                        {c.key: "changed" for c in update.changes if c.after is not None},
                        update.block_attributes,
                    ),
                    "prisma",
                )
            )
    if result.schema_path is not None:
        if result.disagreements:
            parts.append(f"**{_code(result.schema_path)} disagrees with the database after the batch**:")
            parts.append(
                "\n".join(
                    f"- {_escape(d.model)}.{_escape(d.field) if d.field else ''} ({_escape(d.aspect)}"
                    f"{f', line {d.line}' if d.line else ''}): schema.prisma says {_code(d.schema_prisma)}; "
                    f"the database has {_code(d.database)}"
                    for d in result.disagreements
                )
            )
        else:
            parts.append(
                f"{_code(result.schema_path)} agrees with the database after the batch for every table it touched."
            )
    return "\n\n".join(parts)
