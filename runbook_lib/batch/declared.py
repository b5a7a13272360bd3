"""Declarative checks of batch.toml expanded into SQL blocks: gates before apply, tests after it.

Identifiers come from batch.toml and are always composed with psycopg.sql.Identifier / Literal.
Tests come in the reference document's order: the schema first, then what the database refuses,
what it accepts, and last the data already there. Behaviour tests build their rows from the catalog
(runbook_lib.batch.rowbuilder), rows that satisfy every other constraint of the table, and are marked
`built`: refused for another reason than the one they name (a trigger, a CHECK the builder cannot read),
they are reported not run with the server's message, not failed. A test that cannot be built at all is
reported not run with the reason, never a crash.

Each behaviour test expects the error *and* the object that raises it (the column of a NOT NULL, the
name of a foreign key or unique constraint), so a test passes only when the constraint under test is
the one that refused the statement.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from runbook_lib.batch import tableshape
from runbook_lib.batch.blocks import Expectation, SqlBlock, behaviour_key, do_block
from runbook_lib.batch.model import (
    CheckConstraintCheck,
    Checks,
    ColumnRef,
    ColumnTypeCheck,
    ForeignKeyCheck,
    IndexCheck,
    TableRef,
    UniqueCheck,
)
from runbook_lib.batch.rowbuilder import RowBuilder
from runbook_lib.batch.tableshape import regclass_text
from runbook_lib.errors import CannotBuild
from runbook_lib.sql.parse import type_name_sql

SOURCE = "batch.toml"

# Where a test goes in the list; CATALOG and DATA tests only read, so the health check re-runs them.
CATALOG, REJECT, ACCEPT, UPDATE, REFERENCED, DATA = range(6)
_READ_ONLY = (CATALOG, DATA)


@dataclass(frozen=True)
class _Test:
    stage: int
    block: SqlBlock


def _table(ref: ColumnRef | TableRef) -> sql.Composable:
    if ref.schema:
        return sql.Identifier(ref.schema, ref.table)
    return sql.Identifier(ref.table)


def _regclass(ref: ColumnRef | TableRef) -> sql.Composable:
    table = ref.table_ref if isinstance(ref, ColumnRef) else ref
    return sql.SQL("{}::regclass").format(sql.Literal(regclass_text(table)))


def _schema_literal(ref: ColumnRef) -> sql.Composable:
    return sql.Literal(ref.schema) if ref.schema else sql.SQL("current_schema()")


def table_key(ref: ColumnRef | TableRef, home: str) -> tuple[str | None, str]:
    """A table as a behaviour key names it (blocks.behaviour_key), as runbook_lib.sql.expect keys it: (schema,
    table), the schema None for one in `home` (the current schema) or named without one."""
    return (ref.schema if ref.schema and ref.schema != home else None, ref.table)


def _keyed(test: _Test, key: tuple) -> _Test:
    return dataclasses.replace(test, block=dataclasses.replace(test.block, behaviour=key))


def _block(conn: psycopg.Connection, name: str, stmt: sql.Composable, expect: str | Expectation) -> SqlBlock:
    expectation = expect if isinstance(expect, Expectation) else Expectation.parse(expect, SOURCE)
    return SqlBlock(name=name, sql=stmt.as_string(conn), expect=expectation, source=SOURCE)


def _not_built(name: str, expect: Expectation, reason: str) -> SqlBlock:
    return SqlBlock(name=name, sql=f"-- not run: {reason}", expect=expect, source=SOURCE, not_runnable=reason)


def _behaviour(
    conn: psycopg.Connection,
    stage: int,
    name: str,
    build: Callable[[], sql.Composable],
    expect: Expectation,
    *,
    keys_made_up_on: str = "",
) -> _Test:
    """A test whose statement runbook builds from the catalog (`built`); if it cannot be built, not run, with why.
    `keys_made_up_on`: the table whose foreign keys the statement made up (SqlBlock's)."""
    try:
        block = _block(conn, name, build(), expect)
    except CannotBuild as exc:
        block = _not_built(name, expect, f"cannot build the row: {exc}")
    return _Test(stage, dataclasses.replace(block, built=True, keys_made_up_on=keys_made_up_on))


def _do_block(
    conn: psycopg.Connection, declarations: sql.Composable, statements: list[sql.Composable]
) -> sql.Composable:
    """A PL/pgSQL DO block: several statements that share a variable, run and judged as one test."""
    body = (
        sql.SQL("\nDECLARE {};\nBEGIN\n{};\nEND\n")
        .format(declarations, sql.SQL(";\n").join(statements))
        .as_string(conn)
    )
    return sql.SQL(do_block(body))  # already composed: no .format() on it, so braces stay


def _fk_action_sql(col: ColumnRef, ref: ColumnRef) -> sql.Composable:
    return sql.SQL(
        "SELECT coalesce(string_agg(CASE c.confdeltype WHEN 'r' THEN 'restrict' WHEN 'a' THEN 'no action'"
        " WHEN 'c' THEN 'cascade' WHEN 'n' THEN 'set null' WHEN 'd' THEN 'set default' END, ','), 'missing')"
        " FROM pg_constraint c"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
        " WHERE c.contype = 'f' AND c.conrelid = {child} AND c.confrelid = {parent}"
        " AND cardinality(c.conkey) = 1 AND a.attname = {column}"
    ).format(child=_regclass(col), parent=_regclass(ref), column=sql.Literal(col.column))


# What a column's nullability reads as (validate, rollback, `runbook check`): the words the derived tests use
# too, never information_schema's is_nullable ('NO' for NOT NULL), which reads backwards next to the test's name.
NOT_NULL, NULLABLE, MISSING = "NOT NULL", "nullable", "missing"


def _nullability(conn: psycopg.Connection, ref: ColumnRef, name: str, expect: str) -> SqlBlock:
    """One column's nullability: 'NOT NULL' once NOT NULL is enforced, else 'nullable' ('missing': no column)."""
    return _block(
        conn,
        name,
        sql.SQL(
            "SELECT coalesce((SELECT CASE is_nullable WHEN 'NO' THEN {} ELSE {} END FROM information_schema.columns"
            " WHERE table_schema = {} AND table_name = {} AND column_name = {}), {})"
        ).format(
            sql.Literal(NOT_NULL),
            sql.Literal(NULLABLE),
            _schema_literal(ref),
            sql.Literal(ref.table),
            sql.Literal(ref.column),
            sql.Literal(MISSING),
        ),
        Expectation("value", expect),
    )


def _key_columns(index: str = "i", *, sort_by_name: bool = False) -> sql.Composable:
    """The key columns of index `index` (a pg_index alias) as a text array; expressions make it shorter."""
    order = "a.attname" if sort_by_name else "k.ord"
    return sql.SQL(
        "ARRAY(SELECT a.attname::text FROM unnest({i}.indkey::int2[]) WITH ORDINALITY k(num, ord)"
        " JOIN pg_attribute a ON a.attrelid = {i}.indrelid AND a.attnum = k.num"
        " WHERE k.ord <= {i}.indnkeyatts ORDER BY " + order + ")"
    ).format(i=sql.Identifier(index))


def _unique_index_sql(check: UniqueCheck, select: str) -> sql.Composable:
    return sql.SQL(
        "SELECT " + select + " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = {table} AND i.indisunique AND i.indisvalid AND i.indpred IS NULL"
        " AND i.indnkeyatts = {n} AND {keys} = {columns}::text[]"
    ).format(
        table=_regclass(check.table),
        n=sql.Literal(len(check.columns)),
        keys=_key_columns(sort_by_name=True),
        columns=sql.Literal(sorted(check.columns)),
    )


# --- the kinds ------------------------------------------------------------------------------------


def _not_null(
    conn: psycopg.Connection, rows: RowBuilder, ref: ColumnRef, *, writes: bool, home: str = ""
) -> list[_Test]:
    table, column = ref.table_ref, ref.column
    where = table_key(ref, home)
    found = [
        _keyed(
            _Test(CATALOG, _nullability(conn, ref, f"{ref} is NOT NULL in the schema", NOT_NULL)),
            behaviour_key("not null", where, (column,), NOT_NULL),
        ),
        _keyed(
            _Test(
                DATA,
                _block(
                    conn,
                    f"No existing {ref.table} row has NULL {column}",
                    sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(_table(ref), sql.Identifier(column)),
                    "0",
                ),
            ),
            behaviour_key("no NULL rows", where, (column,), "0"),
        ),
    ]
    if not writes:
        return found
    refused = Expectation("error", "23502", column=column)
    found.append(
        _keyed(
            _behaviour(
                conn,
                REJECT,
                f"Reject {ref.table} without {column}",
                lambda: rows.insert(table, {column: sql.SQL("NULL")}, make_up_keys=True),
                refused,
                keys_made_up_on=table.table,
            ),
            behaviour_key("INSERT without", where, (column,), str(refused)),
        )
    )
    found.append(
        _keyed(
            _behaviour(
                conn,
                ACCEPT,
                f"Allow {ref.table} with {column}",
                lambda: rows.insert(table, include=(column,)),
                Expectation("ok"),
            ),
            behaviour_key("valid row", where, (), "ok"),
        )
    )

    def update_to_null() -> sql.Composable:
        set_null = sql.SQL("UPDATE {t} SET {c} = NULL WHERE ctid = ").format(t=_table(ref), c=sql.Identifier(column))
        if rows.has_rows(table):
            return set_null + sql.SQL("(SELECT ctid FROM {t} LIMIT 1)").format(t=_table(ref))
        # No row to update: insert one first, in the same test.
        return _do_block(
            conn,
            sql.SQL("runbook_row tid"),
            [
                rows.insert(table, include=(column,), returning="ctid") + sql.SQL(" INTO runbook_row"),
                set_null + sql.SQL("runbook_row"),
            ],
        )

    found.append(
        _keyed(
            _behaviour(conn, UPDATE, f"UPDATE of {ref} to NULL rejected", update_to_null, refused),
            behaviour_key("UPDATE to NULL", where, (column,), str(refused)),
        )
    )
    return found


def foreign_key_key(
    kind: str,
    child: tuple[str | None, str],
    columns: tuple[str, ...],
    outcome: str,
    parent: tuple[str | None, str],
    parent_columns: tuple[str, ...],
) -> tuple:
    """The behaviour key of a foreign-key test (blocks.behaviour_key): its parent table and columns tell it apart."""
    return behaviour_key(kind, child, columns, outcome, parent, tuple(parent_columns))


def _foreign_key(
    conn: psycopg.Connection, rows: RowBuilder, fk: ForeignKeyCheck, *, writes: bool, home: str = ""
) -> list[_Test]:
    child, parent = fk.column, fk.references
    keyed = functools.partial(
        foreign_key_key,
        child=table_key(child, home),
        columns=(child.column,),
        parent=table_key(parent, home),
        parent_columns=(parent.column,),
    )
    found = [
        _keyed(
            _Test(
                CATALOG,
                _block(
                    conn,
                    f"{child} references {parent.table} ON DELETE {fk.on_delete.upper()}",
                    _fk_action_sql(child, parent),
                    f"'{fk.on_delete}'",
                ),
            ),
            keyed("foreign key", outcome=f"ON DELETE {fk.on_delete.upper()}"),
        ),
        _keyed(
            _Test(
                DATA,
                _block(
                    conn,
                    f"No {child} without its {parent.table}",
                    sql.SQL(
                        "SELECT count(*) FROM {child} c WHERE c.{col} IS NOT NULL"
                        " AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.{pcol} = c.{col})"
                    ).format(
                        child=_table(child),
                        col=sql.Identifier(child.column),
                        parent=_table(parent),
                        pcol=sql.Identifier(parent.column),
                    ),
                    "0",
                ),
            ),
            keyed("no orphan rows", outcome="0"),
        ),
    ]
    if writes and fk.on_delete in ("restrict", "no action"):
        # PostgreSQL 18 reports ON DELETE RESTRICT as restrict_violation (23001), older ones as 23503.
        codes = "23001|23503" if fk.on_delete == "restrict" else "23503"
        name = f"Delete of a {parent.table} referenced by {child.table} rejected"
        try:
            constraint = _constraint_of(rows, fk)
        except CannotBuild:
            constraint = ""
        expect = Expectation("error", codes, constraint=constraint)

        def delete_referenced_parent() -> sql.Composable:
            # A new parent that only one new child references: the delete can only be refused by this key (both
            # rows new to every unique key, their own parents inserted first where needed).
            return _do_block(
                conn,
                sql.SQL("runbook_parent_key {}%TYPE").format(
                    sql.Identifier(*([parent.schema] if parent.schema else []), parent.table, parent.column)
                ),
                [
                    rows.insert(parent.table_ref, returning=parent.column) + sql.SQL(" INTO runbook_parent_key"),
                    rows.insert(child.table_ref, {child.column: sql.SQL("runbook_parent_key")}),
                    sql.SQL("DELETE FROM {} WHERE {} = runbook_parent_key").format(
                        _table(parent), sql.Identifier(parent.column)
                    ),
                ],
            )

        found.append(
            _keyed(
                _behaviour(conn, REFERENCED, name, delete_referenced_parent, expect),
                keyed("DELETE of a referenced parent", outcome=f"error {codes}"),
            )
        )
    return found


def _constraint_of(rows: RowBuilder, fk: ForeignKeyCheck) -> str:
    """The name of the foreign key on exactly this column to this parent, from the catalog ('' if none)."""
    shape = rows.shape(fk.column.table_ref)
    for key in shape.foreign_keys:
        if (
            key.columns == (fk.column.column,)
            and key.parent.table == fk.references.table
            and key.parent_columns == (fk.references.column,)
        ):
            return key.name
    return ""


def _unique(
    conn: psycopg.Connection, rows: RowBuilder, check: UniqueCheck, *, writes: bool, home: str = ""
) -> list[_Test]:
    label = f"{check.table}.{check.columns[0]}" if len(check.columns) == 1 else str(check)
    where, columns = table_key(check.table, home), tuple(sorted(check.columns))
    found = [
        _keyed(
            _Test(
                CATALOG,
                _block(
                    conn,
                    f"{label} has a unique constraint or index",
                    sql.SQL("SELECT CASE WHEN EXISTS ({}) THEN 'present' ELSE 'missing' END").format(
                        _unique_index_sql(check, "1")
                    ),
                    "present",
                ),
            ),
            behaviour_key("unique", where, columns, "present"),
        )
    ]
    if not writes:
        return found
    try:
        with conn.transaction():  # a savepoint: a missing table must not end the caller's transaction
            row = conn.execute(_unique_index_sql(check, "c.relname::text") + sql.SQL(" ORDER BY 1 LIMIT 1")).fetchone()
    except psycopg.errors.UndefinedTable:
        row = None
    expect = Expectation("error", "23505", constraint=row[0] if row else "")

    # Two new rows sharing one value per unique column, new in every other unique column of the table.
    found.append(
        _keyed(
            _behaviour(
                conn,
                REFERENCED,
                f"Duplicate {label} rejected",
                lambda: rows.duplicate(check.table, check.columns, make_up_keys=True),
                expect,
                keys_made_up_on=check.table.table,
            ),
            behaviour_key("duplicate", where, columns, "error 23505"),
        )
    )
    return found


def _check_constraint(conn: psycopg.Connection, check: CheckConstraintCheck, home: str = "") -> list[_Test]:
    stmt = sql.SQL(
        "SELECT coalesce((SELECT CASE WHEN c.convalidated THEN 'validated' ELSE 'not validated' END"
        " FROM pg_constraint c WHERE c.conrelid = {table} AND c.conname = {name} AND c.contype = 'c'), 'missing')"
    ).format(table=_regclass(check.table), name=sql.Literal(check.name))
    return [
        _keyed(
            _Test(CATALOG, _block(conn, f"{check.table} has CHECK {check.name}, validated", stmt, "validated")),
            behaviour_key("check", table_key(check.table, home), (check.name,), "validated"),
        )
    ]


def _column_type(conn: psycopg.Connection, check: ColumnTypeCheck, home: str = "") -> list[_Test]:
    name = f"{check.column} is {check.type}"
    stmt = sql.SQL(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = {table} AND a.attname = {column} AND a.attnum > 0 AND NOT a.attisdropped"
    ).format(table=_regclass(check.column), column=sql.Literal(check.column.column))
    try:
        canonical = canonical_type(conn, check.type)
    except CannotBuild as exc:
        return [_Test(CATALOG, _not_built(name, Expectation("value", check.type), str(exc)))]
    return [
        _keyed(
            _Test(CATALOG, _block(conn, name, stmt, Expectation("value", canonical))),
            behaviour_key("type", table_key(check.column, home), (check.column.column,), canonical),
        )
    ]


# (server, database, written type) -> format_type()'s spelling: a release asks for the same few types hundreds of
# times. A spelling depends on the type's name, schema and modifier only, so it does not go stale.
_CANONICAL: dict[tuple[str, int, str, str], str] = {}


def canonical_type(conn: psycopg.Connection, type_text: str) -> str:
    """`type_text` as format_type() spells it on this server ("varchar(80)" -> "character varying(80)")."""
    key = (*tableshape.database_key(conn), type_text)
    if key not in _CANONICAL:
        _CANONICAL[key] = _canonical_type(conn, type_text)  # a type that does not exist (yet) is not kept
    return _CANONICAL[key]


def _canonical_type(conn: psycopg.Connection, type_text: str) -> str:
    parsed = type_name_sql(type_text)
    if parsed is None:
        raise CannotBuild(f"{type_text!r} is not a type name")
    try:
        with conn.transaction():
            # `parsed` is the parser's re-print of a lone type name (sql.parse.type_name_sql), nothing else.
            cur = conn.execute(sql.SQL("SELECT NULL::" + parsed))
            result = cur.pgresult
            assert result is not None  # the result of the execute just above
            oid, typmod = result.ftype(0), result.fmod(0)
    except psycopg.Error as exc:
        raise CannotBuild(f"type {type_text!r}: {exc.diag.message_primary or exc}") from None
    row = conn.execute("SELECT format_type(%s, %s)", (oid, typmod)).fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    return row[0]


def _index(conn: psycopg.Connection, check: IndexCheck, home: str = "") -> list[_Test]:
    stmt = sql.SQL(
        "SELECT coalesce((SELECT CASE WHEN bool_or(i.indisvalid AND i.indisready) THEN 'valid' ELSE 'invalid' END"
        " FROM pg_index i WHERE i.indrelid = {table} AND i.indnkeyatts = {n} AND {keys} = {columns}::text[]"
        " HAVING count(*) > 0), 'missing')"
    ).format(
        table=_regclass(check.table),
        n=sql.Literal(len(check.columns)),
        keys=_key_columns(),
        columns=sql.Literal(list(check.columns)),
    )
    return [
        _keyed(
            _Test(CATALOG, _block(conn, f"{check} has a valid index", stmt, "valid")),
            behaviour_key("index", table_key(check.table, home), tuple(check.columns), "valid"),
        )
    ]


# --- the expansions -------------------------------------------------------------------------------


def _expand(conn: psycopg.Connection, checks: Checks, *, writes: bool) -> list[SqlBlock]:
    if not checks:  # most migrations of a release have none: not even the current schema is asked
        return []
    rows = RowBuilder(conn)
    home = current_schema(conn)
    found: list[_Test] = []
    for ref in checks.not_null:
        found += _not_null(conn, rows, ref, writes=writes, home=home)
    for fk in checks.foreign_keys:
        found += _foreign_key(conn, rows, fk, writes=writes, home=home)
    for unique in checks.unique:
        found += _unique(conn, rows, unique, writes=writes, home=home)
    for constraint in checks.check:
        found += _check_constraint(conn, constraint, home)
    for typed in checks.column_type:
        found += _column_type(conn, typed, home)
    for index in checks.index:
        found += _index(conn, index, home)
    found.sort(key=lambda t: t.stage)  # stable: within a stage, the order of batch.toml
    return [t.block for t in found if writes or t.stage in _READ_ONLY]


def current_schema(conn: psycopg.Connection) -> str:
    """The schema a table named without one is found in (as runbook_lib.batch.derived reads migration.sql)."""
    row = conn.execute("SELECT current_schema()").fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    return row[0] or "public"


def tests(conn: psycopg.Connection, checks: Checks) -> list[SqlBlock]:
    """What the database must enforce after the batch: catalog state, behaviour, and the data.

    Behaviour tests write (in the caller's transaction, each in its own savepoint): run them only
    inside a transaction that is rolled back, as validate does.
    """
    return _expand(conn, checks, writes=True)


def read_only_tests(conn: psycopg.Connection, checks: Checks) -> list[SqlBlock]:
    """The tests that only read the catalog and the data: what the health check re-runs every day."""
    return _expand(conn, checks, writes=False)


def gates(conn: psycopg.Connection, checks: Checks) -> list[SqlBlock]:
    """What must already be true of the data for the batch to succeed."""
    blocks = []
    for ref in checks.not_null:
        stmt = sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(_table(ref), sql.Identifier(ref.column))
        blocks.append(_block(conn, f"{ref.table} rows with NULL {ref.column}", stmt, "0"))
    for fk in checks.foreign_keys:
        stmt = sql.SQL(
            "SELECT count(*) FROM {child} c WHERE c.{col} IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.{pcol} = c.{col})"
        ).format(
            child=_table(fk.column),
            col=sql.Identifier(fk.column.column),
            parent=_table(fk.references),
            pcol=sql.Identifier(fk.references.column),
        )
        blocks.append(_block(conn, f"{fk.column} values missing from {fk.references.table}", stmt, "0"))
    return blocks


def reverse_tests(conn: psycopg.Connection, checks: Checks) -> list[SqlBlock]:
    """After a rollback: what the batch declared no longer holds (e.g. the column is nullable again)."""
    blocks = []
    for ref in checks.not_null:
        blocks.append(_nullability(conn, ref, f"{ref} is nullable again", NULLABLE))
    for fk in checks.foreign_keys:
        stmt = sql.SQL("SELECT ({q}) <> {declared}").format(
            q=_fk_action_sql(fk.column, fk.references), declared=sql.Literal(fk.on_delete)
        )
        blocks.append(_block(conn, f"{fk.column} no longer ON DELETE {fk.on_delete.upper()}", stmt, "true"))
    return blocks
