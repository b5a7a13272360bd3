"""Which data statements can run as a batched backfill, and the SQL of one batch.

A data statement run in one transaction holds the lock of every row it changed until it commits: an
application writing any of them waits for the whole statement. Run by keyset on a primary key, each batch
changes the rows of one key range and commits. That is only the same change when every batch means the
whole statement restricted to its range, so only these shapes are batched:

- UPDATE or DELETE with a WHERE, by the primary key of the table it changes;
- INSERT ... SELECT from one table, by that table's primary key.

A statement that reads the table it changes (a batch would see what earlier batches did), or uses WITH,
RETURNING, DISTINCT, GROUP BY, aggregates over rows, LIMIT or a set operation, is not batched; `check`
says why, and it runs as written, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import pglast
import psycopg
from pglast import ast
from pglast.enums import BoolExprType
from pglast.stream import RawStream

from runbook_lib.db import catalog
from runbook_lib.sql.analysis import StatementAnalysis
from runbook_lib.sql.analysis import walk as _walk
from runbook_lib.sql.parse import required

DATA_KINDS = ("INSERT", "UPDATE", "DELETE", "MERGE")


@dataclass(frozen=True)
class Candidate:
    """A data statement whose shape allows batching; the key comes from the catalog when it runs."""

    statement_index: int
    kind: str  # UPDATE | DELETE | INSERT … SELECT
    table: str  # the table whose primary key orders the batches, as the statement names it
    reference: str  # how the statement's SQL refers to that table (its alias, or its name)
    sql: str


@dataclass(frozen=True)
class Key:
    """A table's primary key: the columns a keyset walks, with their types (positions are kept as text)."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.columns[0] if len(self.columns) == 1 else "(" + ", ".join(self.columns) + ")"


@dataclass(frozen=True)
class BackfillCheck:
    """Preflight's answer for one data statement: batched under --strategy online, or why not."""

    statement_index: int
    line: int
    kind: str
    table: str
    batched: bool
    key: str = ""
    reason: str = ""


def _name(rel: ast.RangeVar) -> str:
    return ".".join(p for p in (rel.schemaname, rel.relname) if p)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _reference(rel: ast.RangeVar) -> str:
    return _ident(required(rel.alias.aliasname)) if rel.alias else _ident(required(rel.relname))


def _reads(node: object, target: ast.RangeVar) -> bool:
    return any(isinstance(n, ast.RangeVar) and _name(n) == _name(target) for n in _walk(node))


def candidate(stmt: StatementAnalysis) -> Candidate | str:
    """The statement as a batching candidate, or the reason (one clause) it cannot be batched."""
    try:
        node = pglast.parse_sql(stmt.sql)[0].stmt
    except pglast.parser.ParseError:  # pragma: no cover - the analysis parsed it already
        return "it does not parse"
    if isinstance(node, ast.MergeStmt):
        return "MERGE is not batched: its WHEN clauses decide per row against the whole source"
    if not isinstance(node, (ast.UpdateStmt, ast.DeleteStmt, ast.InsertStmt)):
        return "it is not INSERT, UPDATE or DELETE"
    if node.withClause is not None:
        return "it uses WITH: the query it shares cannot be split into key ranges"
    if getattr(node, "returningClause", None) is not None or getattr(node, "returningList", None):
        return "it has RETURNING: its rows would come back batch by batch"
    if any(isinstance(n, ast.ParamRef) for n in _walk(node)):
        return "it has $n parameters"
    if isinstance(node, ast.InsertStmt):
        return _insert_candidate(stmt, node)
    kind = "UPDATE" if isinstance(node, ast.UpdateStmt) else "DELETE"
    target = required(node.relation)  # UPDATE and DELETE always name the table they change
    if node.whereClause is None:
        return f"{kind} without WHERE: runbook batches statements that select their rows with a WHERE"
    if isinstance(node.whereClause, ast.CurrentOfExpr):
        return "WHERE CURRENT OF names a cursor's row, not a range"
    others = node.fromClause if isinstance(node, ast.UpdateStmt) else node.usingClause
    rest = (others, node.whereClause, getattr(node, "targetList", None))
    if _reads(rest, target):
        return (
            f"it reads {_name(target)}, the table it changes, in FROM, USING or a subquery: "
            "each batch would see what earlier batches changed"
        )
    return Candidate(stmt.index, kind, _name(target), _reference(target), stmt.sql)


def _insert_candidate(stmt: StatementAnalysis, node: ast.InsertStmt) -> Candidate | str:
    select = node.selectStmt
    if not isinstance(select, ast.SelectStmt) or select.valuesLists:
        return "INSERT … VALUES writes the rows it lists: there is no table to walk"
    if select.op is not None and select.op.name != "SETOP_NONE":
        return "its SELECT is a set operation (UNION, INTERSECT, EXCEPT)"
    if select.withClause is not None:
        return "its SELECT uses WITH: the query it shares cannot be split into key ranges"
    shaped = [
        ("DISTINCT", select.distinctClause),
        ("GROUP BY", select.groupClause),
        ("HAVING", select.havingClause),
        ("a WINDOW", select.windowClause),
        ("LIMIT", select.limitCount),
        ("OFFSET", select.limitOffset),
        ("FOR UPDATE/SHARE", select.lockingClause),
    ]
    for word, clause in shaped:
        if clause:
            return f"its SELECT uses {word}: which rows it yields depends on rows of other batches"
    calls = [n for n in _walk(select.targetList) if isinstance(n, (ast.FuncCall, ast.WindowFunc))]
    if any(isinstance(n, ast.FuncCall) and (n.over is not None or n.agg_star or n.agg_distinct) for n in calls) or any(
        isinstance(n, ast.FuncCall)
        and n.funcname
        and n.funcname[-1].sval.lower()
        in (
            "count",
            "sum",
            "min",
            "max",
            "avg",
            "array_agg",
            "string_agg",
            "bool_and",
            "bool_or",
            "json_agg",
            "jsonb_agg",
        )
        for n in calls
    ):
        return "its SELECT aggregates rows: which rows it yields depends on rows of other batches"
    if not select.fromClause or len(select.fromClause) != 1 or not isinstance(select.fromClause[0], ast.RangeVar):
        return "its SELECT does not read exactly one table in FROM (a join or a subquery has no one key to walk)"
    source = select.fromClause[0]
    target = required(node.relation)  # INSERT always names the table it inserts into
    if _reads(select, target):
        return (
            f"it reads {_name(target)}, the table it inserts into: each batch would see what earlier batches inserted"
        )
    return Candidate(stmt.index, "INSERT … SELECT", _name(source), _reference(source), stmt.sql)


_KEY_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
WHERE i.indrelid = to_regclass(%s) AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)
"""


def primary_key(conn: psycopg.Connection, table: str) -> Key | None:
    """The table's primary key, or None (no such table yet, or no primary key)."""
    rows = conn.execute(_KEY_SQL, (catalog.regclass_text(table),)).fetchall()
    if not rows:
        return None
    return Key(table, tuple(r[0] for r in rows), tuple(r[1] for r in rows))


def check(conn: psycopg.Connection, statements: list[StatementAnalysis]) -> list[BackfillCheck]:
    """For each data statement: would --strategy online batch it, and if not, why (read-only)."""
    checks = []
    in_block = False  # between BEGIN and COMMIT written in the file: the author asked for one transaction
    for stmt in statements:
        if stmt.kind == "transaction control":
            text = stmt.sql.strip().upper()
            in_block = text.startswith(("BEGIN", "START")) or (in_block and not text.startswith(("COMMIT", "END")))
            continue
        if stmt.kind not in DATA_KINDS:
            continue
        table = stmt.locks[0].table if stmt.locks else ""
        found = candidate(stmt)
        if isinstance(found, str):
            checks.append(BackfillCheck(stmt.index, stmt.line, stmt.kind, table, False, reason=found))
            continue
        if in_block:
            checks.append(
                BackfillCheck(
                    stmt.index,
                    stmt.line,
                    found.kind,
                    found.table,
                    False,
                    reason="it is inside BEGIN … COMMIT in the file, which asks for one transaction",
                )
            )
            continue
        key = primary_key(conn, found.table)
        if key is None:
            row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (catalog.regclass_text(found.table),)).fetchone()
            assert row is not None  # a SELECT without FROM returns one row
            exists = row[0]
            reason = (
                f"{found.table} has no primary key: there is no key to walk in batches"
                if exists
                else f"{found.table} does not exist yet: batched if it has a primary key when the statement runs"
            )
            checks.append(BackfillCheck(stmt.index, stmt.line, found.kind, found.table, not exists, reason=reason))
            continue
        checks.append(
            BackfillCheck(
                stmt.index,
                stmt.line,
                found.kind,
                found.table,
                True,
                key.label,
                f"in batches by keyset on {found.table} ({key.label}) with --strategy online",
            )
        )
    return checks


def _row(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "ROW(" + ", ".join(parts) + ")"


def range_predicate(reference: str, key: Key, first_param: int = 1) -> str:
    """`(ref.k1, ref.k2) >= ($1, $2) AND (ref.k1, ref.k2) <= ($3, $4)`: one batch's key range, both ends in it."""
    columns = [f"{reference}.{_ident(c)}" for c in key.columns]
    n = len(key.columns)
    low = [f"${first_param + i}::{t}" for i, t in enumerate(key.types)]
    high = [f"${first_param + n + i}::{t}" for i, t in enumerate(key.types)]
    return f"{_row(columns)} >= {_row(low)} AND {_row(columns)} <= {_row(high)}"


def batch_sql(found: Candidate, key: Key) -> str:
    """The statement with its WHERE narrowed to one key range ($1..$n the first key, $n+1..$2n the last)."""
    node = pglast.parse_sql(found.sql)[0].stmt
    # a candidate is an UPDATE or a DELETE, or an INSERT whose query is one SELECT (see `candidate`)
    assert isinstance(node, (ast.UpdateStmt, ast.DeleteStmt, ast.InsertStmt))
    where_of = node.selectStmt if isinstance(node, ast.InsertStmt) else node
    assert isinstance(where_of, (ast.UpdateStmt, ast.DeleteStmt, ast.SelectStmt))
    probe = pglast.parse_sql(f"SELECT 1 WHERE {range_predicate(found.reference, key)}")[0].stmt
    assert isinstance(probe, ast.SelectStmt)  # the text above is one SELECT
    narrowed = probe.whereClause
    if where_of.whereClause is None:
        where_of.whereClause = narrowed
    else:
        where_of.whereClause = ast.BoolExpr(boolop=BoolExprType.AND_EXPR, args=(where_of.whereClause, narrowed))
    return RawStream()(node)


def bounds_sql(key: Key, *, after: bool, limit: int) -> tuple[str, int]:
    """The first and last key of the next `limit` keys (after a position when `after`), and how many there are.

    Read from the primary key's index in key order, LIMIT n: a keyset, never OFFSET. Positions go in and
    come out as text, cast to the key's types, so any key type is kept in a JSON record.
    """
    table = catalog.regclass_text(key.table)
    columns = [_ident(c) for c in key.columns]
    ordered = ", ".join(columns)
    descending = ", ".join(f"{c} DESC" for c in columns)
    as_text = "ARRAY[" + ", ".join(f"{c}::text" for c in columns) + "]"
    where = ""
    if after:
        where = f"WHERE {_row(columns)} > {_row([f'%s::{t}' for t in key.types])} "
    text = (
        f"WITH s AS MATERIALIZED (SELECT {ordered} FROM {table} {where}ORDER BY {ordered} LIMIT {int(limit)}) "
        f"SELECT (SELECT {as_text} FROM s ORDER BY {ordered} LIMIT 1), "
        f"(SELECT {as_text} FROM s ORDER BY {descending} LIMIT 1), (SELECT count(*) FROM s)"
    )
    return text, len(key.columns) if after else 0
