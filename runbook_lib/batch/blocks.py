"""Named SQL blocks with expectations (preflight.sql, validation.sql), each run in its own savepoint.

-- name: Reject Lead without customer_id
-- expect: error 23502
INSERT INTO "Lead" (id, channel, name) VALUES (gen_random_uuid(), 'messenger', 'Test');
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg
import psycopg.errors
from pglast.parser import ParseError, parse_sql
from pglast.stream import RawStream

from runbook_lib import names
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
    def parse(cls, text: str, where: str) -> Expectation:
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
    # Set when the test could not be built (e.g. no value for a required column, a required cycle of foreign
    # keys): it is reported as not run, with this reason, and never sent to the server.
    not_runnable: str = ""
    # The statement is runbook's, built from the catalog (runbook_lib.batch.rowbuilder), not someone's SQL: an
    # error other than the one expected says the made-up rows were refused for another reason (a CHECK, a
    # trigger, another unique key), which proves nothing about the constraint under test, so the test is
    # reported as not run rather than failed.
    built: bool = False
    # The table whose foreign-key columns the built statement filled with made-up values (no parent rows): a
    # foreign-key error on it comes only at the end of the statement, after every row went in, so the
    # constraint under test did not refuse them: a failure, not a test that could not run.
    keys_made_up_on: str = ""
    # A read-only SELECT of one row (a derived catalog test) that `run_all` may ask in one query with others:
    # a migration has hundreds, and one round trip each (with its savepoint) was most of validate's time.
    batchable: bool = False
    # What the test proves, as a key (`behaviour_key`): a derived test with the key of a declared one proves the
    # same thing and is merged into it (`merged`). () for a test whose behaviour has no key (validation.sql's).
    behaviour: tuple = ()
    # Where else the same test comes from ("migration.sql line 15"): the tests merged into this one.
    also_from: tuple[str, ...] = ()
    # The merged tests whose statement or expectation differs from this one's: run too, and the result is the
    # combination (`combined`: failed if any failed, not run only if none ran).
    also: tuple[SqlBlock, ...] = ()


FOREIGN_KEY_VIOLATION = "23503"

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


def behaviour_key(
    kind: str, table: tuple[str | None, str], columns: tuple[str, ...] | list[str], outcome: str, *more: object
) -> tuple:
    """The key of what a test proves: the kind of constraint or behaviour ("not null", "foreign key", "reassign"),
    the table as (schema, name), the columns (in order), the expected outcome ("NOT NULL", "error 23502", "ok"),
    and whatever else tells two such tests apart (the parent table of a foreign key, its ON DELETE action).
    Two tests with the same key check the same behaviour: a declared one and the one derived from migration.sql."""
    return (kind, tuple(table), tuple(columns), outcome, *more)


def merged(extra: list[SqlBlock], kept: list[SqlBlock]) -> tuple[list[SqlBlock], list[SqlBlock]]:
    """`kept` with the blocks of `extra` that test the same behaviour merged into them, and the rest of `extra`.

    A block of `extra` merges into the first kept block with its `behaviour` key, or else into the first one that
    asks the same statement (`_shape`) with the same expectation (as `unrepeated`); the kept block records where
    the merged one came from (`also_from`: its source, "migration.sql line 15"), and, when the two statements or
    expectations differ, runs the merged one too (`also`): the test fails if either would (`combined`). So X/Y
    counts each behaviour once, and no check is lost by the merge."""
    kept = list(kept)
    by_key: dict[tuple, int] = {}
    for position, block in enumerate(kept):
        if block.behaviour:
            by_key.setdefault(block.behaviour, position)
    shapes: dict[Expectation, dict[str, int]] | None = None  # read by the parser only when needed
    left: list[SqlBlock] = []
    for block in extra:
        i = by_key.get(block.behaviour) if block.behaviour else None
        if i is None:
            if shapes is None:
                shapes = {}
                for j, other in enumerate(kept):
                    if (shape := _shape(other)) is not None:
                        shapes.setdefault(other.expect, {}).setdefault(shape, j)
            if block.expect in shapes and (shape := _shape(block)) is not None:
                i = shapes[block.expect].get(shape)
        if i is None:
            left.append(block)
            continue
        into = kept[i]
        same = (
            block.expect == into.expect
            and block.not_runnable == into.not_runnable
            and (block.sql == into.sql or (_shape(block) is not None and _shape(block) == _shape(into)))
        )
        kept[i] = dataclasses.replace(
            into,
            also_from=(*into.also_from, block.source.removeprefix(DERIVED_SOURCE)),
            also=into.also if same else (*into.also, dataclasses.replace(block, also=(), also_from=())),
        )
    return kept, left


def unrepeated(extra: list[SqlBlock], kept: list[SqlBlock]) -> list[SqlBlock]:
    """`extra` less the blocks `kept` already asks: the same statement (`_shape`) with the same expectation.

    A gate batch.toml implies that preflight.sql asks, a test derived from migration.sql that a declared check
    runs too: asked once, under the name of the one kept, so X/Y counts tests, not their copies."""
    have: dict[Expectation, set[str]] = {}
    for block in kept:
        if (shape := _shape(block)) is not None:
            have.setdefault(block.expect, set()).add(shape)
    # a block is read by the parser only when a kept one has its expectation (built rows make long statements)
    return [b for b in extra if b.expect not in have or (shape := _shape(b)) is None or shape not in have[b.expect]]


class Judged:
    """What a test, gate or check came to, read from its `outcome` (passed / failed / not_run)."""

    outcome: str

    @property
    def passed(self) -> bool:
        return self.outcome == names.PASSED

    @property
    def failed(self) -> bool:
        return self.outcome == names.TEST_FAILED

    @property
    def ran(self) -> bool:
        return self.outcome != names.NOT_RUN


@dataclass(frozen=True)
class BlockResult(Judged):
    """One test or gate as the report shows it: what was attempted, what happened, and its outcome.

    `outcome` is passed, failed or not_run (runbook_lib.names): not run when the test's precondition could
    not be established, so it proved nothing; `reason` says why, with the server's message when it spoke.
    """

    name: str
    sql: str
    expectation: str
    observed: str  # what happened, in words: "error 23502: ...", "ok (1 row affected)", the value read
    outcome: str  # names.PASSED | names.TEST_FAILED | names.NOT_RUN
    sqlstate: str = ""
    message: str = ""
    value: str = ""
    source: str = ""
    duration_ms: float = 0.0
    constraint: str = ""  # the constraint the server named in its error, if any
    column: str = ""  # the column the server named in its error, if any
    reason: str = ""  # why it was not run ("" when it ran)
    # Where else the same test comes from: the derived tests merged into this one ("migration.sql line 15").
    also_from: tuple[str, ...] = ()
    # The results of those merged tests whose statement differed (each ran too; `outcome` combines them all).
    also: tuple[BlockResult, ...] = ()

    @property
    def status(self) -> str:
        return names.TEST_STATUS[self.outcome]

    @property
    def derived(self) -> bool:
        """Derived from migration.sql's statements (runbook_lib.batch.derived), not declared by someone."""
        return self.source.startswith(DERIVED_SOURCE)

    @property
    def sources(self) -> str:
        """Where the test comes from, with where else: "batch.toml, also derived from migration.sql line 15"."""
        if not self.also_from:
            return self.source
        return f"{self.source}, also derived from {', '.join(self.also_from)}"


def combined(block: SqlBlock, main: BlockResult, halves: list[BlockResult]) -> BlockResult:
    """One test's result from its own and those of the tests merged into it that ran too (`SqlBlock.also`):
    failed if any failed, passed if none failed and one passed, not run only if none ran. What it observed is its
    own, followed by what each merged test that came to another outcome observed."""
    results = [main, *halves]
    if any(r.failed for r in results):
        outcome = names.TEST_FAILED
    elif any(r.passed for r in results):
        outcome = names.PASSED
    else:
        outcome = names.NOT_RUN
    observed = main.observed
    for half in halves:
        if half.outcome != main.outcome:
            observed += (
                f"; the test derived from {half.source.removeprefix(DERIVED_SOURCE)} expected "
                f"{half.expectation}, got {half.observed}"
            )
    if not main.ran and outcome == names.PASSED:  # this one proved nothing, a merged one did
        shown = next(h for h in halves if h.passed)
        observed = (
            f"{shown.observed} (the test derived from {shown.source.removeprefix(DERIVED_SOURCE)}; "
            f"this one was {main.observed})"
        )
    reasons = [r.reason for r in results if r.reason] if outcome == names.NOT_RUN else []
    return dataclasses.replace(
        main,
        outcome=outcome,
        observed=observed,
        reason="; ".join(dict.fromkeys(reasons)),
        duration_ms=main.duration_ms + sum(h.duration_ms for h in halves),
        also_from=block.also_from,
        also=tuple(halves),
    )


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
            raise BatchError(f"{where}: {label} has no '-- expect:' line; add one before it ({EXPECTATION_HELP}).")
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


def _named_object(constraint: str, column: str) -> str:
    if constraint:
        return f"constraint {_quote_ident(constraint)}"
    return f"column {_quote_ident(column)}" if column else ""


def _refused(block: SqlBlock, sqlstate: str, constraint: str, column: str) -> str:
    """Why an error the block did not expect makes it not run ("" when it is a plain failure).

    The test did not reach what it is about when the server refused its statement on another object than
    the one the expectation names (another unique key took the duplicate first), or, for a statement runbook
    built, for any reason at all (its made-up rows met a CHECK, a trigger, a key it could not satisfy). An
    error that names no object, against a statement someone wrote, is that statement failing: a failure.
    """
    expect = block.expect
    other = _named_object(constraint, column)
    codes = expect.value.split("|") if expect.kind == "error" and expect.value else []
    if expect.kind == "error" and (not codes or sqlstate in codes):
        wrong = _wrong_object(expect, constraint, column)
        return f"the error was {wrong}" if wrong else ""
    if (expect.constraint or expect.column) and other:
        return f"the statement was refused by {other} (error {sqlstate}) before it reached the one under test"
    if block.built:
        by = f" by {other}" if other else ""
        what = "the rows runbook built for it were" if expect.kind != "ok" else "the row runbook built was"
        return f"{what} refused{by} (error {sqlstate}), for a reason other than the one the test is about"
    return ""


def run(conn: psycopg.Connection, block: SqlBlock) -> BlockResult:
    """Run one block inside a savepoint of the caller's transaction and judge it: passed, failed or not run."""
    started = time.perf_counter()
    expect = block.expect
    if block.not_runnable:
        return BlockResult(
            block.name,
            block.sql,
            str(expect),
            f"not run: {block.not_runnable}",
            names.NOT_RUN,
            source=block.source,
            reason=block.not_runnable,
        )
    try:
        with conn.transaction():
            cur = conn.execute(block.sql)
            rows = cur.fetchall() if cur.description else None
            rowcount = cur.rowcount
            if expect.kind == "error" or block.built:
                # Refused or not, undo it, so its rows cannot skew the blocks after it (what a built test inserts
                # never stays, as in `_run_built`; someone's block that is meant to work keeps its effect).
                raise psycopg.Rollback()
    except psycopg.Error as exc:
        diag = exc.diag
        return _judged_error(
            block,
            diag.sqlstate or "",
            diag.message_primary or str(exc).strip().splitlines()[0],
            diag.constraint_name or "",
            diag.column_name or "",
            diag.table_name or "",
            (time.perf_counter() - started) * 1000,
        )
    return _judged(block, rows, rowcount, (time.perf_counter() - started) * 1000)


def _judged_error(
    block: SqlBlock, sqlstate: str, message: str, constraint: str, column: str, table: str, elapsed: float
) -> BlockResult:
    """The result of a block whose statement the server refused: passed, failed or not run, and why."""
    expect = block.expect
    observed = f"error {sqlstate}: {message}"
    refused = _refused(block, sqlstate, constraint, column)
    if block.keys_made_up_on and sqlstate == FOREIGN_KEY_VIOLATION and table == block.keys_made_up_on:
        outcome, reason = names.TEST_FAILED, ""
        observed = (
            f"accepted: the rows went in, and only foreign key {_quote_ident(constraint)} refused them at "
            f"the end of the statement (runbook made up its values): {message}"
        )
    elif refused:
        outcome, reason = names.NOT_RUN, f"{refused}; the server said: {message}"
        observed = f"not run: {reason}"
    else:
        passed = expect.kind == "error" and (not expect.value or sqlstate in expect.value.split("|"))
        outcome, reason = (names.PASSED if passed else names.TEST_FAILED), ""
    return BlockResult(
        block.name,
        block.sql,
        str(expect),
        observed,
        outcome,
        sqlstate,
        message,
        "",
        block.source,
        elapsed,
        constraint,
        column,
        reason,
    )


def _judged(block: SqlBlock, rows: list | None, rowcount: int, elapsed: float) -> BlockResult:
    """The result of a block whose statement ran without an error: its rows (None: no result set) or row count."""
    expect = block.expect
    count = len(rows) if rows is not None else max(rowcount, 0)
    value = _scalar_text(rows[0][0]) if rows else ""
    if rows is None and rowcount < 0:
        observed = "ok"  # a command without a row count (DO, DDL)
    elif rows is None:
        observed = f"ok ({count} row{'s' if count != 1 else ''} affected)"
    elif len(rows) == 1 and len(rows[0]) == 1:
        observed = value
    else:
        observed = f"{count} row{'s' if count != 1 else ''}"
    if expect.kind == "error":
        passed = False
        observed = f"succeeded, but an error {expect.value} was expected ({observed})".replace(" ()", "")
    elif expect.kind == "ok":
        passed = True
    elif expect.kind == "empty":
        passed = count == 0
    elif expect.kind == "rows":
        passed = count == int(expect.value)
    else:
        passed = rows is not None and len(rows) >= 1 and _values_equal(value, expect.value)
    return BlockResult(
        block.name,
        block.sql,
        str(expect),
        observed,
        names.PASSED if passed else names.TEST_FAILED,
        "",
        "",
        value,
        block.source,
        elapsed,
    )


_BATCH_COLUMNS = 400  # at most this many tests in one SELECT (PostgreSQL allows 1664 columns)


def run_all(conn: psycopg.Connection, blocks: list[SqlBlock]) -> list[BlockResult]:
    """Every block's result, in the blocks' order, asked in as few round trips as the blocks allow.

    The `batchable` ones (catalog reads) go first, in one query per few hundred: they only read the catalog, so
    when they run changes nothing. The others run in their order; among them, consecutive built INSERTs (which
    are undone whatever happens) share one DO block (`_run_built`), and the rest run one by one (`run`), so a
    block of validation.sql still sees what the blocks before it did. A batch the server refuses is asked again
    block by block: each result is the one `run` would give. A block with merged tests to run too (`also`) runs
    them right after it, and its result is the combination (`combined`)."""
    if any(b.also for b in blocks):
        flat = [part for b in blocks for part in (dataclasses.replace(b, also=()), *b.also)]
        found = iter(run_all(conn, flat))
        out = []
        for block in blocks:
            main = next(found)
            halves = [next(found) for _ in block.also]
            out.append(combined(block, main, halves))
        return out
    results: dict[int, BlockResult] = {}
    reads = [i for i, b in enumerate(blocks) if b.batchable and not b.not_runnable]
    for start in range(0, len(reads), _BATCH_COLUMNS):
        chunk = reads[start : start + _BATCH_COLUMNS]
        results.update(zip(chunk, _run_batch(conn, [blocks[i] for i in chunk]), strict=True))
    built: list[int] = []

    def flush() -> None:
        for start in range(0, len(built), _BUILT_PER_BLOCK):
            chunk = built[start : start + _BUILT_PER_BLOCK]
            results.update(zip(chunk, _run_built(conn, [blocks[i] for i in chunk]), strict=True))
        built.clear()

    for i, block in enumerate(blocks):
        if i in results:
            continue
        if block.built and not block.not_runnable and _ONE_INSERT.match(block.sql):
            built.append(i)
            continue
        flush()
        results[i] = run(conn, block)
    flush()
    return [
        dataclasses.replace(results[i], also_from=b.also_from) if b.also_from else results[i]
        for i, b in enumerate(blocks)
    ]


_SAVEPOINT = "runbook_tests"


def _in_savepoint(conn: psycopg.Connection, *statements: str) -> list[psycopg.Cursor]:
    """runbook's own statements (one each, made here) in a savepoint of the caller's transaction, savepoint and all
    in one round trip (a pipeline; `conn.transaction()` would add two); the cursors, to fetch from. When one
    fails, its error is raised after the savepoint is rolled back, as `conn.transaction()` would."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:  # no transaction to hold a savepoint
        with conn.transaction():
            return [conn.cursor().execute(statement) for statement in statements]
    try:
        with conn.pipeline():
            conn.execute(f"SAVEPOINT {_SAVEPOINT}")
            asked = [conn.cursor().execute(statement) for statement in statements]
            conn.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
    except psycopg.Error:
        if not conn.closed:
            conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            conn.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        raise
    return asked


def _run_batch(conn: psycopg.Connection, batch: list[SqlBlock]) -> list[BlockResult]:
    if len(batch) == 1:
        return [run(conn, batch[0])]
    text = "SELECT " + ", ".join(f"({block.sql}) AS c{i}" for i, block in enumerate(batch))
    started = time.perf_counter()
    try:
        (asked,) = _in_savepoint(conn, text)
    except psycopg.Error:
        return [run(conn, block) for block in batch]
    row = asked.fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    elapsed = (time.perf_counter() - started) * 1000 / len(batch)
    return [_judged(block, [(value,)], 1, elapsed) for block, value in zip(batch, row, strict=True)]


def do_block(body: str, tag: str = "runbook") -> str:
    """DO with `body` (PL/pgSQL) dollar-quoted under a tag the body does not hold."""
    quote = f"${tag}$"
    while quote in body:
        quote = quote[:-1] + "_$"
    return f"DO {quote}{body}{quote}"


_BUILT_PER_BLOCK = 100
_ONE_INSERT = re.compile(r"^\s*(INSERT|WITH)\b", re.IGNORECASE)  # a built INSERT (with its new parents as CTEs)
_DONE = "RBKOK"  # the SQLSTATE that undoes a built statement that went through, carrying its row count
_RESULTS_SETTING = "runbook.test_results"


def _run_built(conn: psycopg.Connection, batch: list[SqlBlock]) -> list[BlockResult]:
    """Built INSERTs (behaviour tests runbook made), each in a subtransaction of one DO block: one round trip
    instead of three each (savepoint, statement, rollback), which a release's thousands of tests pay for.

    Each statement is undone whatever happened (what a test inserts never stays for the next one); what the server
    said of it (its SQLSTATE, message, constraint, column and table, or the row count it went through with) is
    collected server-side and read back in one setting. A block the server cannot even compile is run test by
    test, as `run` runs it, so each result is the one `run` would give."""
    if len(batch) == 1:
        return [run(conn, batch[0])]
    parts = []
    for block in batch:
        parts.append(
            f"  t0 := clock_timestamp();\n  BEGIN\n    {block.sql.strip().rstrip(';')};\n"
            f"    GET DIAGNOSTICS n = ROW_COUNT;\n    RAISE SQLSTATE '{_DONE}' USING MESSAGE = n::text;\n"
            "  EXCEPTION WHEN OTHERS THEN\n"
            "    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, cn = CONSTRAINT_NAME, co = COLUMN_NAME,"
            " tb = TABLE_NAME, msg = MESSAGE_TEXT;\n"
            "    found := found || jsonb_build_array(jsonb_build_array(st, msg, cn, co, tb,"
            " extract(epoch FROM clock_timestamp() - t0) * 1000));\n  END;\n"
        )
    body = (
        "\nDECLARE\n  st text; cn text; co text; tb text; msg text; n bigint; t0 timestamptz;"
        " found jsonb := '[]';\nBEGIN\n"
        + "".join(parts)
        + f"  PERFORM set_config('{_RESULTS_SETTING}', found::text, true);\nEND\n"
    )
    try:
        _, asked = _in_savepoint(conn, do_block(body, "runbook_tests"), f"SELECT current_setting('{_RESULTS_SETTING}')")
    except psycopg.Error:
        return [run(conn, block) for block in batch]
    setting = asked.fetchone()
    assert setting is not None  # a SELECT without FROM returns one row
    found = json.loads(setting[0])
    results = []
    for block, (sqlstate, message, constraint, column, table, elapsed) in zip(batch, found, strict=True):
        if sqlstate == _DONE:  # it went through: judged as `run` judges a statement without a result set
            results.append(_judged(block, None, int(message), float(elapsed)))
        else:
            results.append(
                _judged_error(block, sqlstate, message, constraint or "", column or "", table or "", float(elapsed))
            )
    return results
