"""Catalog snapshots of the tables a batch touches, read from pg_catalog, and what changed between two."""

from __future__ import annotations

from dataclasses import dataclass, replace

import psycopg
from psycopg.rows import DictRow, dict_row

from runbook_lib.db import reader

EXACT_COUNT_MAX_BYTES = 64 * 1024 * 1024

FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    nullable: bool
    default: str | None = None
    non_null: int = -1  # rows with a value at snapshot time (-1: not counted)

    @property
    def ddl(self) -> str:
        text = f'"{self.name}" {self.type}'
        if self.default is not None:
            text += f" DEFAULT {self.default}"
        return text + ("" if self.nullable else " NOT NULL")


@dataclass(frozen=True)
class ConstraintInfo:
    name: str
    kind: str  # primary key, unique, foreign key, check, not null, exclusion
    definition: str
    validated: bool = True
    on_delete: str | None = None  # foreign keys only


@dataclass(frozen=True)
class IndexInfo:
    name: str
    definition: str
    valid: bool = True


@dataclass(frozen=True)
class TableSnapshot:
    name: str  # schema-qualified only outside public
    exists: bool
    columns: tuple[ColumnInfo, ...] = ()
    constraints: tuple[ConstraintInfo, ...] = ()
    indexes: tuple[IndexInfo, ...] = ()
    rows: int = 0  # count at snapshot time: exact, or the planner's estimate for large tables
    bytes: int = 0  # pg_total_relation_size
    rows_exact: bool = True

    def column(self, name: str) -> ColumnInfo | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class CatalogSnapshot:
    taken_at: str
    tables: tuple[TableSnapshot, ...] = ()

    def table(self, name: str) -> TableSnapshot | None:
        return next((t for t in self.tables if t.name == name), None)


@dataclass(frozen=True)
class CatalogChange:
    """One object that differs between two snapshots, shown as DDL before and after."""

    table: str
    object: str  # column "customer_id", constraint "Lead_customer_id_fkey", index ...
    kind: str  # column | constraint | index | table
    before: str | None
    after: str | None

    @property
    def change(self) -> str:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "changed"


_CONSTRAINT_KINDS = {
    "p": "primary key",
    "u": "unique",
    "f": "foreign key",
    "c": "check",
    "n": "not null",
    "x": "exclusion",
    "t": "trigger",
}


def quote_ident(part: str) -> str:
    return '"' + part.replace('"', '""') + '"'


def regclass_text(name: str) -> str:
    """A table name as batches and the parser write it ("Lead", "crm.Lead") as quoted SQL text, for
    to_regclass(), LOCK TABLE and scans; an unqualified name follows the search_path."""
    if "." in name and not name.startswith('"'):
        schema, table = name.split(".", 1)
        return f"{quote_ident(schema)}.{quote_ident(table)}"
    return quote_ident(name)


def _split_name(name: str) -> tuple[str, str]:
    if "." in name and not name.startswith('"'):
        schema, table = name.split(".", 1)
        return schema, table
    return "public", name


_TABLE_SQL = """
SELECT c.oid,
  (SELECT coalesce(json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
                                              'notnull', a.attnotnull, 'default', pg_get_expr(d.adbin, d.adrelid))
                            ORDER BY a.attnum), '[]')
     FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
  (SELECT coalesce(json_agg(json_build_object('name', conname, 'type', contype, 'definition', pg_get_constraintdef(oid),
                                              'validated', convalidated, 'on_delete', confdeltype)
                            ORDER BY conname), '[]')
     FROM pg_constraint WHERE conrelid = c.oid AND contype <> 'n') AS constraints,
  (SELECT coalesce(json_agg(json_build_object('name', ic.relname, 'definition', pg_get_indexdef(i.indexrelid),
                                              'valid', i.indisvalid) ORDER BY ic.relname), '[]')
     FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid) AS indexes,
  pg_total_relation_size(c.oid) AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
"""


def _snapshots(conn: psycopg.Connection, names: list[str], *, count_rows: bool) -> tuple[str, list[TableSnapshot]]:
    """When (the server's clock) and the tables' snapshots, in two round trips whatever their number (a pipeline):
    one for the clock and the catalog, one for the counts; a release takes two snapshots per migration, and a
    round trip is most of a small table's."""
    with conn.cursor(row_factory=dict_row) as cur:
        with conn.pipeline():
            clock = conn.execute("SELECT clock_timestamp()::text")
            sent = [conn.cursor(row_factory=dict_row).execute(_TABLE_SQL, _split_name(name)) for name in names]
            now = clock.fetchone()
            found_rows = [c.fetchone() for c in sent]
        assert now is not None  # a SELECT without FROM returns one row
        shapes = [_shape(name, found) for name, found in zip(names, found_rows, strict=True)]
        if not count_rows or not shapes:
            return now[0], shapes
        scans: list[tuple[int, psycopg.Cursor[DictRow]]] = []
        with conn.pipeline():
            for i, shot in enumerate(shapes):
                if shot.exists and shot.bytes <= EXACT_COUNT_MAX_BYTES:
                    # One scan counts the rows and, per column, the rows that have a value (the column's coverage).
                    counts = ", ".join(
                        f'count("{c.name.replace(chr(34), chr(34) * 2)}") AS c{j}' for j, c in enumerate(shot.columns)
                    )
                    query = f"SELECT count(*) AS n{', ' + counts if counts else ''} FROM {_quoted(shot.name)}"
                    # one query per table, not kept prepared: a release would fill the cache with them
                    scans.append((i, conn.cursor(row_factory=dict_row).execute(query, prepare=False)))
            counted = {i: scan.fetchone() for i, scan in scans}
        for i, shot in enumerate(shapes):
            if not shot.exists:
                continue
            if i in counted:
                row = counted[i]
                assert row is not None  # an aggregate without GROUP BY returns one row
                values = list(row.values())
                columns = tuple(replace(c, non_null=v) for c, v in zip(shot.columns, values[1:], strict=True))
                shapes[i] = replace(shot, columns=columns, rows=values[0], rows_exact=True)
            else:
                # A full count of a large table costs seconds of I/O on the server the application runs on;
                # the planner's statistics are close enough for a report (and say so).
                found = found_rows[i]
                assert found is not None  # the table exists: its catalog row was found
                rows, columns = _estimated_counts(cur, found["oid"], shot.columns)
                shapes[i] = replace(shot, columns=columns, rows=rows, rows_exact=False)
    return now[0], shapes


def _shape(name: str, found: DictRow | None) -> TableSnapshot:
    """A table's snapshot from its _TABLE_SQL row, before its rows are counted (0, exact)."""
    if found is None:
        return TableSnapshot(name=name, exists=False)
    columns = tuple(ColumnInfo(r["name"], r["type"], not r["notnull"], r["default"]) for r in found["columns"])
    constraints = tuple(
        ConstraintInfo(
            r["name"],
            _CONSTRAINT_KINDS.get(r["type"], r["type"]),
            r["definition"],
            r["validated"],
            FK_ACTIONS.get(r["on_delete"]) if r["type"] == "f" else None,
        )
        for r in found["constraints"]
    )
    indexes = tuple(IndexInfo(r["name"], r["definition"], r["valid"]) for r in found["indexes"])
    return TableSnapshot(name, True, columns, constraints, indexes, 0, found["bytes"], True)


def _estimated_counts(
    cur: psycopg.Cursor[DictRow], oid: int, columns: tuple[ColumnInfo, ...]
) -> tuple[int, tuple[ColumnInfo, ...]]:
    found = cur.execute("SELECT reltuples FROM pg_class WHERE oid = %s", (oid,)).fetchone()
    assert found is not None  # the table's pg_class row, just read by _snapshots
    rows = max(int(found["reltuples"]), 0)
    null_frac = {
        r["attname"]: r["null_frac"]
        for r in cur.execute(
            "SELECT attname, null_frac FROM pg_stats WHERE (schemaname, tablename) ="
            " (SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = %s)",
            (oid,),
        )
    }
    estimated = tuple(
        replace(c, non_null=round(rows * (1 - null_frac[c.name])) if c.name in null_frac else -1) for c in columns
    )
    return rows, estimated


def _quoted(name: str) -> str:
    """Schema-qualified (public when unqualified), as _regclass looks the table up."""
    schema, table = _split_name(name)
    return f"{quote_ident(schema)}.{quote_ident(table)}"


_INDEX_TABLES_SQL = """
SELECT t.name, CASE WHEN pg_table_is_visible(c.oid) THEN c.relname ELSE n.nspname || '.' || c.relname END
FROM unnest(%s::text[], %s::text[]) AS t(name, regclass)
JOIN pg_index i ON i.indexrelid = to_regclass(t.regclass)
JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
"""


def tables_of(conn: psycopg.Connection, names: list[str]) -> list[str]:
    """The names a statement's locks give, with an index's name (DROP INDEX, ALTER INDEX name the index, not
    its table) replaced by its table's: the table a before and after snapshot must hold. Once each, in order."""
    if not names:
        return []
    conn = reader.for_catalog(conn)
    owners: dict[str, str] = dict(
        conn.execute(_INDEX_TABLES_SQL, (names, [regclass_text(n) for n in names])).fetchall()
    )
    return list(dict.fromkeys(owners.get(name, name) for name in names))


def snapshot(conn: psycopg.Connection, tables: list[str], *, count_rows: bool = True) -> CatalogSnapshot:
    taken, shots = _snapshots(reader.for_catalog(conn), tables, count_rows=count_rows)
    return CatalogSnapshot(taken, tuple(shots))


def diff(before: CatalogSnapshot, after: CatalogSnapshot) -> list[CatalogChange]:
    """Every column, constraint and index that was added, removed or changed, table by table."""
    changes: list[CatalogChange] = []
    names = [t.name for t in before.tables] + [t.name for t in after.tables if before.table(t.name) is None]
    for name in names:
        old = before.table(name) or TableSnapshot(name, False)
        new = after.table(name) or TableSnapshot(name, False)
        if old.exists != new.exists:
            changes.append(
                CatalogChange(
                    name, f'table "{name}"', "table", "exists" if old.exists else None, "exists" if new.exists else None
                )
            )
            continue
        pairs = [
            ("column", {c.name: c.ddl for c in old.columns}, {c.name: c.ddl for c in new.columns}),
            (
                "constraint",
                {c.name: _constraint_ddl(c) for c in old.constraints},
                {c.name: _constraint_ddl(c) for c in new.constraints},
            ),
            ("index", {i.name: i.definition for i in old.indexes}, {i.name: i.definition for i in new.indexes}),
        ]
        for kind, a, b in pairs:
            for key in list(a) + [k for k in b if k not in a]:
                if a.get(key) != b.get(key):
                    changes.append(CatalogChange(name, f'{kind} "{key}"', kind, a.get(key), b.get(key)))
    return changes


def _constraint_ddl(c: ConstraintInfo) -> str:
    return f'CONSTRAINT "{c.name}" {c.definition}'
