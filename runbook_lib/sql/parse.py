"""SQL text split into statements by PostgreSQL's parser (pglast), never by semicolons.

The one splitter of runbook: migration files, rollback files and the SQL blocks of preflight.sql and
validation.sql all go through `split`, so a syntax error reads the same wherever it is found.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TypeVar

import pglast
from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream

from runbook_lib.errors import AnalysisError

T = TypeVar("T")


def required(value: T | None) -> T:
    """A field of a parse tree that the grammar always fills: a statement's table, a column's name, a String's text.

    pglast types every field of a node as optional (a node can be built empty); one the parser built has these set.
    """
    assert value is not None, "the parser left a field empty that its grammar requires"
    return value


@dataclass(frozen=True)
class SqlStatement:
    """One statement as the parser sees it: from its first token to its last, without the ';'."""

    index: int  # 1-based position in the file
    line: int  # 1-based line where the statement starts
    start: int  # character offsets in the file
    end: int
    text: str
    leading: str  # the text between the previous statement and this one (comments)
    raw: ast.RawStmt | None = field(default=None, compare=False, repr=False)


def line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, max(0, offset)) + 1


def _syntax_error(sql: str, exc: ParseError, filename: str | None) -> AnalysisError:
    message, location = exc.args[0], exc.args[1] if len(exc.args) > 1 else None
    where = filename or "the SQL"
    if not isinstance(location, int):
        # "syntax error at end of input": the last statement is unfinished.
        line = max(1, len(sql.rstrip().splitlines()))
        column = None
        position = f"line {line}"
    else:
        line = line_at(sql, location)
        column = location - (sql.rfind("\n", 0, location) + 1) + 1
        position = f"line {line}, column {column}"
    return AnalysisError(
        f"{where} {position}: {message}; fix the SQL so that PostgreSQL can parse it.",
        filename=filename,
        line=line,
        column=column,
    )


def split(sql: str, *, filename: str | None = None) -> list[SqlStatement]:
    """Every statement with its line, its leading comments and its parse tree; AnalysisError names file and line.

    A file is parsed once (its last 2048 versions are kept: a release's every file, since preflight reads them all
    before apply reads them again): preflight, apply, validate and the derived tests of a release read each
    migration.sql in turn, under different names (the cache holds the text alone: the name is only for errors).
    The parse trees are shared: read them, never change them."""
    try:
        return list(_split(sql))
    except ParseError as exc:
        raise _syntax_error(sql, exc, filename) from None
    except _Unsplittable:  # pragma: no cover - both come from one parser
        raise AnalysisError(f"{filename or 'the SQL'}: cannot split the SQL into statements.") from None


class _Unsplittable(Exception):
    """pglast's statements and its slices disagree in number (never seen: both come from one parser)."""


@functools.lru_cache(maxsize=2048)
def _split(sql: str) -> tuple[SqlStatement, ...]:
    raw_statements = pglast.parse_sql(sql)
    slices = pglast.split(sql, only_slices=True)
    if len(raw_statements) != len(slices):  # pragma: no cover - both come from one parser
        raise _Unsplittable
    statements = []
    previous_end = 0
    line, counted = 1, 0  # lines counted as the statements go: a file of thousands of statements stays linear
    for index, (raw, piece) in enumerate(zip(raw_statements, slices, strict=True), start=1):
        line += sql.count("\n", counted, piece.start)
        counted = piece.start
        statements.append(
            SqlStatement(
                index=index,
                line=line,
                start=piece.start,
                end=piece.stop,
                text=sql[piece.start : piece.stop],
                leading=sql[previous_end : piece.start],
                raw=raw,
            )
        )
        # the slice ends before the ';': the gap up to the next statement holds its comments
        previous_end = piece.stop + 1 if sql[piece.stop : piece.stop + 1] == ";" else piece.stop
    return tuple(statements)


def split_statements(sql: str, *, filename: str | None = None) -> list[tuple[int, int, str]]:
    """(index, line, text) per statement: the plain form lint and the tests use."""
    return [(s.index, s.line, s.text) for s in split(sql, filename=filename)]


def type_name_sql(text: str) -> str | None:
    """`text` as the PostgreSQL parser reads a type name (e.g. "varchar(80)"), or None if it is anything else.

    The text goes into SQL only in this parsed and re-printed form: a cast of NULL with one plain type name
    and constant modifiers, nothing more.
    """
    if not isinstance(text, str) or not text.strip() or ";" in text:
        return None
    try:
        statements = parse_sql(f"SELECT NULL::{text}")
    except ParseError:
        return None
    if len(statements) != 1 or not isinstance(statements[0].stmt, ast.SelectStmt):
        return None
    select = statements[0].stmt
    targets = select.targetList or ()
    if select.fromClause or select.whereClause or select.valuesLists or len(targets) != 1:
        return None
    cast = targets[0].val
    if not isinstance(cast, ast.TypeCast) or not isinstance(cast.arg, ast.A_Const) or not cast.arg.isnull:
        return None
    type_name = required(cast.typeName)  # a cast always names its type
    if not all(isinstance(mod, ast.A_Const) and isinstance(mod.val, ast.Integer) for mod in type_name.typmods or ()):
        return None
    return RawStream()(type_name)
