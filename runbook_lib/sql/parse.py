"""SQL files split into statements by the PostgreSQL parser (pglast), never by semicolons."""

from __future__ import annotations

from dataclasses import dataclass

import pglast
from pglast.parser import ParseError

from runbook_lib.errors import BatchError


@dataclass(frozen=True)
class SqlStatement:
    index: int  # 1-based position in the file
    line: int  # 1-based line where the statement starts
    start: int  # character offsets in the file
    end: int
    text: str
    leading: str  # the text between the previous statement and this one (comments)


def line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, max(0, offset)) + 1


def split(sql: str, *, filename: str = "SQL") -> list[SqlStatement]:
    """Statements with their lines; a syntax error names the file and the line."""
    try:
        slices = list(pglast.split(sql, with_parser=True, only_slices=True))
    except ParseError as exc:
        message = exc.args[0] if exc.args else str(exc)
        location = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        where = f"{filename} line {line_at(sql, location)}" if location is not None else filename
        raise BatchError(f"{where}: {message}; fix the SQL there.") from None
    statements = []
    previous_end = 0
    for index, piece in enumerate(slices, start=1):
        # pglast's slice end excludes the semicolon; the gap up to the next statement holds its comments.
        statements.append(
            SqlStatement(
                index=index,
                line=line_at(sql, piece.start),
                start=piece.start,
                end=piece.stop,
                text=sql[piece.start : piece.stop],
                leading=sql[previous_end : piece.start],
            )
        )
        previous_end = piece.stop + 1 if sql[piece.stop : piece.stop + 1] == ";" else piece.stop
    return statements
