"""Rows for behaviour tests, built from the catalog: what an INSERT needs to reach the constraint under test.

A test such as "an INSERT with customer_id NULL is rejected" only proves something if every other
column is acceptable, so that the NOT NULL of customer_id is what refuses the row. The builder reads
the table's columns and foreign keys from pg_catalog and fills a row the way an application would:

- a column with a default, an identity or a generation expression, and every nullable column, is
  left out (the server fills it);
- a required column in a foreign key takes an existing parent row's key (a sub-select);
- any other required column gets a value made up from its type: a unique 'runbook-test-...' string
  for text, max + n for integers, 1 for numbers, true, now() for times (later columns get later
  times, so the usual CHECK (ends_at > starts_at) holds), gen_random_uuid(), '{}' for json and
  arrays, an enum's first label.

A row that cannot be built (a type it cannot make up, a parent table without rows) raises
CannotBuild with one sentence naming the column and its type; the test reports it as a FAIL
without running.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from runbook_lib.batch.model import TableRef
from runbook_lib.errors import CannotBuild

_STRINGS = {"text", "varchar", "bpchar", "name", "citext"}
_INTEGERS = {"int2", "int4", "int8"}
_NUMBERS = {"numeric", "float4", "float8", "money"}
_CONSTANTS = {
    "bool": sql.SQL("true"),
    "uuid": sql.SQL("gen_random_uuid()"),
    "json": sql.SQL("'{}'"),
    "jsonb": sql.SQL("'{}'"),
    "bytea": sql.SQL("'\\x'"),
    "time": sql.SQL("localtime"),
    "timetz": sql.SQL("current_time"),
    "interval": sql.SQL("interval '1 hour'"),
    "inet": sql.SQL("'192.0.2.1'"),
    "cidr": sql.SQL("'192.0.2.0/24'"),
    "tsvector": sql.SQL("''"),
}




@dataclass(frozen=True)
class Column:
    name: str
    number: int  # attnum: position in the table
    type: str  # format_type(), e.g. "timestamp(3) without time zone"
    base_type: str  # pg_type.typname, of the domain's base type for a domain
    not_null: bool
    has_default: bool
    identity: str  # '' | 'a' (ALWAYS) | 'd' (BY DEFAULT)
    generated: str  # '' | 's' (stored) | 'v' (virtual)
    is_array: bool
    max_length: int | None  # varchar(n) / char(n)
    first_label: str | None  # enums

    @property
    def server_fills(self) -> bool:
        return self.has_default or bool(self.identity) or bool(self.generated)


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    parent: TableRef
    parent_columns: tuple[str, ...]
    on_delete: str  # pg_constraint.confdeltype


@dataclass(frozen=True)
class TableShape:
    """One table as the builder needs it: columns in order and foreign keys."""

    ref: TableRef
    oid: int
    columns: tuple[Column, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.ref.schema, self.ref.table) if self.ref.schema else sql.Identifier(self.ref.table)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def foreign_key_of(self, column: str) -> ForeignKey | None:
        """The foreign key that supplies `column`: a single-column one first."""
        keys = [fk for fk in self.foreign_keys if column in fk.columns]
        keys.sort(key=lambda fk: len(fk.columns))
        return keys[0] if keys else None


def regclass_text(ref: TableRef) -> str:
    """The table's name as to_regclass reads it (quoted: names keep their case, as Prisma writes them)."""
    quote = lambda s: '"' + s.replace('"', '""') + '"'  # noqa: E731
    return f"{quote(ref.schema)}.{quote(ref.table)}" if ref.schema else quote(ref.table)


_COLUMNS_SQL = """
SELECT a.attname, a.attnum, format_type(a.atttypid, a.atttypmod), coalesce(b.typname, t.typname),
       a.attnotnull, a.atthasdef, a.attidentity::text, a.attgenerated::text,
       coalesce(b.typcategory, t.typcategory) = 'A',
       CASE WHEN coalesce(b.typname, t.typname) IN ('varchar', 'bpchar')
            AND (CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END) > 4
            THEN (CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END) - 4 END,
       (SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = coalesce(b.oid, t.oid) ORDER BY e.enumsortorder LIMIT 1)
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_FOREIGN_KEYS_SQL = """
SELECT c.conname, n.nspname, p.relname, c.confdeltype::text,
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num ORDER BY k.ord),
       ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num ORDER BY k.ord),
       n.nspname = current_schema()
FROM pg_constraint c
JOIN pg_class p ON p.oid = c.confrelid
JOIN pg_namespace n ON n.oid = p.relnamespace
WHERE c.conrelid = %s AND c.contype = 'f'
ORDER BY c.conname
"""


def describe(conn: psycopg.Connection, ref: TableRef) -> TableShape:
    """The table's columns and foreign keys from pg_catalog; CannotBuild if there is no such table."""
    oid = conn.execute("SELECT to_regclass(%s)::oid", (regclass_text(ref),)).fetchone()[0]
    if oid is None:
        raise CannotBuild(f"there is no table {ref}")
    columns = tuple(Column(*row) for row in conn.execute(_COLUMNS_SQL, (oid,)).fetchall())
    keys = []
    for name, schema, table, on_delete, cols, parent_cols, in_current_schema in conn.execute(_FOREIGN_KEYS_SQL, (oid,)):
        parent = TableRef(table, None if in_current_schema and not ref.schema else schema)
        keys.append(ForeignKey(name, tuple(cols), parent, tuple(parent_cols), on_delete))
    return TableShape(ref, oid, columns, tuple(keys))


@dataclass
class RowBuilder:
    """Builds INSERT statements for tables of one database; shapes are read once per builder."""

    conn: psycopg.Connection
    _shapes: dict[TableRef, TableShape] = field(default_factory=dict)
    _has_rows: dict[TableRef, bool] = field(default_factory=dict)

    def shape(self, ref: TableRef) -> TableShape:
        if ref not in self._shapes:
            self._shapes[ref] = describe(self.conn, ref)
        return self._shapes[ref]

    def has_rows(self, ref: TableRef) -> bool:
        if ref not in self._has_rows:
            stmt = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(self.shape(ref).identifier)
            self._has_rows[ref] = bool(self.conn.execute(stmt).fetchone()[0])
        return self._has_rows[ref]

    # -- values ---------------------------------------------------------------------------------

    def value(self, shape: TableShape, column: Column, n: int = 1) -> sql.Composable:
        """An acceptable value for `column` in the n-th row of an INSERT: a parent's key, or made up from the type."""
        fk = shape.foreign_key_of(column.name)
        if fk is not None:
            return self._parent_key(shape, column, fk)
        return self.made_up(shape, column, n)

    def _parent_key(self, shape: TableShape, column: Column, fk: ForeignKey) -> sql.Composable:
        if not self.has_rows(fk.parent):
            raise CannotBuild(
                f"{shape.ref}.{column.name} ({column.type}) is required and references {fk.parent}, "
                f"which has no rows to point at"
            )
        parent_column = fk.parent_columns[fk.columns.index(column.name)]
        # Ordered by the whole key, so every column of a composite key comes from the same parent row.
        return sql.SQL("(SELECT {col} FROM {parent} ORDER BY {key} LIMIT 1)").format(
            col=sql.Identifier(parent_column),
            parent=self.shape(fk.parent).identifier,
            key=sql.SQL(", ").join(sql.Identifier(c) for c in fk.parent_columns),
        )

    def made_up(self, shape: TableShape, column: Column, n: int = 1) -> sql.Composable:
        """A value made up from the column's type alone (no foreign key considered)."""
        base = column.base_type
        if column.is_array:
            return sql.SQL("'{}'")
        if column.first_label is not None:
            return sql.Literal(column.first_label)
        if base in _STRINGS:
            return sql.Literal(unique_text(column.max_length))
        if base in _INTEGERS:
            return sql.SQL("(SELECT coalesce(max({col}), 0) + {n} FROM {table})").format(
                col=sql.Identifier(column.name), n=sql.Literal(n), table=shape.identifier)
        if base in _NUMBERS:
            return sql.Literal(n)
        if base in ("timestamp", "timestamptz"):
            return sql.SQL("now() + interval {}").format(sql.Literal(f"{column.number} seconds"))
        if base == "date":
            return sql.SQL("current_date + {}").format(sql.Literal(column.number))
        if base in _CONSTANTS:
            return _CONSTANTS[base]
        raise CannotBuild(
            f"{shape.ref}.{column.name} is required and of type {column.type}, for which runbook cannot make up "
            "a value; give it a default, or test this table with a block in validation.sql"
        )

    # -- rows -----------------------------------------------------------------------------------

    def columns_of_row(self, shape: TableShape, include: tuple[str, ...] = ()) -> list[Column]:
        """The columns an INSERT names: required ones the server does not fill, plus `include`."""
        chosen = []
        for column in shape.columns:
            if column.name in include:
                if column.generated:
                    raise CannotBuild(
                        f"{shape.ref}.{column.name} is a generated column: an INSERT cannot give it a value"
                    )
                chosen.append(column)
            elif column.not_null and not column.server_fills:
                chosen.append(column)
        return chosen

    def values(self, shape: TableShape, columns: list[Column], given: dict[str, sql.Composable],
               n: int = 1) -> sql.Composable:
        return sql.SQL("({})").format(sql.SQL(", ").join(
            given[c.name] if c.name in given else self.value(shape, c, n) for c in columns))

    def insert(self, ref: TableRef, given: dict[str, sql.Composable] | None = None, *,
               include: tuple[str, ...] = (), rows: int = 1, returning: str | None = None) -> sql.Composed:
        """INSERT of `rows` acceptable rows, with the `given` values (e.g. {"customer_id": NULL})."""
        given = dict(given or {})
        shape = self.shape(ref)
        for name in list(given) + list(include):
            if shape.column(name) is None:
                raise CannotBuild(f"table {ref} has no column {name}")
        columns = self.columns_of_row(shape, tuple(given) + tuple(include))
        overriding = any(c.identity == "a" for c in columns)
        stmt = sql.SQL("INSERT INTO {table} ({columns}){overriding} VALUES {rows}").format(
            table=shape.identifier,
            columns=sql.SQL(", ").join(sql.Identifier(c.name) for c in columns),
            overriding=sql.SQL(" OVERRIDING SYSTEM VALUE") if overriding else sql.SQL(""),
            rows=sql.SQL(", ").join(self.values(shape, columns, given, n) for n in range(1, rows + 1)),
        )
        if not columns:
            stmt = sql.SQL("INSERT INTO {table} DEFAULT VALUES").format(table=shape.identifier)
        if returning:
            stmt += sql.SQL(" RETURNING {}").format(sql.Identifier(returning))
        return stmt


def unique_text(max_length: int | None = None) -> str:
    """A string no row holds yet: 'runbook-test-' and 12 random hex digits (cut to the column's length)."""
    text = f"runbook-test-{uuid.uuid4().hex[:12]}"
    if max_length is not None and max_length < len(text):
        text = uuid.uuid4().hex[:max_length]
    return text
