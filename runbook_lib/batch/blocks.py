"""Named SQL blocks with expectations (preflight.sql, validation.sql), each run in its own savepoint.

    -- name: Reject Lead without customer_id
    -- expect: error 23502
    INSERT INTO "Lead" (id, channel, name) VALUES (gen_random_uuid(), 'messenger', 'Test');
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg
import psycopg.errors
from pglast.parser import ParseError, parse_sql
from pglast.stream import RawStream

from runbook_lib.batch.model import read_sql
from runbook_lib.errors import BatchError
from runbook_lib.sql import parse as sql_parse

_HEADER = re.compile(r"^\s*--\s*(name|expect)\s*:\s*(.*?)\s*$", re.IGNORECASE)
# `error 23503 constraint "Job_customer_id_fkey"`, `error 23502 column customer_id`: which object must raise it.
_ERROR_OBJECT = re.compile(r'^(.*?)\s*\b(constraint|column)\s+("(?:[^"]|"")+"|\S+)\s*$', re.IGNORECASE | re.S)
# The `source` of a test derived from migration.sql starts with this (runbook_lib.batch.derived sets it).
DERIVED_SOURCE = "derived: "
EXPECTATION_HELP = (
    "error <SQLSTATE or condition name> [constraint <name> | column <name>], ok, <value>, rows <n>, empty"
)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Expectation:
    kind: str  # error | ok | value | rows | empty
    value: str = ""  # SQLSTATEs for error ("23001|23503": any of them), the scalar for value, the count for rows
    # For error: the constraint or column the server must name (diag constraint_name / column_name), so a
    # test proves that *this* constraint refused the statement, not another one that happened to fire first.
    constraint: str = ""
    column: str = ""

    @classmethod
    def parse(cls, text: str, where: str) -> "Expectation":
        raw = text.strip()
        lowered = raw.lower()
        if lowered in ("ok", "empty"):
            return cls(lowered)
        if lowered.startswith("error"):
            codes_text, constraint, column = raw[5:].strip(), "", ""
            found = _ERROR_OBJECT.match(codes_text)
            if found:
                codes_text, what, name = found.group(1), found.group(2).lower(), found.group(3)
                if name.startswith('"') and name.endswith('"') and len(name) >= 2:
                    name = name[1:-1].replace('""', '"')
                constraint, column = (name, "") if what == "constraint" else ("", name)
            wanted = [c for c in re.split(r"\s*(?:\||\bor\b|,)\s*", codes_text.strip()) if c]
            codes = []
            for code in wanted:
                try:
                    codes.append(psycopg.errors.lookup(code).sqlstate or code)
                except KeyError:
                    raise BatchError(
                        f"{where}: {code!r} is neither a SQLSTATE nor a PostgreSQL condition name "
                        "(e.g. 23502 or not_null_violation); fix the expectation."
                    ) from None
            return cls("error", "|".join(codes), constraint, column)  # no code: any error
        if lowered.startswith("rows"):
            count = raw[4:].strip()
            if not count.isdigit():
                raise BatchError(f"{where}: 'rows' needs a count, like 'rows 3'.")
            return cls("rows", count)
        if not raw:
            raise BatchError(f"{where}: the expectation is empty; write one of: {EXPECTATION_HELP}.")
        value = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"" else raw
        return cls("value", value)

    def __str__(self) -> str:
        if self.kind == "error":
            text = f"error {self.value}".strip()
            if self.constraint:
                text += f" constraint {_quote_ident(self.constraint)}"
            if self.column:
                text += f" column {_quote_ident(self.column)}"
            return text
        if self.kind == "rows":
            return f"rows {self.value}"
        if self.kind == "value":
            return self.value
        return self.kind


@dataclass(frozen=True)
class SqlBlock:
    name: str
    sql: str
    expect: Expectation
    source: str  # file:line, or "batch.toml" for expanded checks
    line: int = 0
    # Set when the test could not be built (e.g. no value for a required column): it is reported as a
    # FAIL with this reason and never run.
    not_runnable: str = ""


# A built test row's made-up strings (batch.rowbuilder): two tests that differ only in them are one test.
_MADE_UP = re.compile(r"'runbook-test-[0-9a-f]*'")


def _shape(block: SqlBlock) -> str | None:
    """The block's SQL as PostgreSQL's parser reads it (spacing, case and needless quotes aside; literals kept
    but a made-up row value); None for a block that does not run or does not parse (it reports that itself)."""
    if block.not_runnable:
        return None
    try:
        return RawStream()(parse_sql(_MADE_UP.sub("'runbook-test'", block.sql))) or None
    except ParseError:
        return None


def unrepeated(extra: list[SqlBlock], kept: list[SqlBlock]) -> list[SqlBlock]:
    """`extra` less the blocks `kept` already asks: the same statement (`_shape`) with the same expectation.

    A gate batch.toml implies that preflight.sql asks, a test derived from migration.sql that a declared check
    runs too: asked once, under the name of the one kept, so X/Y counts tests, not their copies."""
    have = [(_shape(b), b.expect) for b in kept]
    return [b for b in extra if (shape := _shape(b)) is None or (shape, b.expect) not in have]


@dataclass(frozen=True)
class BlockResult:
    """One test or gate as the report shows it: what was attempted, what happened, PASS or FAIL."""

    name: str
    sql: str
    expectation: str
    outcome: str
    passed: bool
    sqlstate: str = ""
    message: str = ""
    value: str = ""
    source: str = ""
    duration_ms: float = 0.0
    constraint: str = ""  # the constraint the server named in its error, if any
    column: str = ""  # the column the server named in its error, if any

    @property
    def status(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def derived(self) -> bool:
        """Derived from migration.sql's statements (runbook_lib.batch.derived), not declared by someone."""
        return self.source.startswith(DERIVED_SOURCE)


def parse(sql: str, *, filename: str) -> list[SqlBlock]:
    """Blocks of a file: the `-- name:` / `-- expect:` comments right before each statement."""
    blocks = []
    for statement in sql_parse.split(sql, filename=filename):
        name = expect = None
        for line in statement.leading.splitlines():
            match = _HEADER.match(line)
            if match:
                key, value = match.group(1).lower(), match.group(2)
                if key == "name":
                    name, expect = value, None  # a new header starts a new block
                else:
                    expect = value
        where = f"{filename} line {statement.line}"
        if expect is None:
            label = f"block {name!r}" if name else "the statement"
            raise BatchError(
                f"{where}: {label} has no '-- expect:' line; add one before it ({EXPECTATION_HELP})."
            )
        blocks.append(
            SqlBlock(
                name=name or f"Statement at line {statement.line}",
                sql=statement.text.strip(),
                expect=Expectation.parse(expect, where),
                source=where,
                line=statement.line,
            )
        )
    return blocks


def load(path: Path) -> list[SqlBlock]:
    return parse(read_sql(path), filename=path.name)


def _scalar_text(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    return str(value)


def _values_equal(actual: str, expected: str) -> bool:
    if actual == expected:
        return True
    try:
        return Decimal(actual) == Decimal(expected)
    except ArithmeticError:
        return actual.lower() == expected.lower() and expected.lower() in ("true", "false", "null")


def _wrong_object(expect: Expectation, constraint: str, column: str) -> str:
    """Why an error with the expected SQLSTATE still does not prove the test ("" when it does)."""
    if expect.constraint and constraint != expect.constraint:
        named = f"constraint {_quote_ident(constraint)}" if constraint else "no constraint"
        return f"raised by {named}, not {_quote_ident(expect.constraint)}"
    if expect.column and column != expect.column:
        named = f"column {_quote_ident(column)}" if column else "no column"
        return f"raised for {named}, not {_quote_ident(expect.column)}"
    return ""


def run(conn: psycopg.Connection, block: SqlBlock) -> BlockResult:
    """Run one block inside a savepoint of the caller's transaction and judge it."""
    started = time.perf_counter()
    expect = block.expect
    if block.not_runnable:
        return BlockResult(block.name, block.sql, str(expect), f"not run: {block.not_runnable}", False,
                           source=block.source)
    try:
        with conn.transaction():
            cur = conn.execute(block.sql)
            rows = cur.fetchall() if cur.description else None
            rowcount = cur.rowcount
            if expect.kind == "error":
                # It should have been refused: undo it, so its rows cannot skew the blocks after it.
                raise psycopg.Rollback()
    except psycopg.Error as exc:
        elapsed = (time.perf_counter() - started) * 1000
        diag = exc.diag
        sqlstate = diag.sqlstate or ""
        message = diag.message_primary or str(exc).strip().splitlines()[0]
        constraint, column = diag.constraint_name or "", diag.column_name or ""
        passed = expect.kind == "error" and (not expect.value or sqlstate in expect.value.split("|"))
        outcome = f"error {sqlstate}: {message}"
        wrong_object = _wrong_object(expect, constraint, column)
        if passed and wrong_object:
            passed = False
            outcome = f"error {sqlstate} {wrong_object}: {message}"
        return BlockResult(
            block.name, block.sql, str(expect), outcome, passed,
            sqlstate, message, "", block.source, elapsed, constraint, column,
        )
    elapsed = (time.perf_counter() - started) * 1000
    count = len(rows) if rows is not None else max(rowcount, 0)
    value = _scalar_text(rows[0][0]) if rows else ""
    if rows is None and rowcount < 0:
        outcome = "ok"  # a command without a row count (DO, DDL)
    elif rows is None:
        outcome = f"ok ({count} row{'s' if count != 1 else ''} affected)"
    elif len(rows) == 1 and len(rows[0]) == 1:
        outcome = value
    else:
        outcome = f"{count} row{'s' if count != 1 else ''}"
    if expect.kind == "error":
        passed = False
        outcome = f"succeeded, but an error {expect.value} was expected ({outcome})".replace(" ()", "")
    elif expect.kind == "ok":
        passed = True
    elif expect.kind == "empty":
        passed = count == 0
    elif expect.kind == "rows":
        passed = count == int(expect.value)
    else:
        passed = rows is not None and len(rows) >= 1 and _values_equal(value, expect.value)
    return BlockResult(block.name, block.sql, str(expect), outcome, passed, "", "", value, block.source, elapsed)
