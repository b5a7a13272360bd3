"""Declarative checks of batch.toml expanded into SQL blocks: gates before apply, tests after it.

Identifiers come from batch.toml and are always composed with psycopg.sql.Identifier.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from .batch import Checks, ColumnRef
from .sqlblocks import Expectation, SqlBlock

SOURCE = "batch.toml"


def _table(ref: ColumnRef) -> sql.Composable:
    if ref.schema:
        return sql.Identifier(ref.schema, ref.table)
    return sql.Identifier(ref.table)


def _render(conn: psycopg.Connection, stmt: sql.Composable) -> str:
    return stmt.as_string(conn)


def _schema_literal(ref: ColumnRef) -> sql.Composable:
    return sql.Literal(ref.schema) if ref.schema else sql.SQL("current_schema()")


def _block(conn: psycopg.Connection, name: str, stmt: sql.Composable, expect: str) -> SqlBlock:
    return SqlBlock(name=name, sql=_render(conn, stmt), expect=Expectation.parse(expect, SOURCE), source=SOURCE)


def _fk_action_sql(conn: psycopg.Connection, col: ColumnRef, ref: ColumnRef) -> sql.Composable:
    return sql.SQL(
        "SELECT coalesce(string_agg(CASE c.confdeltype WHEN 'r' THEN 'restrict' WHEN 'a' THEN 'no action'"
        " WHEN 'c' THEN 'cascade' WHEN 'n' THEN 'set null' WHEN 'd' THEN 'set default' END, ','), 'missing')"
        " FROM pg_constraint c"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
        " WHERE c.contype = 'f' AND c.conrelid = {child}::regclass AND c.confrelid = {parent}::regclass"
        " AND cardinality(c.conkey) = 1 AND a.attname = {column}"
    ).format(
        child=sql.Literal(_qualified_text(col)),
        parent=sql.Literal(_qualified_text(ref)),
        column=sql.Literal(col.column),
    )


def _qualified_text(ref: ColumnRef) -> str:
    quote = lambda s: '"' + s.replace('"', '""') + '"'  # noqa: E731
    return f"{quote(ref.schema)}.{quote(ref.table)}" if ref.schema else quote(ref.table)


def _nullability(conn: psycopg.Connection, ref: ColumnRef, name: str, expect: str) -> SqlBlock:
    """information_schema's is_nullable for one column: 'NO' once NOT NULL is enforced."""
    return _block(
        conn, name,
        sql.SQL("SELECT is_nullable FROM information_schema.columns"
                " WHERE table_schema = {} AND table_name = {} AND column_name = {}").format(
            _schema_literal(ref), sql.Literal(ref.table), sql.Literal(ref.column)),
        expect,
    )


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
        ).format(child=_table(fk.column), col=sql.Identifier(fk.column.column),
                 parent=_table(fk.references), pcol=sql.Identifier(fk.references.column))
        blocks.append(_block(conn, f"{fk.column} values missing from {fk.references.table}", stmt, "0"))
    return blocks


def tests(conn: psycopg.Connection, checks: Checks) -> list[SqlBlock]:
    """What the database must enforce after the batch: catalog state and behaviour."""
    blocks = []
    for ref in checks.not_null:
        blocks.append(_nullability(conn, ref, f"{ref} is NOT NULL in the schema", "NO"))
        blocks.append(_block(
            conn, f"UPDATE of {ref} to NULL rejected",
            sql.SQL("UPDATE {t} SET {c} = NULL WHERE ctid = (SELECT ctid FROM {t} LIMIT 1)").format(
                t=_table(ref), c=sql.Identifier(ref.column)),
            "error 23502",
        ))
        blocks.append(_block(
            conn, f"No existing {ref.table} row has NULL {ref.column}",
            sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(_table(ref), sql.Identifier(ref.column)),
            "0",
        ))
    for fk in checks.foreign_keys:
        blocks.append(_block(
            conn, f"{fk.column} references {fk.references.table} ON DELETE {fk.on_delete.upper()}",
            _fk_action_sql(conn, fk.column, fk.references), f"'{fk.on_delete}'",
        ))
        if fk.on_delete in ("restrict", "no action"):
            # PostgreSQL 18 reports ON DELETE RESTRICT as restrict_violation (23001), older ones as 23503.
            codes = "23001|23503" if fk.on_delete == "restrict" else "23503"
            blocks.append(_block(
                conn, f"Delete of a {fk.references.table} referenced by {fk.column.table} rejected",
                sql.SQL("DELETE FROM {parent} WHERE {pcol} = (SELECT {col} FROM {child} WHERE {col} IS NOT NULL LIMIT 1)").format(
                    parent=_table(fk.references), pcol=sql.Identifier(fk.references.column),
                    col=sql.Identifier(fk.column.column), child=_table(fk.column)),
                f"error {codes}",
            ))
    return blocks


def reverse_tests(conn: psycopg.Connection, checks: Checks) -> list[SqlBlock]:
    """After a rollback: what the batch declared no longer holds (e.g. the column is nullable again)."""
    blocks = []
    for ref in checks.not_null:
        blocks.append(_nullability(conn, ref, f"{ref} is nullable again", "YES"))
    for fk in checks.foreign_keys:
        stmt = sql.SQL("SELECT ({q}) <> {declared}").format(
            q=_fk_action_sql(conn, fk.column, fk.references), declared=sql.Literal(fk.on_delete))
        blocks.append(_block(conn, f"{fk.column} no longer ON DELETE {fk.on_delete.upper()}", stmt, "true"))
    return blocks
