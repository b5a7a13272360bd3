"""How a SQL file is executed: a plan of steps, each one transaction (or one statement that cannot run in one).

- direct (default): the whole file in one transaction, all or nothing. Statements that cannot run
  in a transaction (CREATE INDEX CONCURRENTLY and the like) split the file: each runs on its own,
  with a clean-up if it fails (an invalid index is dropped).
- BEGIN / COMMIT written in the file (Prisma writes them around an enum rewrite) mark where the
  file's author wants a transaction to start and end: runbook, which owns the transaction, does not
  send them but starts a new step there, so the statements between them are one transaction and a
  COMMIT in the middle of the file commits what precedes it (a new enum value is usable after it).
  ROLLBACK and two-phase commit in a migration are refused: the file would discard its own work.
- online: each `SET NOT NULL` becomes CHECK (col IS NOT NULL) NOT VALID, VALIDATE, SET NOT NULL +
  DROP CHECK; each ADD FOREIGN KEY / ADD CHECK becomes NOT VALID, then VALIDATE. Every step is a
  short transaction, so the long scans run under SHARE UPDATE EXCLUSIVE and writes go on. A data
  statement whose shape allows it (`sql.batching`) runs in batches by keyset, each batch a transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pglast
from pglast import ast
from pglast.enums import AlterTableType, ConstrType, TransactionStmtKind
from pglast.stream import RawStream

from runbook_lib.config import DIRECT, ONLINE, STRATEGIES  # re-exported: plan.DIRECT reads naturally
from runbook_lib.errors import BatchError, RunbookError
from runbook_lib.sql import batching
from runbook_lib.sql.analysis import StatementAnalysis
from runbook_lib.sql.parse import required

_MAX_IDENT = 63


@dataclass(frozen=True)
class PlannedStatement:
    index: int  # the statement's position in the file (the same for every piece of a transformed statement)
    line: int
    kind: str
    sql: str
    locks: str = ""  # expected, from the parser; the timeline records what pg_locks measured
    table_locks: tuple[tuple[str, str], ...] = ()  # the same, as (table, mode) pairs


@dataclass(frozen=True)
class Step:
    number: int
    purpose: str
    statements: tuple[PlannedStatement, ...]
    transactional: bool = True
    cleanup: tuple[str, ...] = ()  # removes what this step added, if a step of its group fails
    group: int = 0  # the steps that make one statement online; a failure undoes its whole group
    # A step outside a transaction cannot commit with its ledger progress: a query returning true when its
    # effect is already complete (an index built and valid), which a resumed run asks before redoing it.
    done_check: str = ""
    # online: a data statement run in batches by keyset, each batch its own transaction (execution.backfill)
    backfill: batching.Candidate | None = None

    @property
    def label(self) -> str:
        return f"step {self.number} ({self.purpose})"

    @property
    def fingerprint(self) -> str:
        """What the step runs, in 16 hex digits: a resumed run compares the steps an earlier run committed."""
        text = "\n".join(s.sql for s in self.statements) + ("" if self.transactional else "\n-- outside a transaction")
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _pairs(stmt: StatementAnalysis) -> tuple[tuple[str, str], ...]:
    return tuple((lock.table, lock.mode) for lock in stmt.locks)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table_sql(rel: ast.RangeVar) -> str:
    return (_ident(rel.schemaname) + "." if rel.schemaname else "") + _ident(required(rel.relname))


def _constraint_name(table: str, column: str, suffix: str) -> str:
    name = f"{table}_{column}_{suffix}"
    return name if len(name) <= _MAX_IDENT else name[: _MAX_IDENT - len(suffix) - 1] + "_" + suffix


def _single_alter(stmt: StatementAnalysis) -> ast.AlterTableStmt | None:
    """The one-subcommand ALTER TABLE this statement is, or None."""
    try:
        node = pglast.parse_sql(stmt.sql)[0].stmt
    except pglast.parser.ParseError:
        return None
    if isinstance(node, ast.AlterTableStmt) and node.cmds and len(node.cmds) == 1:
        return node
    return None


def _online_pieces(stmt: StatementAnalysis) -> list[tuple[str, list[PlannedStatement], tuple[str, ...]]] | None:
    """The steps that replace one statement under the online strategy, or None to keep it as it is."""
    node = _single_alter(stmt)
    if node is None:
        return None
    cmd: ast.AlterTableCmd = required(node.cmds)[0]  # `_single_alter` returns an ALTER TABLE of one subcommand
    relation = required(node.relation)  # ALTER TABLE always names its table
    relname = required(relation.relname)
    table = _table_sql(relation)

    def piece(kind: str, text: str) -> PlannedStatement:
        # Each piece is analysed on its own: VALIDATE takes SHARE UPDATE EXCLUSIVE, not the original's lock.
        from runbook_lib.sql.analysis import analyze

        [own] = analyze(text)
        return PlannedStatement(stmt.index, stmt.line, kind, text, own.lock_summary, _pairs(own))

    if cmd.subtype == AlterTableType.AT_SetNotNull:
        column = required(cmd.name)  # SET NOT NULL names its column
        check = _constraint_name(relname, column, "not_null_rb")
        add = f"ALTER TABLE {table} ADD CONSTRAINT {_ident(check)} CHECK ({_ident(column)} IS NOT NULL) NOT VALID"
        drop = f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {_ident(check)}"
        return [
            (
                f"online {relname}.{column}: CHECK NOT VALID",
                [piece("ALTER TABLE … ADD CHECK NOT VALID", add)],
                (drop,),
            ),
            (
                f"online {relname}.{column}: VALIDATE CHECK (writes continue)",
                [
                    piece(
                        "ALTER TABLE … VALIDATE CONSTRAINT", f"ALTER TABLE {table} VALIDATE CONSTRAINT {_ident(check)}"
                    )
                ],
                (),
            ),
            (
                f"online {relname}.{column}: SET NOT NULL using the CHECK, then DROP it",
                [
                    piece(
                        "ALTER TABLE … SET NOT NULL", f"ALTER TABLE {table} ALTER COLUMN {_ident(column)} SET NOT NULL"
                    ),
                    piece("ALTER TABLE … DROP CONSTRAINT", f"ALTER TABLE {table} DROP CONSTRAINT {_ident(check)}"),
                ],
                (),
            ),
        ]
    if cmd.subtype == AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
        con = cmd.def_
        if con.contype not in (ConstrType.CONSTR_FOREIGN, ConstrType.CONSTR_CHECK) or con.skip_validation:
            return None
        if not con.conname:
            return None  # VALIDATE needs the name PostgreSQL would invent; keep such statements as they are
        what = "FOREIGN KEY" if con.contype == ConstrType.CONSTR_FOREIGN else "CHECK"
        con.skip_validation = True
        con.initially_valid = False
        not_valid = RawStream()(node)
        drop = f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {_ident(con.conname)}"
        return [
            (
                f"online {con.conname}: {what} NOT VALID",
                [piece(f"ALTER TABLE … ADD {what} NOT VALID", not_valid)],
                (drop,),
            ),
            (
                f"online {con.conname}: VALIDATE (writes continue)",
                [
                    piece(
                        "ALTER TABLE … VALIDATE CONSTRAINT",
                        f"ALTER TABLE {table} VALIDATE CONSTRAINT {_ident(con.conname)}",
                    )
                ],
                (),
            ),
        ]
    return None


def _concurrent_index_cleanup(stmt: StatementAnalysis) -> tuple[str, ...]:
    try:
        node = pglast.parse_sql(stmt.sql)[0].stmt
    except pglast.parser.ParseError:
        return ()
    if isinstance(node, ast.IndexStmt) and node.concurrent and node.idxname:
        schema = required(node.relation).schemaname  # CREATE INDEX always names its table
        name = (_ident(schema) + "." if schema else "") + _ident(node.idxname)
        # A failed CREATE INDEX CONCURRENTLY leaves an invalid index behind.
        return (f"DROP INDEX CONCURRENTLY IF EXISTS {name}",)
    return ()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _concurrent_index_done(stmt: StatementAnalysis) -> str:
    """CREATE INDEX CONCURRENTLY is done when its index exists and is valid (an invalid one is a leftover to
    drop and build again); DROP INDEX CONCURRENTLY is done when the index is gone."""
    try:
        node = pglast.parse_sql(stmt.sql)[0].stmt
    except pglast.parser.ParseError:
        return ""
    if isinstance(node, ast.IndexStmt) and node.concurrent and node.idxname:
        schema = required(node.relation).schemaname  # CREATE INDEX always names its table
        name = _literal((_ident(schema) + "." if schema else "") + _ident(node.idxname))
        return (
            f"SELECT coalesce((SELECT indisvalid AND indisready FROM pg_index"
            f" WHERE indexrelid = to_regclass({name})), false)"
        )
    if isinstance(node, ast.DropStmt) and node.concurrent and len(objects := node.objects or ()) == 1:
        name = _literal(".".join(_ident(part.sval) for part in objects[0]))
        return f"SELECT to_regclass({name}) IS NULL"
    return ""


_BEGIN = (TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START)
_COMMIT = (TransactionStmtKind.TRANS_STMT_COMMIT,)
_REFUSED = {
    TransactionStmtKind.TRANS_STMT_ROLLBACK: "ROLLBACK",
    TransactionStmtKind.TRANS_STMT_PREPARE: "PREPARE TRANSACTION",
    TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED: "COMMIT PREPARED",
    TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED: "ROLLBACK PREPARED",
}


def _transaction_boundary(stmt: StatementAnalysis) -> tuple[str, PlannedStatement | None] | None:
    """("begin", SET TRANSACTION for its options or None) or ("commit", None) for BEGIN/COMMIT in the file.

    None for every other statement (SAVEPOINT, RELEASE and ROLLBACK TO run inside the step as written).
    """
    if stmt.kind != "transaction control":
        return None
    try:
        node = pglast.parse_sql(stmt.sql)[0].stmt
    except pglast.parser.ParseError:  # pragma: no cover - the analysis parsed it already
        return None
    if not isinstance(node, ast.TransactionStmt):  # pragma: no cover
        return None
    if node.kind in _REFUSED:
        raise BatchError(
            f"Statement {stmt.index} (line {stmt.line}) is {_REFUSED[node.kind]}: a migration that discards or "
            "hands off its own transaction cannot be applied as one; remove it (runbook rolls back on any failure)."
        )
    if node.kind in _BEGIN:
        options = None
        if node.options:
            # BEGIN ISOLATION LEVEL ... = BEGIN; SET TRANSACTION ISOLATION LEVEL ... (first in the step).
            text = RawStream()(node)
            rest = text.split(" ", 2)[2] if text.startswith("START TRANSACTION") else text.split(" ", 1)[1]
            options = PlannedStatement(stmt.index, stmt.line, "SET TRANSACTION", f"SET TRANSACTION {rest}")
        return "begin", options
    if node.kind in _COMMIT:
        return "commit", None
    return None


def build(statements: list[StatementAnalysis], strategy: str = DIRECT) -> list[Step]:
    """The steps that run `statements` under `strategy`, in file order."""
    if strategy not in STRATEGIES:
        raise RunbookError(f"Unknown strategy {strategy!r}; use one of: {', '.join(STRATEGIES)}.")
    steps: list[Step] = []
    pending: list[PlannedStatement] = []
    in_explicit_block = False  # between a BEGIN and a COMMIT written in the file

    def flush() -> None:
        if pending:
            first, last = pending[0].index, pending[-1].index
            which = f"statement {first}" if first == last else f"statements {first}-{last}"
            purpose = f"{which} in one transaction" + (" (BEGIN … COMMIT in the file)" if in_explicit_block else "")
            steps.append(Step(len(steps) + 1, purpose, tuple(pending), group=len(steps) + 1))
            pending.clear()

    for stmt in statements:
        boundary = _transaction_boundary(stmt)
        if boundary is not None:
            # runbook owns the transaction: the BEGIN/COMMIT are not sent, they start a new step.
            flush()
            what, options = boundary
            in_explicit_block = what == "begin"
            if options is not None:
                pending.append(options)
            continue
        planned = PlannedStatement(stmt.index, stmt.line, stmt.kind, stmt.sql, stmt.lock_summary, _pairs(stmt))
        if not stmt.transactional:
            flush()
            steps.append(
                Step(
                    len(steps) + 1,
                    f"statement {stmt.index} on its own: {stmt.kind} cannot run in a transaction",
                    (planned,),
                    transactional=False,
                    cleanup=_concurrent_index_cleanup(stmt),
                    group=len(steps) + 1,
                    done_check=_concurrent_index_done(stmt),
                )
            )
            continue
        found = (
            batching.candidate(stmt)
            if strategy == ONLINE and stmt.kind in batching.DATA_KINDS and not in_explicit_block
            else None
        )
        if isinstance(found, batching.Candidate):
            flush()
            steps.append(
                Step(
                    len(steps) + 1,
                    f"statement {stmt.index} in batches: {found.kind} by keyset on {found.table}",
                    (planned,),
                    group=len(steps) + 1,
                    backfill=found,
                )
            )
            continue
        pieces = _online_pieces(stmt) if strategy == ONLINE else None
        if pieces is None:
            pending.append(planned)
            continue
        flush()
        group = len(steps) + 1
        for purpose, parts, cleanup in pieces:
            steps.append(Step(len(steps) + 1, purpose, tuple(parts), cleanup=cleanup, group=group))
    flush()
    return steps


def single_transaction(steps: list[Step]) -> Step | None:
    """All the plan's statements as one transaction (for a dry run), or None when one cannot run in it."""
    if any(not s.transactional for s in steps):
        return None
    statements = tuple(p for s in steps for p in s.statements)
    # SET TRANSACTION (from a BEGIN with options in the file) is only valid as a transaction's first statement.
    statements = tuple(p for n, p in enumerate(statements) if n == 0 or p.kind != "SET TRANSACTION")
    return Step(1, "every step in one transaction, rolled back (dry run)", statements)


def describe(steps: list[Step]) -> list[str]:
    return [f"{s.number}. {s.purpose}" + ("" if s.transactional else " [outside a transaction]") for s in steps]


__all__ = ["DIRECT", "ONLINE", "STRATEGIES", "PlannedStatement", "Step", "build", "describe", "single_transaction"]
