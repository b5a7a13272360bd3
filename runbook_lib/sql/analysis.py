"""Static analysis of a migration: each statement's table locks, scans, rewrites and transactionality.

Statements are split and parsed by PostgreSQL's own parser (pglast / libpg_query). Lock levels
follow the PostgreSQL manual: "Explicit Locking" for the modes, the ALTER TABLE page for each
subcommand (the code is AlterTableGetLockLevel in tablecmds.c), and each command's page for the
rest. Where the statement alone cannot tell (a DO block, an unrecognised command) the analysis
says so (`known=False`) and assumes the worst: ACCESS EXCLUSIVE on every table it names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pglast import ast, enums

from runbook_lib.sql import locks, parse
from runbook_lib.sql.parse import required

AT = enums.AlterTableType
CT = enums.ConstrType
OT = enums.ObjectType

ACCESS_SHARE = "ACCESS SHARE"
ROW_SHARE = "ROW SHARE"
ROW_EXCLUSIVE = "ROW EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
SHARE = "SHARE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
EXCLUSIVE = "EXCLUSIVE"
ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"


@dataclass(frozen=True)
class TableLock:
    """A lock a statement takes on one table, named as the statement writes it (without quotes)."""

    table: str
    mode: str


@dataclass(frozen=True)
class StatementAnalysis:
    """What one statement of a migration does to the tables it touches."""

    index: int
    line: int
    sql: str
    kind: str
    locks: tuple[TableLock, ...]
    scans: bool
    rewrites: bool
    transactional: bool
    known: bool
    notes: tuple[str, ...] = ()
    # what it drops that a foreign key may link to another table: ("constraint" | "table" | "column", table,
    # name); the parser cannot see those links, the catalog can (sql.linked_locks)
    drops: tuple[tuple[str, str, str], ...] = ()

    @property
    def blocks_writes(self) -> bool:
        """Whether INSERT/UPDATE/DELETE on some table wait while this statement holds its locks."""
        return any(locks.blocks_writes(lock.mode) for lock in self.locks)

    @property
    def blocks_reads(self) -> bool:
        """Whether SELECT on some table waits while this statement holds its locks."""
        return any(locks.blocks_reads(lock.mode) for lock in self.locks)

    @property
    def lock_summary(self) -> str:
        """The locks as a report shows them: "ACCESS EXCLUSIVE on Lead, SHARE ROW EXCLUSIVE on Customer"."""
        return ", ".join(f"{lock.mode} on {lock.table}" for lock in self.locks)

    @property
    def strongest_lock(self) -> str | None:
        """The strongest lock mode the statement takes, or None when it takes no table lock."""
        return locks.strongest(lock.mode for lock in self.locks) if self.locks else None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict, as the preflight record stores it."""
        return {
            "index": self.index,
            "line": self.line,
            "sql": self.sql,
            "kind": self.kind,
            "locks": [{"table": lock.table, "mode": lock.mode} for lock in self.locks],
            "strongest_lock": self.strongest_lock,
            "blocks_reads": self.blocks_reads,
            "blocks_writes": self.blocks_writes,
            "scans": self.scans,
            "rewrites": self.rewrites,
            "transactional": self.transactional,
            "known": self.known,
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------------
# Splitting


def _parse(sql: str, filename: str | None) -> list[tuple[int, int, str, ast.RawStmt]]:
    # `split` keeps every statement's parse tree
    return [(s.index, s.line, s.text, required(s.raw)) for s in parse.split(sql, filename=filename)]


# ---------------------------------------------------------------------------------------------
# Analysis


@dataclass
class _Context:
    server_major: int | None

    def before(self, major: int) -> bool:
        """Whether the server is known to be older than `major` (unknown counts as recent)."""
        return self.server_major is not None and self.server_major < major


@dataclass
class _Findings:
    """Mutable collector for one statement; frozen into a StatementAnalysis at the end."""

    kind: str = ""
    locks: dict[str, str] = field(default_factory=dict)
    scans: bool = False
    rewrites: bool = False
    transactional: bool = True
    known: bool = True
    notes: list[str] = field(default_factory=list)
    drops: list[tuple[str, str, str]] = field(default_factory=list)

    def lock(self, table: str, mode: str) -> None:
        held = self.locks.get(table)
        self.locks[table] = mode if held is None else locks.strongest((held, mode))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def _relation_name(rangevar: ast.RangeVar) -> str:
    return ".".join(part for part in (rangevar.catalogname, rangevar.schemaname, rangevar.relname) if part)


def _names(items: Iterable[object] | None) -> list[str]:
    return [required(item.sval) for item in items or () if isinstance(item, ast.String)]


def _object_name(obj: object) -> str:
    if isinstance(obj, (tuple, list)):
        return ".".join(_names(obj))
    if isinstance(obj, ast.TypeName):
        return ".".join(_names(obj.names))
    if isinstance(obj, ast.ObjectWithArgs):
        return ".".join(_names(obj.objname))
    if isinstance(obj, ast.String):
        return required(obj.sval)
    return str(obj)


def _q(name: str) -> str:
    return f'"{name}"'


def walk(node: object) -> Iterator[ast.Node]:
    """Every node of a parse (sub)tree, depth first."""
    if isinstance(node, ast.Node):
        yield node
        for attribute in node:
            yield from walk(getattr(node, attribute))
    elif isinstance(node, (tuple, list)):
        for item in node:
            yield from walk(item)


_walk = walk


def _referenced_tables(node: object) -> list[str]:
    """Every table a (sub)tree names, in order, leaving out references to its own CTEs."""
    nodes = list(_walk(node))
    cte_names = {n.ctename for n in nodes if isinstance(n, ast.CommonTableExpr)}
    tables: list[str] = []
    for n in nodes:
        if isinstance(n, ast.RangeVar) and not (n.schemaname is None and n.relname in cte_names):
            name = _relation_name(n)
            if name not in tables:
                tables.append(name)
    return tables


def _defelem_true(option: ast.DefElem) -> bool:
    arg = option.arg
    if arg is None:
        return True
    if isinstance(arg, ast.Boolean):
        return bool(arg.boolval)
    if isinstance(arg, ast.Integer):
        return arg.ival != 0
    if isinstance(arg, ast.String):
        return required(arg.sval).lower() not in ("false", "off", "0", "no")
    return True


def _option(options: Iterable[object] | None, name: str) -> bool:
    return any(isinstance(o, ast.DefElem) and o.defname == name and _defelem_true(o) for o in options or ())


_OBJECT_WORDS = {
    OT.OBJECT_TABLE: "TABLE",
    OT.OBJECT_INDEX: "INDEX",
    OT.OBJECT_VIEW: "VIEW",
    OT.OBJECT_MATVIEW: "MATERIALIZED VIEW",
    OT.OBJECT_FOREIGN_TABLE: "FOREIGN TABLE",
    OT.OBJECT_SEQUENCE: "SEQUENCE",
    OT.OBJECT_TYPE: "TYPE",
    OT.OBJECT_COLUMN: "COLUMN",
    OT.OBJECT_TABCONSTRAINT: "CONSTRAINT",
    OT.OBJECT_TRIGGER: "TRIGGER",
    OT.OBJECT_POLICY: "POLICY",
    OT.OBJECT_RULE: "RULE",
    OT.OBJECT_FUNCTION: "FUNCTION",
    OT.OBJECT_PROCEDURE: "PROCEDURE",
    OT.OBJECT_SCHEMA: "SCHEMA",
    OT.OBJECT_EXTENSION: "EXTENSION",
    OT.OBJECT_DOMAIN: "DOMAIN",
    OT.OBJECT_DATABASE: "DATABASE",
}

# Objects that are relations: locking them is locking a table-like object.
_RELATION_OBJECTS = {
    OT.OBJECT_TABLE,
    OT.OBJECT_INDEX,
    OT.OBJECT_VIEW,
    OT.OBJECT_MATVIEW,
    OT.OBJECT_FOREIGN_TABLE,
    OT.OBJECT_SEQUENCE,
}
# Objects that belong to a table: the name's last part is the object, the rest is the table.
_TABLE_MEMBER_OBJECTS = {OT.OBJECT_COLUMN, OT.OBJECT_TABCONSTRAINT, OT.OBJECT_TRIGGER, OT.OBJECT_POLICY, OT.OBJECT_RULE}


def _object_word(objtype: OT | None) -> str:
    kind = required(objtype)  # the parser sets every enum field of a statement
    return _OBJECT_WORDS.get(kind, kind.name.removeprefix("OBJECT_").replace("_", " "))


# --- ALTER TABLE -----------------------------------------------------------------------------

# Storage parameters whose change takes SHARE UPDATE EXCLUSIVE (sql-altertable.html, "SET ( ... )":
# fillfactor, toast and autovacuum parameters, and the planner parameter parallel_workers);
# any other parameter takes ACCESS EXCLUSIVE.
_LIGHT_RELOPTIONS = {
    "fillfactor",
    "parallel_workers",
    "toast_tuple_target",
    "log_autovacuum_min_duration",
    "vacuum_index_cleanup",
    "vacuum_truncate",
    "vacuum_max_eager_freeze_failure_rate",
}

# Functions known not to be volatile: an ADD COLUMN default calling only these (or none) is
# stored once in the catalog (PostgreSQL 11+) instead of being written into every row.
_NON_VOLATILE_FUNCTIONS = {
    "now",
    "statement_timestamp",
    "transaction_timestamp",
    "current_setting",
    "current_database",
    "current_schema",
    "lower",
    "upper",
    "length",
    "abs",
    "concat",
    "md5",
    "make_date",
    "make_interval",
    "make_timestamp",
    "make_timestamptz",
    "date_trunc",
    "to_timestamp",
    "to_char",
    "to_json",
    "to_jsonb",
    "json_build_object",
    "jsonb_build_object",
    "json_build_array",
    "jsonb_build_array",
    "array_fill",
}

_SERIAL_TYPES = {"serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"}


def _volatile_calls(expression: object) -> list[str]:
    calls: list[str] = []
    for node in _walk(expression):
        if isinstance(node, ast.FuncCall):
            name = _names(node.funcname)[-1].lower()
            if name not in _NON_VOLATILE_FUNCTIONS and name not in calls:
                calls.append(name)
    return calls


def _add_column(cmd: ast.AlterTableCmd, table: str, found: _Findings, ctx: _Context) -> str:
    found.lock(table, ACCESS_EXCLUSIVE)
    column = cmd.def_
    assert isinstance(column, ast.ColumnDef)  # ADD COLUMN's definition is the column's
    name = required(column.colname)
    type_names = _names(column.typeName.names) if column.typeName else []
    constraints = [c for c in column.constraints or () if isinstance(c, ast.Constraint)]
    default = next((c.raw_expr for c in constraints if c.contype == CT.CONSTR_DEFAULT), None)
    has_default = default is not None and not (isinstance(default, ast.A_Const) and default.isnull)
    not_null = column.is_not_null or any(c.contype == CT.CONSTR_NOTNULL for c in constraints)
    filled = has_default

    if type_names and type_names[-1].lower() in _SERIAL_TYPES:
        found.rewrites = filled = True
        found.note(f"adding serial column {_q(name)} writes a sequence value into every row: rewrites {_q(table)}")
    for con in constraints:
        if con.contype == CT.CONSTR_IDENTITY:
            found.rewrites = filled = True
            found.note(f"adding identity column {_q(name)} fills every row: rewrites {_q(table)}")
        elif con.contype == CT.CONSTR_GENERATED:
            filled = True
            if con.generated_kind == "v":
                found.note(f"virtual generated column {_q(name)} is computed on read: no rewrite (PostgreSQL 18+)")
            else:
                found.rewrites = True
                found.note(f"stored generated column {_q(name)} is computed for every row: rewrites {_q(table)}")
        elif con.contype == CT.CONSTR_CHECK and not con.skip_validation:
            found.scans = True
            found.note(f"scans {_q(table)} to check the new column's CHECK while holding ACCESS EXCLUSIVE")
        elif con.contype in (CT.CONSTR_PRIMARY, CT.CONSTR_UNIQUE):
            found.scans = True
            found.note(f"builds an index for {_q(name)} while holding ACCESS EXCLUSIVE on {_q(table)}")
        elif con.contype == CT.CONSTR_FOREIGN:
            _foreign_key(con, table, found)

    if has_default and not found.rewrites:
        volatile = _volatile_calls(default)
        if ctx.before(11):
            found.rewrites = True
            found.note(f"before PostgreSQL 11 a column default is written into every row: rewrites {_q(table)}")
        elif volatile:
            found.rewrites = True
            calls = ", ".join(f"{fn}()" for fn in volatile)
            found.note(
                f"default of {_q(name)} calls {calls}, taken as volatile: every row is rewritten "
                "(a constant or non-volatile default is only stored in the catalog)"
            )
        else:
            found.note(f"non-volatile default for {_q(name)} is stored in the catalog: no rewrite (PostgreSQL 11+)")
    if not_null and not filled:
        found.scans = True
        found.note(
            f"NOT NULL column {_q(name)} without a default: {_q(table)} is scanned and the command fails if it has rows"
        )
    return "ADD COLUMN"


def _foreign_key(con: ast.Constraint, table: str, found: _Findings) -> None:
    referenced = _relation_name(required(con.pktable))  # a foreign key names the table it references
    # Both tables get triggers, so both are locked like CREATE TRIGGER (sql-altertable.html).
    found.lock(table, SHARE_ROW_EXCLUSIVE)
    found.lock(referenced, SHARE_ROW_EXCLUSIVE)
    if con.skip_validation:
        found.note(
            f"NOT VALID: existing rows are not checked against {_q(referenced)}; "
            "run VALIDATE CONSTRAINT later (SHARE UPDATE EXCLUSIVE, writes continue)"
        )
    else:
        found.scans = True
        found.note(
            f"scans {_q(table)} to check every row against {_q(referenced)} while holding "
            "SHARE ROW EXCLUSIVE on both (writes to both wait); "
            "ADD ... NOT VALID then VALIDATE CONSTRAINT avoids the long lock"
        )


def _add_constraint(con: ast.Constraint, table: str, found: _Findings, ctx: _Context) -> str:
    not_valid = " NOT VALID" if con.skip_validation else ""
    if con.contype == CT.CONSTR_FOREIGN:
        _foreign_key(con, table, found)
        return "ADD FOREIGN KEY" + not_valid

    found.lock(table, ACCESS_EXCLUSIVE)
    if con.contype == CT.CONSTR_CHECK:
        if con.skip_validation:
            found.note(f"NOT VALID: existing rows of {_q(table)} are not checked; run VALIDATE CONSTRAINT later")
        else:
            found.scans = True
            found.note(f"scans {_q(table)} to check every row while holding ACCESS EXCLUSIVE (reads and writes wait)")
        return "ADD CHECK" + not_valid
    if con.contype == CT.CONSTR_NOTNULL:
        if ctx.before(18):
            found.note("ADD CONSTRAINT ... NOT NULL needs PostgreSQL 18")
        if con.skip_validation:
            found.note(f"NOT VALID: existing rows of {_q(table)} are not checked; run VALIDATE CONSTRAINT later")
        else:
            found.scans = True
            found.note(f"scans {_q(table)} to verify no NULLs while holding ACCESS EXCLUSIVE")
        return "ADD NOT NULL" + not_valid
    if con.contype in (CT.CONSTR_PRIMARY, CT.CONSTR_UNIQUE, CT.CONSTR_EXCLUSION):
        label = {CT.CONSTR_PRIMARY: "ADD PRIMARY KEY", CT.CONSTR_UNIQUE: "ADD UNIQUE"}.get(con.contype, "ADD EXCLUDE")
        if con.indexname:
            found.note(f"uses the existing index {_q(con.indexname)}: no index build")
            if con.contype == CT.CONSTR_PRIMARY:
                found.note(f"PRIMARY KEY sets its columns NOT NULL: scans {_q(table)} unless they already are")
            return label + " USING INDEX"
        found.scans = True
        found.note(
            f"builds an index by scanning {_q(table)} while holding ACCESS EXCLUSIVE (reads and writes wait); "
            "CREATE UNIQUE INDEX CONCURRENTLY then ADD CONSTRAINT ... USING INDEX avoids it"
        )
        return label
    return "ADD CONSTRAINT"


def _reloptions_mode(options: Iterable[object] | None) -> str:
    for option in options or ():
        name = required(option.defname) if isinstance(option, ast.DefElem) else ""
        namespace = option.defnamespace if isinstance(option, ast.DefElem) else None
        light = name in _LIGHT_RELOPTIONS or name.startswith("autovacuum_") or namespace == "toast"
        if not light:
            return ACCESS_EXCLUSIVE
    return SHARE_UPDATE_EXCLUSIVE


# Subcommands that only need the documented lock and need no further explanation.
_SIMPLE_SUBCOMMANDS: dict[AT, tuple[str, str]] = {
    AT.AT_DropNotNull: ("DROP NOT NULL", ACCESS_EXCLUSIVE),
    AT.AT_DropExpression: ("DROP EXPRESSION", ACCESS_EXCLUSIVE),
    AT.AT_SetStatistics: ("SET STATISTICS", SHARE_UPDATE_EXCLUSIVE),
    AT.AT_SetOptions: ("ALTER COLUMN SET (...)", SHARE_UPDATE_EXCLUSIVE),
    AT.AT_ResetOptions: ("ALTER COLUMN RESET (...)", SHARE_UPDATE_EXCLUSIVE),
    AT.AT_SetStorage: ("SET STORAGE", ACCESS_EXCLUSIVE),
    AT.AT_SetCompression: ("SET COMPRESSION", ACCESS_EXCLUSIVE),
    AT.AT_AlterConstraint: ("ALTER CONSTRAINT", ACCESS_EXCLUSIVE),
    AT.AT_AlterColumnGenericOptions: ("ALTER COLUMN OPTIONS", ACCESS_EXCLUSIVE),
    AT.AT_GenericOptions: ("OPTIONS", ACCESS_EXCLUSIVE),
    AT.AT_ChangeOwner: ("OWNER TO", ACCESS_EXCLUSIVE),
    AT.AT_ClusterOn: ("CLUSTER ON", SHARE_UPDATE_EXCLUSIVE),
    AT.AT_DropCluster: ("SET WITHOUT CLUSTER", SHARE_UPDATE_EXCLUSIVE),
    AT.AT_DropOids: ("SET WITHOUT OIDS", ACCESS_EXCLUSIVE),
    AT.AT_ReplaceRelOptions: ("SET (...)", ACCESS_EXCLUSIVE),
    AT.AT_EnableTrig: ("ENABLE TRIGGER", SHARE_ROW_EXCLUSIVE),
    AT.AT_EnableAlwaysTrig: ("ENABLE ALWAYS TRIGGER", SHARE_ROW_EXCLUSIVE),
    AT.AT_EnableReplicaTrig: ("ENABLE REPLICA TRIGGER", SHARE_ROW_EXCLUSIVE),
    AT.AT_EnableTrigAll: ("ENABLE TRIGGER ALL", SHARE_ROW_EXCLUSIVE),
    AT.AT_EnableTrigUser: ("ENABLE TRIGGER USER", SHARE_ROW_EXCLUSIVE),
    AT.AT_DisableTrig: ("DISABLE TRIGGER", SHARE_ROW_EXCLUSIVE),
    AT.AT_DisableTrigAll: ("DISABLE TRIGGER ALL", SHARE_ROW_EXCLUSIVE),
    AT.AT_DisableTrigUser: ("DISABLE TRIGGER USER", SHARE_ROW_EXCLUSIVE),
    AT.AT_EnableRule: ("ENABLE RULE", ACCESS_EXCLUSIVE),
    AT.AT_EnableAlwaysRule: ("ENABLE ALWAYS RULE", ACCESS_EXCLUSIVE),
    AT.AT_EnableReplicaRule: ("ENABLE REPLICA RULE", ACCESS_EXCLUSIVE),
    AT.AT_DisableRule: ("DISABLE RULE", ACCESS_EXCLUSIVE),
    AT.AT_AddOf: ("OF type", ACCESS_EXCLUSIVE),
    AT.AT_DropOf: ("NOT OF", ACCESS_EXCLUSIVE),
    AT.AT_ReplicaIdentity: ("REPLICA IDENTITY", ACCESS_EXCLUSIVE),
    AT.AT_EnableRowSecurity: ("ENABLE ROW LEVEL SECURITY", ACCESS_EXCLUSIVE),
    AT.AT_DisableRowSecurity: ("DISABLE ROW LEVEL SECURITY", ACCESS_EXCLUSIVE),
    AT.AT_ForceRowSecurity: ("FORCE ROW LEVEL SECURITY", ACCESS_EXCLUSIVE),
    AT.AT_NoForceRowSecurity: ("NO FORCE ROW LEVEL SECURITY", ACCESS_EXCLUSIVE),
    AT.AT_AddIdentity: ("ADD GENERATED AS IDENTITY", ACCESS_EXCLUSIVE),
    AT.AT_SetIdentity: ("SET identity option", ACCESS_EXCLUSIVE),
    AT.AT_DropIdentity: ("DROP IDENTITY", ACCESS_EXCLUSIVE),
    AT.AT_DetachPartitionFinalize: ("DETACH PARTITION FINALIZE", SHARE_UPDATE_EXCLUSIVE),
}

# Subcommands that write a new copy of the table (and rebuild its indexes).
_REWRITING_SUBCOMMANDS: dict[AT, str] = {
    AT.AT_SetLogged: "SET LOGGED",
    AT.AT_SetUnLogged: "SET UNLOGGED",
    AT.AT_SetAccessMethod: "SET ACCESS METHOD",
    AT.AT_SetTableSpace: "SET TABLESPACE",
    AT.AT_SetExpression: "SET EXPRESSION",
}


def _alter_subcommand(cmd: ast.AlterTableCmd, table: str, is_index: bool, found: _Findings, ctx: _Context) -> str:
    subtype = required(cmd.subtype)  # the parser sets every enum field of a command
    column = _q(cmd.name) if cmd.name else "the column"

    if subtype in _SIMPLE_SUBCOMMANDS:
        label, mode = _SIMPLE_SUBCOMMANDS[subtype]
        found.lock(table, mode)
        return label
    if subtype in _REWRITING_SUBCOMMANDS:
        found.lock(table, ACCESS_EXCLUSIVE)
        if not is_index or subtype != AT.AT_SetTableSpace:
            found.rewrites = True
        found.note(f"writes a new copy of {_q(table)} while holding ACCESS EXCLUSIVE (reads and writes wait)")
        return _REWRITING_SUBCOMMANDS[subtype]
    if subtype in (AT.AT_AddColumn, AT.AT_AddColumnToView):
        return _add_column(cmd, table, found, ctx)
    if subtype == AT.AT_ColumnDefault:
        found.lock(table, ACCESS_EXCLUSIVE)
        if cmd.def_ is None:
            return "DROP DEFAULT"
        found.note("SET DEFAULT applies to new rows only: existing rows are not touched")
        return "SET DEFAULT"
    if subtype == AT.AT_SetNotNull:
        found.lock(table, ACCESS_EXCLUSIVE)
        found.scans = True
        found.note(
            f"scans {_q(table)} to verify no NULLs in {column} while holding ACCESS EXCLUSIVE "
            f"(skipped when a valid CHECK ({column} IS NOT NULL) constraint exists, PostgreSQL 12+)"
        )
        return "SET NOT NULL"
    if subtype == AT.AT_AlterColumnType:
        found.lock(table, ACCESS_EXCLUSIVE)
        found.scans = found.rewrites = True
        found.note(
            f"rewrites {_q(table)} and rebuilds its indexes on {column} while holding ACCESS EXCLUSIVE, "
            "unless binary coercible (e.g. varchar(n) to varchar(m > n) or text)"
        )
        return "ALTER COLUMN TYPE"
    if subtype == AT.AT_DropColumn:
        found.lock(table, ACCESS_EXCLUSIVE)
        found.drops.append(("column", table, cmd.name or ""))
        found.note(f"DROP COLUMN only marks {column} dropped: no rewrite; its space is reclaimed as rows are updated")
        return "DROP COLUMN"
    if subtype in (AT.AT_AddConstraint, AT.AT_ReAddConstraint) and isinstance(cmd.def_, ast.Constraint):
        return _add_constraint(cmd.def_, table, found, ctx)
    if subtype in (AT.AT_AddIndex, AT.AT_AddIndexConstraint):
        found.lock(table, ACCESS_EXCLUSIVE)
        found.scans = True
        return "ADD INDEX"
    if subtype == AT.AT_ValidateConstraint:
        found.lock(table, SHARE_UPDATE_EXCLUSIVE)
        found.scans = True
        found.note(
            f"scans {_q(table)} to check constraint {_q(required(cmd.name))} while holding SHARE UPDATE EXCLUSIVE "
            "(reads and writes continue); a foreign key also takes ROW SHARE on the referenced table"
        )
        return "VALIDATE CONSTRAINT"
    if subtype == AT.AT_DropConstraint:
        found.lock(table, ACCESS_EXCLUSIVE)
        found.drops.append(("constraint", table, cmd.name or ""))
        found.note("if the constraint is a foreign key, the referenced table is locked ACCESS EXCLUSIVE too")
        return "DROP CONSTRAINT"
    if subtype in (AT.AT_SetRelOptions, AT.AT_ResetRelOptions):
        found.lock(table, _reloptions_mode(cmd.def_))
        return "SET (...)" if subtype == AT.AT_SetRelOptions else "RESET (...)"
    if subtype in (AT.AT_AddInherit, AT.AT_DropInherit):
        found.lock(table, ACCESS_EXCLUSIVE)
        if isinstance(cmd.def_, ast.RangeVar):
            parent_mode = SHARE_UPDATE_EXCLUSIVE if subtype == AT.AT_AddInherit else ACCESS_SHARE
            found.lock(_relation_name(cmd.def_), parent_mode)
        return "INHERIT" if subtype == AT.AT_AddInherit else "NO INHERIT"
    if subtype == AT.AT_AttachPartition:
        attach = cmd.def_
        assert isinstance(attach, ast.PartitionCmd)  # ATTACH PARTITION's definition names the partition
        partition = _relation_name(required(attach.name))
        if is_index:
            found.lock(table, SHARE_UPDATE_EXCLUSIVE)
            found.lock(partition, ACCESS_EXCLUSIVE)
            return "ATTACH PARTITION"
        # SHARE UPDATE EXCLUSIVE on the parent from PostgreSQL 12; ACCESS EXCLUSIVE before.
        found.lock(table, ACCESS_EXCLUSIVE if ctx.before(12) else SHARE_UPDATE_EXCLUSIVE)
        found.lock(partition, ACCESS_EXCLUSIVE)
        found.scans = True
        found.note(
            f"scans {_q(partition)} to check the partition bound while holding ACCESS EXCLUSIVE on it, "
            "unless a CHECK constraint already implies the bound; a DEFAULT partition is scanned too"
        )
        return "ATTACH PARTITION"
    if subtype == AT.AT_DetachPartition:
        detach = cmd.def_
        assert isinstance(detach, ast.PartitionCmd)  # DETACH PARTITION's definition names the partition
        partition = _relation_name(required(detach.name))
        if detach.concurrent:
            found.lock(table, SHARE_UPDATE_EXCLUSIVE)
            found.lock(partition, SHARE_UPDATE_EXCLUSIVE)
            found.transactional = False
            found.note("DETACH PARTITION CONCURRENTLY cannot run inside a transaction block")
            return "DETACH PARTITION CONCURRENTLY"
        found.lock(table, ACCESS_EXCLUSIVE)
        found.lock(partition, ACCESS_EXCLUSIVE)
        return "DETACH PARTITION"

    # Anything else takes ACCESS EXCLUSIVE, the default in AlterTableGetLockLevel.
    found.lock(table, ACCESS_EXCLUSIVE)
    return subtype.name.removeprefix("AT_")


def _alter_table(stmt: ast.AlterTableStmt, found: _Findings, ctx: _Context) -> None:
    table = _relation_name(required(stmt.relation))
    is_index = stmt.objtype == OT.OBJECT_INDEX
    labels: list[str] = []
    for cmd in stmt.cmds or ():
        label = _alter_subcommand(cmd, table, is_index, found, ctx)
        if label not in labels:
            labels.append(label)
    found.kind = f"ALTER {_object_word(stmt.objtype)} … " + ", ".join(labels)


# --- other DDL -------------------------------------------------------------------------------


def _create_table(stmt: ast.CreateStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "CREATE TABLE"
    for parent in stmt.inhRelations or ():
        if stmt.partbound is not None:
            found.kind = "CREATE TABLE … PARTITION OF"
            found.lock(_relation_name(parent), ACCESS_EXCLUSIVE)
            found.note(f"creating a partition locks the parent {_q(_relation_name(parent))} ACCESS EXCLUSIVE")
            if stmt.partbound.is_default:
                found.scans = True
        else:
            found.lock(_relation_name(parent), SHARE_UPDATE_EXCLUSIVE)
    for node in _walk(stmt.tableElts):
        if isinstance(node, ast.TableLikeClause):
            found.lock(_relation_name(required(node.relation)), ACCESS_SHARE)
        elif isinstance(node, ast.Constraint) and node.contype == CT.CONSTR_FOREIGN:
            referenced = _relation_name(required(node.pktable))
            found.lock(referenced, SHARE_ROW_EXCLUSIVE)
            found.note(
                f"the foreign key locks the referenced table {_q(referenced)} SHARE ROW EXCLUSIVE (writes to it wait)"
            )


def _create_table_as(stmt: ast.CreateTableAsStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "CREATE MATERIALIZED VIEW" if stmt.objtype == OT.OBJECT_MATVIEW else "CREATE TABLE AS"
    for table in _referenced_tables(stmt.query):
        found.lock(table, ACCESS_SHARE)
    if not (stmt.into and stmt.into.skipData):
        found.note("reads the query's tables in full under ACCESS SHARE (only ACCESS EXCLUSIVE waits)")


def _create_view(stmt: ast.ViewStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "CREATE OR REPLACE VIEW" if stmt.replace else "CREATE VIEW"
    if stmt.replace:
        found.lock(_relation_name(required(stmt.view)), ACCESS_EXCLUSIVE)
    for table in _referenced_tables(stmt.query):
        found.lock(table, ACCESS_SHARE)


def _create_index(stmt: ast.IndexStmt, found: _Findings, ctx: _Context) -> None:
    table = _relation_name(required(stmt.relation))
    unique = "UNIQUE " if stmt.unique else ""
    found.scans = True
    if stmt.concurrent:
        found.kind = f"CREATE {unique}INDEX CONCURRENTLY"
        found.lock(table, SHARE_UPDATE_EXCLUSIVE)
        found.transactional = False
        found.note(
            f"scans {_q(table)} twice under SHARE UPDATE EXCLUSIVE (reads and writes continue) and waits for "
            "running transactions; cannot run inside a transaction block; a failure leaves an INVALID index"
        )
    else:
        found.kind = f"CREATE {unique}INDEX"
        found.lock(table, SHARE)
        found.note(f"builds the index by scanning {_q(table)} while holding SHARE (writes wait, reads continue)")


def _drop(stmt: ast.DropStmt, found: _Findings, ctx: _Context) -> None:
    word = _object_word(stmt.removeType)
    names = [_object_name(obj) for obj in stmt.objects or ()]
    found.kind = f"DROP {word}"
    if stmt.removeType == OT.OBJECT_INDEX:
        mode = SHARE_UPDATE_EXCLUSIVE if stmt.concurrent else ACCESS_EXCLUSIVE
        for name in names:
            found.lock(name, mode)
        if stmt.concurrent:
            found.kind = "DROP INDEX CONCURRENTLY"
            found.transactional = False
            found.note("DROP INDEX CONCURRENTLY cannot run inside a transaction block")
        else:
            found.note(
                "locks the index's table ACCESS EXCLUSIVE (reads and writes wait); the statement names only "
                "the index, so the lock is listed under the index name"
            )
    elif stmt.removeType in _RELATION_OBJECTS:
        for name in names:
            found.lock(name, ACCESS_EXCLUSIVE)
        if stmt.removeType == OT.OBJECT_TABLE:
            found.drops.extend(("table", name, "") for name in names)
            found.note("tables linked to it by foreign keys are locked ACCESS EXCLUSIVE too (not named here)")
    elif stmt.removeType in _TABLE_MEMBER_OBJECTS:
        for obj in stmt.objects or ():
            parts = _names(obj) if isinstance(obj, (tuple, list)) else []
            if len(parts) > 1:
                found.lock(".".join(parts[:-1]), ACCESS_EXCLUSIVE)
    if stmt.behavior == enums.DropBehavior.DROP_CASCADE:
        found.note("CASCADE also drops dependent objects, locking the tables they belong to")


def _reindex(stmt: ast.ReindexStmt, found: _Findings, ctx: _Context) -> None:
    kinds = enums.ReindexObjectType
    kind = required(stmt.kind)  # the parser sets every enum field of a statement
    target = kind.name.removeprefix("REINDEX_OBJECT_")
    concurrently = _option(stmt.params, "concurrently")
    found.kind = f"REINDEX {target}" + (" CONCURRENTLY" if concurrently else "")
    found.scans = True
    if kind in (kinds.REINDEX_OBJECT_SCHEMA, kinds.REINDEX_OBJECT_DATABASE, kinds.REINDEX_OBJECT_SYSTEM):
        found.transactional = False
        found.note(f"REINDEX {target} cannot run inside a transaction block; it locks each table in turn")
    else:
        name = _relation_name(required(stmt.relation))  # REINDEX TABLE and REINDEX INDEX name their relation
        if concurrently:
            found.lock(name, SHARE_UPDATE_EXCLUSIVE)
            found.note("REINDEX CONCURRENTLY cannot run inside a transaction block")
        elif kind == kinds.REINDEX_OBJECT_TABLE:
            found.lock(name, SHARE)
            found.note(
                f"holds SHARE on {_q(name)} (writes wait) and ACCESS EXCLUSIVE on each index while rebuilding it"
            )
        else:
            found.lock(name, ACCESS_EXCLUSIVE)
            found.note(
                "holds ACCESS EXCLUSIVE on the index, which blocks queries on its table that consider the index, "
                "and SHARE on the table (writes wait); the statement names only the index"
            )
    if concurrently:
        found.transactional = False


def _vacuum(stmt: ast.VacuumStmt, found: _Findings, ctx: _Context) -> None:
    tables = [_relation_name(rel.relation) for rel in stmt.rels or () if rel.relation is not None]
    if not stmt.is_vacuumcmd:
        found.kind = "ANALYZE"
        for table in tables:
            found.lock(table, SHARE_UPDATE_EXCLUSIVE)
        found.note("ANALYZE reads a sample of each table under SHARE UPDATE EXCLUSIVE (reads and writes continue)")
        return
    full = _option(stmt.options, "full")
    found.kind = "VACUUM FULL" if full else "VACUUM"
    found.transactional = False
    found.note("VACUUM cannot run inside a transaction block")
    for table in tables:
        found.lock(table, ACCESS_EXCLUSIVE if full else SHARE_UPDATE_EXCLUSIVE)
    if not tables:
        found.note("without a table name it processes every table in the database")
    if full:
        found.scans = found.rewrites = True
        found.note("VACUUM FULL writes a new copy of each table while holding ACCESS EXCLUSIVE")
    else:
        found.scans = True


def _cluster(stmt: ast.ClusterStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "CLUSTER"
    found.scans = found.rewrites = True
    if stmt.relation is None:
        found.transactional = False
        found.note(
            "CLUSTER without a table name reclusters every clustered table and cannot run in a transaction block"
        )
        return
    table = _relation_name(stmt.relation)
    found.lock(table, ACCESS_EXCLUSIVE)
    found.note(f"writes a new copy of {_q(table)} in index order while holding ACCESS EXCLUSIVE")


def _rename(stmt: ast.RenameStmt, found: _Findings, ctx: _Context) -> None:
    kind = stmt.renameType
    if kind in _RELATION_OBJECTS or kind in _TABLE_MEMBER_OBJECTS:
        relation = _relation_name(stmt.relation) if stmt.relation is not None else None
        if kind == OT.OBJECT_INDEX:
            mode = ACCESS_EXCLUSIVE if ctx.before(12) else SHARE_UPDATE_EXCLUSIVE
            found.kind = "ALTER INDEX … RENAME"
        elif kind in (OT.OBJECT_COLUMN, OT.OBJECT_TABCONSTRAINT):
            mode = ACCESS_EXCLUSIVE
            # The parser leaves relationType unset (0) for RENAME CONSTRAINT.
            owner = stmt.relationType if stmt.relationType in _RELATION_OBJECTS else OT.OBJECT_TABLE
            found.kind = f"ALTER {_object_word(owner)} … RENAME {_object_word(kind)}"
        else:
            mode = ACCESS_EXCLUSIVE
            found.kind = f"ALTER {_object_word(kind)} … RENAME"
        if relation is not None:
            found.lock(relation, mode)
        if kind in _RELATION_OBJECTS - {OT.OBJECT_INDEX} or kind == OT.OBJECT_COLUMN:
            found.note("queries and code still using the old name fail once this commits")
    else:
        found.kind = f"ALTER {_object_word(kind)} … RENAME"


def _alter_object_schema(stmt: ast.AlterObjectSchemaStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = f"ALTER {_object_word(stmt.objectType)} … SET SCHEMA"
    if stmt.relation is not None:
        found.lock(_relation_name(stmt.relation), ACCESS_EXCLUSIVE)


def _alter_enum(stmt: ast.AlterEnumStmt, found: _Findings, ctx: _Context) -> None:
    if stmt.oldVal is not None:
        found.kind = "ALTER TYPE … RENAME VALUE"
        return
    found.kind = "ALTER TYPE … ADD VALUE"
    if ctx.before(12):
        found.transactional = False
        found.note("before PostgreSQL 12, ALTER TYPE ... ADD VALUE cannot run inside a transaction block")
    else:
        found.note("the new value cannot be used until the transaction that adds it commits")


def _create_type(
    stmt: ast.CreateEnumStmt | ast.CompositeTypeStmt | ast.CreateRangeStmt, found: _Findings, ctx: _Context
) -> None:
    found.kind = "CREATE TYPE"


def _define(stmt: ast.DefineStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = f"CREATE {_object_word(stmt.kind)}"


def _create_domain(stmt: ast.CreateDomainStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "CREATE DOMAIN"


def _alter_domain(stmt: ast.AlterDomainStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "ALTER DOMAIN"
    validating = stmt.subtype in ("O", "V") or (
        stmt.subtype == "C" and isinstance(stmt.def_, ast.Constraint) and not stmt.def_.skip_validation
    )
    if validating:
        found.scans = True
        found.note("checks every column of this domain: scans and locks those tables (not named here)")


def _create_function(stmt: ast.CreateFunctionStmt, found: _Findings, ctx: _Context) -> None:
    what = "PROCEDURE" if stmt.is_procedure else "FUNCTION"
    found.kind = f"CREATE OR REPLACE {what}" if stmt.replace else f"CREATE {what}"


def _do(stmt: ast.DoStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "unknown (DoStmt)"
    found.known = False
    found.note("DO block: the tables its body touches and the locks it takes cannot be known without running it")


def _create_trigger(stmt: ast.CreateTrigStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "CREATE OR REPLACE TRIGGER" if stmt.replace else "CREATE TRIGGER"
    found.lock(_relation_name(required(stmt.relation)), SHARE_ROW_EXCLUSIVE)


def _comment(stmt: ast.CommentStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = f"COMMENT ON {_object_word(stmt.objtype)}"
    parts: list[str] = _names(stmt.object) if isinstance(stmt.object, (tuple, list)) else []
    if stmt.objtype in _RELATION_OBJECTS and parts:
        found.lock(".".join(parts), SHARE_UPDATE_EXCLUSIVE)
    elif stmt.objtype in _TABLE_MEMBER_OBJECTS and len(parts) > 1:
        found.lock(".".join(parts[:-1]), SHARE_UPDATE_EXCLUSIVE)


def _create_extension(stmt: ast.CreateExtensionStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "CREATE EXTENSION"
    found.note(f"runs the install script of extension {_q(required(stmt.extname))}; its locks are not analysed")


def _alter_extension(stmt: ast.AlterExtensionStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "ALTER EXTENSION"
    found.note(f"runs the update script of extension {_q(required(stmt.extname))}; its locks are not analysed")


def _create_schema(stmt: ast.CreateSchemaStmt, found: _Findings, ctx: _Context) -> None:
    for element in stmt.schemaElts or ():
        _dispatch(element, found, ctx)
    found.kind = "CREATE SCHEMA"


_TRANSACTION_ENDING = {
    enums.TransactionStmtKind.TRANS_STMT_COMMIT,
    enums.TransactionStmtKind.TRANS_STMT_ROLLBACK,
    enums.TransactionStmtKind.TRANS_STMT_PREPARE,
    enums.TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED,
    enums.TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED,
}
_TRANSACTION_STARTING = {enums.TransactionStmtKind.TRANS_STMT_BEGIN, enums.TransactionStmtKind.TRANS_STMT_START}


def _transaction(stmt: ast.TransactionStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "transaction control"
    # What runbook does with them is in plan.py: BEGIN and COMMIT become step boundaries, never sent.
    if stmt.kind in _TRANSACTION_STARTING:
        found.transactional = False
        found.note(
            "BEGIN in the file: runbook does not send it; the statements up to the next COMMIT run as one "
            "transaction of their own"
        )
    elif stmt.kind == enums.TransactionStmtKind.TRANS_STMT_COMMIT:
        found.transactional = False
        found.note(
            "COMMIT in the file: runbook does not send it but commits the statements before it as one step; "
            "if a later statement fails, those stay committed (a rerun resumes after them)"
        )
    elif stmt.kind in _TRANSACTION_ENDING:
        found.transactional = False
        found.note("ROLLBACK or two-phase commit in the file would discard the migration's own work: apply refuses it")
    else:
        found.note("savepoint in the file: works inside runbook's transaction")


def _set(stmt: ast.VariableSetStmt, found: _Findings, ctx: _Context) -> None:
    resets = (enums.VariableSetKind.VAR_RESET, enums.VariableSetKind.VAR_RESET_ALL)
    found.kind = "RESET" if stmt.kind in resets else ("SET LOCAL" if stmt.is_local else "SET")
    if stmt.name in ("lock_timeout", "statement_timeout"):
        found.note(f"overrides the {stmt.name} runbook sets for the migration")


def _create_sequence(stmt: ast.CreateSeqStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "CREATE SEQUENCE"


def _alter_sequence(stmt: ast.AlterSeqStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "ALTER SEQUENCE"
    found.lock(_relation_name(required(stmt.sequence)), SHARE_ROW_EXCLUSIVE)


def _grant(stmt: ast.GrantStmt, found: _Findings, ctx: _Context) -> None:
    # GRANT/REVOKE update the catalog row only; they take no lock on the table itself.
    found.kind = "GRANT" if stmt.is_grant else "REVOKE"


def _create_policy(stmt: ast.CreatePolicyStmt | ast.AlterPolicyStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "CREATE POLICY" if isinstance(stmt, ast.CreatePolicyStmt) else "ALTER POLICY"
    found.lock(_relation_name(required(stmt.table)), ACCESS_EXCLUSIVE)


def _create_rule(stmt: ast.RuleStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "CREATE OR REPLACE RULE" if stmt.replace else "CREATE RULE"
    found.lock(_relation_name(required(stmt.relation)), ACCESS_EXCLUSIVE)


def _create_statistics(stmt: ast.CreateStatsStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "CREATE STATISTICS"
    for relation in stmt.relations or ():
        if isinstance(relation, ast.RangeVar):
            found.lock(_relation_name(relation), SHARE_UPDATE_EXCLUSIVE)


def _refresh_matview(stmt: ast.RefreshMatViewStmt, found: _Findings, ctx: _Context) -> None:
    view = _relation_name(required(stmt.relation))
    found.scans = found.rewrites = True
    if stmt.concurrent:
        found.kind = "REFRESH MATERIALIZED VIEW CONCURRENTLY"
        found.lock(view, EXCLUSIVE)
        found.note(f"holds EXCLUSIVE on {_q(view)}: reads continue, writes wait")
    else:
        found.kind = "REFRESH MATERIALIZED VIEW"
        found.lock(view, ACCESS_EXCLUSIVE)
        found.note(f"holds ACCESS EXCLUSIVE on {_q(view)} while it is recomputed (reads wait)")


def _not_transactional(kind: str) -> Callable[[ast.Node, _Findings, _Context], None]:
    def handler(stmt: ast.Node, found: _Findings, ctx: _Context) -> None:
        found.kind = kind
        found.transactional = False
        found.note(f"{kind} cannot run inside a transaction block")

    return handler


# --- data: INSERT / UPDATE / DELETE / MERGE / SELECT / TRUNCATE / LOCK / COPY --------------------


def _reads(stmt: object, found: _Findings, except_table: str | None = None, mode: str = ACCESS_SHARE) -> None:
    for table in _referenced_tables(stmt):
        if table != except_table:
            found.lock(table, mode)


_DataStatement = ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt


def _modify(kind: str) -> Callable[[_DataStatement, _Findings, _Context], None]:
    def handler(stmt: _DataStatement, found: _Findings, ctx: _Context) -> None:
        found.kind = kind
        table = _relation_name(required(stmt.relation))  # each names the table it changes
        found.lock(table, ROW_EXCLUSIVE)
        _reads(stmt, found, except_table=table)
        if kind == "INSERT":
            return
        found.scans = True
        if isinstance(stmt, (ast.UpdateStmt, ast.DeleteStmt)) and stmt.whereClause is None:
            found.note(f"{kind} without WHERE touches every row of {_q(table)}")
        else:
            found.note(f"may scan {_q(table)} to find the rows, unless an index serves the condition")
        found.note("changed rows stay locked until the transaction commits: concurrent updates of them wait")

    return handler


def _select(stmt: ast.SelectStmt, found: _Findings, ctx: _Context) -> None:
    locking = [n for n in _walk(stmt) if isinstance(n, ast.LockingClause)]
    found.kind = "SELECT … FOR UPDATE/SHARE" if locking else "SELECT"
    _reads(stmt, found, mode=ROW_SHARE if locking else ACCESS_SHARE)
    if stmt.intoClause is not None:
        found.kind = "SELECT INTO"
        into = _relation_name(required(stmt.intoClause.rel))
        found.locks.pop(into, None)


def _truncate(stmt: ast.TruncateStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "TRUNCATE"
    for relation in stmt.relations or ():
        found.lock(_relation_name(relation), ACCESS_EXCLUSIVE)
    if stmt.behavior == enums.DropBehavior.DROP_CASCADE:
        found.note("CASCADE also truncates, and locks, every table referencing these by foreign key")


def _lock_table(stmt: ast.LockStmt, found: _Findings, ctx: _Context) -> None:
    mode = locks.from_number(required(stmt.mode))
    found.kind = f"LOCK TABLE … IN {mode} MODE"
    for relation in stmt.relations or ():
        found.lock(_relation_name(relation), mode)
    if stmt.nowait:
        found.note("NOWAIT: fails at once instead of waiting if the lock is not free")


def _copy(stmt: ast.CopyStmt, found: _Findings, ctx: _Context) -> None:
    found.kind = "COPY FROM" if stmt.is_from else "COPY TO"
    if stmt.relation is not None:
        found.lock(_relation_name(stmt.relation), ROW_EXCLUSIVE if stmt.is_from else ACCESS_SHARE)
    if stmt.query is not None:
        _reads(stmt.query, found)
    if stmt.filename is None and not stmt.is_program:
        found.note("COPY ... STDIN/STDOUT needs a client that streams the data; a migration file cannot supply it")


# Each handler takes the node class it is listed under, which a dict's type cannot say entry by entry.
_HANDLERS: dict[type[ast.Node], Callable[[Any, _Findings, _Context], None]] = {
    ast.AlterTableStmt: _alter_table,
    ast.CreateStmt: _create_table,
    ast.CreateTableAsStmt: _create_table_as,
    ast.ViewStmt: _create_view,
    ast.IndexStmt: _create_index,
    ast.DropStmt: _drop,
    ast.ReindexStmt: _reindex,
    ast.VacuumStmt: _vacuum,
    ast.ClusterStmt: _cluster,
    ast.RenameStmt: _rename,
    ast.AlterObjectSchemaStmt: _alter_object_schema,
    ast.AlterEnumStmt: _alter_enum,
    ast.CreateEnumStmt: _create_type,
    ast.CompositeTypeStmt: _create_type,
    ast.CreateRangeStmt: _create_type,
    ast.DefineStmt: _define,
    ast.CreateDomainStmt: _create_domain,
    ast.AlterDomainStmt: _alter_domain,
    ast.CreateFunctionStmt: _create_function,
    ast.DoStmt: _do,
    ast.CreateTrigStmt: _create_trigger,
    ast.CommentStmt: _comment,
    ast.CreateExtensionStmt: _create_extension,
    ast.AlterExtensionStmt: _alter_extension,
    ast.CreateSchemaStmt: _create_schema,
    ast.TransactionStmt: _transaction,
    ast.VariableSetStmt: _set,
    ast.CreateSeqStmt: _create_sequence,
    ast.AlterSeqStmt: _alter_sequence,
    ast.GrantStmt: _grant,
    ast.CreatePolicyStmt: _create_policy,
    ast.AlterPolicyStmt: _create_policy,
    ast.RuleStmt: _create_rule,
    ast.CreateStatsStmt: _create_statistics,
    ast.RefreshMatViewStmt: _refresh_matview,
    ast.CreatedbStmt: _not_transactional("CREATE DATABASE"),
    ast.DropdbStmt: _not_transactional("DROP DATABASE"),
    ast.AlterSystemStmt: _not_transactional("ALTER SYSTEM"),
    ast.CreateTableSpaceStmt: _not_transactional("CREATE TABLESPACE"),
    ast.DropTableSpaceStmt: _not_transactional("DROP TABLESPACE"),
    ast.InsertStmt: _modify("INSERT"),
    ast.UpdateStmt: _modify("UPDATE"),
    ast.DeleteStmt: _modify("DELETE"),
    ast.MergeStmt: _modify("MERGE"),
    ast.SelectStmt: _select,
    ast.TruncateStmt: _truncate,
    ast.LockStmt: _lock_table,
    ast.CopyStmt: _copy,
}


def _unknown(stmt: ast.Node, found: _Findings, ctx: _Context) -> None:
    found.kind = f"unknown ({type(stmt).__name__})"
    found.known = False
    tables = _referenced_tables(stmt)
    for table in tables:
        found.lock(table, ACCESS_EXCLUSIVE)
    found.note(
        "statement kind not analysed: assuming ACCESS EXCLUSIVE on every table it names"
        if tables
        else "statement kind not analysed: the tables it locks are unknown"
    )


def _dispatch(stmt: ast.Node, found: _Findings, ctx: _Context) -> None:
    _HANDLERS.get(type(stmt), _unknown)(stmt, found, ctx)


def analyze(
    sql: str,
    *,
    filename: str | None = None,
    server_major: int | None = None,
) -> list[StatementAnalysis]:
    """Analyse every statement of `sql`: its locks, whether it scans or rewrites, and whether it is transactional.

    `server_major` (e.g. 16) selects version-dependent behaviour; when None the server is taken to
    be a supported release (12 or later). Raises AnalysisError when the SQL does not parse.
    """
    ctx = _Context(server_major)
    analyses = []
    for index, line, text, raw in _parse(sql, filename):
        found = _Findings()
        _dispatch(required(raw.stmt), found, ctx)  # a RawStmt always holds its statement
        # Writing a new copy of a table means reading all of it.
        found.scans = found.scans or found.rewrites
        analyses.append(
            StatementAnalysis(
                index=index,
                line=line,
                sql=text,
                kind=found.kind,
                locks=tuple(TableLock(table, mode) for table, mode in found.locks.items()),
                scans=found.scans,
                rewrites=found.rewrites,
                transactional=found.transactional,
                known=found.known,
                notes=tuple(found.notes),
                drops=tuple(found.drops),
            )
        )
    return analyses
