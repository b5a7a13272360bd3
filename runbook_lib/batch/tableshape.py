"""One table as the row builder needs it, read from pg_catalog: columns, foreign keys, unique keys, CHECK rules.

runbook_lib.batch.rowbuilder builds test rows from this; runbook_lib.orm.prisma_schema compares the
columns and foreign keys with schema.prisma. A unique key here is every unique index (a constraint's or
not, partial ones too) and every exclusion constraint, with all the columns it depends on, because a
test row must be new to each of them; the CHECK constraints are read by runbook_lib.batch.checkrules.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from runbook_lib.batch import checkrules
from runbook_lib.batch.checkrules import ColumnRule
from runbook_lib.batch.model import TableRef
from runbook_lib.db import reader
from runbook_lib.errors import CannotBuild

# Defaults the server makes new for every row: a keyed column with one is left to it.
_FRESH_DEFAULT = re.compile(r"\b(gen_random_uuid|uuid_generate_v\d\w*|uuidv[47])\s*\(", re.IGNORECASE)
_SEQUENCE_DEFAULT = re.compile(r"\bnextval\s*\(", re.IGNORECASE)


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
    labels: tuple[str, ...]  # an enum's labels, in order (empty for other types)
    default: str  # pg_get_expr of the default ('' without one)
    reads: tuple[str, ...] = ()  # a generated column's: the columns it is computed from

    @property
    def first_label(self) -> str | None:
        return self.labels[0] if self.labels else None

    @property
    def server_makes_fresh(self) -> bool:
        """The server gives every new row a value no row can have yet: a random UUID. (A sequence does not:
        rows inserted with their own values may be ahead of it.)"""
        return bool(_FRESH_DEFAULT.search(self.default))

    @property
    def from_sequence(self) -> bool:
        """The default takes the next value of a sequence (serial, nextval())."""
        return bool(_SEQUENCE_DEFAULT.search(self.default))


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    parent: TableRef
    parent_columns: tuple[str, ...]
    on_delete: str  # pg_constraint.confdeltype
    deferrable: bool = False


@dataclass(frozen=True)
class UniqueKey:
    """A unique index (a constraint's or not, partial ones too) or an exclusion constraint of the table."""

    name: str
    columns: tuple[str, ...]  # its key columns, and the columns its expressions use
    nulls_not_distinct: bool = False  # NULLS NOT DISTINCT: a NULL repeats, so it is not new


@dataclass(frozen=True)
class TableShape:
    """One table as the builder needs it: columns in order, foreign keys, unique keys, what CHECKs say."""

    ref: TableRef
    oid: int
    columns: tuple[Column, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    unique_keys: tuple[UniqueKey, ...] = ()
    rules: dict[str, ColumnRule] = field(default_factory=dict, compare=False)
    fingerprint: str = field(default="", compare=False)  # of the catalog rows it was read from (`current`)

    @functools.cached_property
    def keyed(self) -> frozenset[str]:
        """Columns of any unique, primary-key or exclusion key, and those a generated key column is computed
        from: a new row needs a value no row has in each."""
        return frozenset(c for key in self.unique_keys for c in self.sources(key.columns))

    def sources(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """`names`, each generated column followed by the columns it is computed from."""
        found = []
        for name in names:
            column = self.column(name)
            found += [name, *(column.reads if column else ())]
        return tuple(dict.fromkeys(found))

    @property
    def strict(self) -> frozenset[str]:
        """Keyed columns where NULL is not new either (NULLS NOT DISTINCT)."""
        return frozenset(c for key in self.unique_keys if key.nulls_not_distinct for c in key.columns)

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.ref.schema, self.ref.table) if self.ref.schema else sql.Identifier(self.ref.table)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


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
       ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = coalesce(b.oid, t.oid)
             ORDER BY e.enumsortorder),
       coalesce(pg_get_expr(d.adbin, d.adrelid), ''),
       ARRAY(SELECT r.attname::text FROM pg_depend g
             JOIN pg_attribute r ON r.attrelid = g.refobjid AND r.attnum = g.refobjsubid
             WHERE a.attgenerated <> '' AND g.classid = 'pg_attrdef'::regclass AND g.objid = d.oid
             AND g.refobjid = a.attrelid ORDER BY r.attnum)
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_FOREIGN_KEYS_SQL = """
SELECT c.conname, n.nspname, p.relname, c.confdeltype::text,
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num ORDER BY k.ord),
       ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num ORDER BY k.ord),
       n.nspname = current_schema(), c.condeferrable
FROM pg_constraint c
JOIN pg_class p ON p.oid = c.confrelid
JOIN pg_namespace n ON n.oid = p.relnamespace
WHERE c.conrelid = %s AND c.contype = 'f'
ORDER BY c.conname
"""

# Every unique index (constraint or not, partial or not) and exclusion constraint (its index is
# indisexclusion): the key columns and the columns an expression key uses (the index's pg_depend rows).
_UNIQUE_KEYS_SQL = """
SELECT c.relname, coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false),
       ARRAY(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = i.indrelid AND a.attnum > 0 AND NOT a.attisdropped AND (
               a.attnum = ANY (k.keys)
               OR (0 = ANY (k.keys) AND a.attnum IN (
                   SELECT d.refobjsubid FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = i.indexrelid AND d.refobjid = i.indrelid)))
             ORDER BY a.attnum)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
CROSS JOIN LATERAL (SELECT (i.indkey::int2[])[0:i.indnkeyatts - 1] AS keys) k
WHERE i.indrelid = %s AND (i.indisunique OR i.indisexclusion)
ORDER BY c.relname
"""

_CHECKS_SQL = (
    "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s AND contype = 'c' ORDER BY conname"
)


# Everything a shape is read from, as one value: a change to the table's name, columns, defaults, keys, indexes,
# CHECKs or triggers, to an enum its columns use, or to the name or columns of a table its foreign keys point at,
# writes a catalog row (a new xmin) and so gives another value. (In-place updates, such as the planner's
# statistics, do not: they change nothing a shape holds.)
_FINGERPRINT_SQL = """
SELECT concat_ws(':', c.xmin, c.relnatts, c.relchecks,
  (SELECT sum(a.xmin::text::bigint) FROM pg_attribute a WHERE a.attrelid = c.oid),
  (SELECT count(*) || '.' || sum(x.xmin::text::bigint) FROM pg_constraint x WHERE x.conrelid = c.oid),
  (SELECT count(*) || '.' || sum(i.xmin::text::bigint) FROM pg_index i WHERE i.indrelid = c.oid),
  (SELECT count(*) || '.' || sum(d.xmin::text::bigint) FROM pg_attrdef d WHERE d.adrelid = c.oid),
  (SELECT count(*) || '.' || sum(t.xmin::text::bigint) FROM pg_trigger t WHERE t.tgrelid = c.oid),
  (SELECT sum(p.xmin::text::bigint + coalesce((SELECT sum(pa.xmin::text::bigint) FROM pg_attribute pa
                                                WHERE pa.attrelid = p.oid), 0))
     FROM pg_constraint f JOIN pg_class p ON p.oid = f.confrelid WHERE f.conrelid = c.oid AND f.contype = 'f'),
  (SELECT sum(e.xmin::text::bigint) FROM pg_attribute a JOIN pg_enum e ON e.enumtypid = a.atttypid
    WHERE a.attrelid = c.oid))
FROM pg_class c WHERE c.oid = %s
"""

# (server, database, table as written) -> the shape last read, with its fingerprint: a release describes the same
# tables again for each migration, and most of them have not changed since.
_KNOWN: dict[tuple[str, int, str, str], TableShape] = {}


def database_key(conn: psycopg.Connection) -> tuple[str, int, str]:
    """Which database `conn` is on, for what is kept of its catalog between connections."""
    info = conn.info
    return info.host, info.port, info.dbname


def current(conn: psycopg.Connection, ref: TableRef) -> TableShape:
    """The table's shape as it is now: the one read before when the catalog still gives it the same fingerprint
    (one small query), else read anew (`describe`)."""
    conn = reader.for_catalog(conn)
    key = (*database_key(conn), regclass_text(ref))
    known = _KNOWN.get(key)
    if known is not None:
        row = conn.execute(
            _FINGERPRINT_SQL.replace("%s", "to_regclass(%s)::oid") + " AND c.oid = %s", (regclass_text(ref), known.oid)
        ).fetchone()
        if row is not None and row[0] == known.fingerprint:
            return known
    _KNOWN[key] = shape = describe(conn, ref)
    return shape


def _column(row: tuple[Any, ...]) -> Column:
    """A row of _COLUMNS_SQL, its arrays as tuples."""
    name, number, type_, base_type, not_null, has_default, identity, generated, is_array, max_length = row[:-3]
    labels, default, reads = row[-3:]
    return Column(
        name,
        number,
        type_,
        base_type,
        not_null,
        has_default,
        identity,
        generated,
        is_array,
        max_length,
        tuple(labels),
        default,
        tuple(reads),
    )


def describe(conn: psycopg.Connection, ref: TableRef) -> TableShape:
    """The table's columns, foreign keys, unique keys and CHECK rules from pg_catalog; CannotBuild if there is
    no such table."""
    # The six queries in one round trip (a pipeline): a release describes hundreds of tables.
    name = (regclass_text(ref),)
    with conn.pipeline():
        queries = [
            conn.execute(text.replace("%s", "to_regclass(%s)::oid"), name)
            for text in ("SELECT %s", _COLUMNS_SQL, _FOREIGN_KEYS_SQL, _UNIQUE_KEYS_SQL, _CHECKS_SQL, _FINGERPRINT_SQL)
        ]
        found, column_rows, key_rows, unique_rows, check_rows, fingerprint = (cur.fetchall() for cur in queries)
    oid = found[0][0]
    if oid is None:
        raise CannotBuild(f"there is no table {ref}")
    columns = tuple(_column(row) for row in column_rows)
    keys = []
    for name, schema, table, on_delete, cols, parent_cols, in_current_schema, deferrable in key_rows:
        parent = TableRef(table, None if in_current_schema and not ref.schema else schema)
        keys.append(ForeignKey(name, tuple(cols), parent, tuple(parent_cols), on_delete, deferrable))
    unique = tuple(UniqueKey(name, tuple(cols), strict) for name, strict, cols in unique_rows)
    rules = checkrules.read([d for (d,) in check_rows])
    return TableShape(ref, oid, columns, tuple(keys), unique, rules, fingerprint[0][0] if fingerprint else "")
