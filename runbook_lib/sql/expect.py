"""What a migration's own statements say the catalog must look like afterwards, read with pglast.

validate derives tests from this (runbook_lib.batch.derived): nobody has to write a check for what the
migration already states. The statements are read in order and each object keeps only its final
expected state, so later statements win: a column added then dropped in the same file is expected
absent, a rename moves the expectations to the new name, DROP TABLE removes everything about the table.

Only what the parser states without doubt becomes an expectation. Statements this module does not
model (DO blocks, data UPDATE/INSERT, functions, triggers, views, grants...) are listed in `skipped`
and never guessed at; transaction control (BEGIN/COMMIT) and SET are ignored silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import TypeVar

import pglast
from pglast import ast
from pglast.enums import AlterTableType as AT
from pglast.enums import ConstrType as CT
from pglast.enums import DropBehavior
from pglast.enums import ObjectType as OT
from pglast.stream import RawStream

from runbook_lib.sql import parse as sql_parse
from runbook_lib.sql.parse import required

# serial types are not types: the column is the integer type with a sequence default, NOT NULL.
_SERIALS = {
    "smallserial": "smallint",
    "serial2": "smallint",
    "serial": "integer",
    "serial4": "integer",
    "bigserial": "bigint",
    "serial8": "bigint",
}
_QUIET = (ast.TransactionStmt, ast.VariableSetStmt)

Table = tuple[str | None, str]  # (schema, name); schema None means the default schema


@dataclass
class Column:
    name: str
    line: int
    type: str | None = None  # the parser's re-print of the written type ("varchar(80)", "integer[]")
    not_null: bool | None = None  # None: the migration says nothing about it
    has_default: bool | None = None
    default_sql: str | None = None  # the written expression, when it is simple enough to compare
    dropped: bool = False
    type_key: Table | None = None  # the written type's name, (schema, name): a DROP TYPE ... CASCADE takes the column


@dataclass
class TableState:
    key: Table
    line: int
    created: bool = False  # created in this migration: its column list is complete
    dropped: bool = False
    columns: dict[str, Column] = field(default_factory=dict)

    def column(self, name: str, line: int) -> Column:
        if name not in self.columns or self.columns[name].dropped:
            self.columns[name] = Column(name, line)
        return self.columns[name]


@dataclass
class Constraint:
    table: Table
    kind: str  # p (primary key), u (unique), f (foreign key), c (check), ? (known by name only)
    line: int
    name: str | None = None  # None when the migration lets PostgreSQL name it
    columns: tuple[str, ...] = ()  # for a CHECK: the columns its expression reads
    references: Table | None = None
    ref_columns: tuple[str, ...] = ()
    on_delete: str = "a"  # pg_constraint.confdeltype: a (no action), r, c, n, d
    on_update: str = "a"
    validated: bool = True
    deferrable: bool = False  # checked at commit, so a statement inside the test is not refused
    dropped: bool = False
    renamed_from: str | None = None  # kind "?": renamed here from this name, created elsewhere (see `resolve`)


@dataclass
class Index:
    key: Table  # (schema, index name)
    line: int
    table: Table | None = None  # None: renamed here, created elsewhere (only its presence is known)
    columns: tuple[str | None, ...] = ()  # None for an expression
    unique: bool = False
    partial: bool = False
    dropped: bool = False
    renamed_from: Table | None = None  # renamed here from this name, created elsewhere (see `resolve`)


@dataclass
class Enum:
    key: Table
    line: int
    labels: list[str] | None = None  # the complete list when created here, else None
    added: list[str] = field(default_factory=list)  # labels added to an enum created elsewhere
    removed: list[str] = field(default_factory=list)  # labels renamed away from an enum created elsewhere
    dropped: bool = False


@dataclass(frozen=True)
class Skipped:
    line: int
    kind: str  # the parser's node name, e.g. UpdateStmt, DoStmt
    reason: str


@dataclass
class Expected:
    """The final expected state of every object the migration touches."""

    filename: str
    tables: dict[Table, TableState] = field(default_factory=dict)
    constraints: list[Constraint] = field(default_factory=list)
    indexes: dict[Table, Index] = field(default_factory=dict)
    enums: dict[Table, Enum] = field(default_factory=dict)
    extensions: dict[str, tuple[int, bool]] = field(default_factory=dict)  # name -> (line, installed)
    skipped: list[Skipped] = field(default_factory=list)
    dropped_tables: set[Table] = field(default_factory=set)  # dropped here: gone from `tables`, still touched
    # touched by a statement left unmodelled (IF NOT EXISTS forms): no expectation here, but a later
    # migration that touches them supersedes an earlier one's expectations all the same
    unmodelled_tables: set[Table] = field(default_factory=set)
    unmodelled_columns: set[tuple[Table, str]] = field(default_factory=set)
    unmodelled_indexes: set[Table] = field(default_factory=set)
    unmodelled_constraints: set[tuple[Table, str]] = field(default_factory=set)
    unmodelled_types: set[Table] = field(default_factory=set)
    dropped_schemas: dict[str, int] = field(default_factory=dict)  # DROP SCHEMA: name -> line
    # renames in statement order: ("table", old key, new key, "") and ("column", table key, old name, new name), so
    # what an earlier migration built can be followed to its names now (`resolve`)
    renames: list[tuple[str, Table, Table | str, str]] = field(default_factory=list)
    # DROP TYPE / DROP EXTENSION ... CASCADE: key or name -> line (the columns of that type go; see `resolve`)
    cascaded_types: dict[Table, int] = field(default_factory=dict)
    cascaded_extensions: dict[str, int] = field(default_factory=dict)

    def table(self, key: Table, line: int) -> TableState:
        state = self.tables.get(key)
        if state is None:
            state = self.tables[key] = TableState(key, line)
        return state

    def live_constraints(self) -> list[Constraint]:
        return [c for c in self.constraints if not c.dropped]

    @property
    def empty(self) -> bool:
        return not (self.tables or self.constraints or self.indexes or self.enums or self.extensions)


def table_key(schema: str | None, name: str, default_schema: str = "public") -> Table:
    """An object's key as this module keeps it: the default schema written or not, the same key."""
    return (None if schema in (None, default_schema) else schema, name)


def shown(key: Table) -> str:
    """A key as a report names it: "Lead", "crm.Lead"."""
    return f"{key[0]}.{key[1]}" if key[0] else key[1]


def _strings(nodes: Iterable[object] | None) -> list[str]:
    return [required(n.sval) for n in nodes or () if isinstance(n, ast.String)]


def _simple_default(expr: ast.Node) -> str | None:
    """The expression's text when it is a constant, a cast of one or a call without arguments (now())."""
    node = expr.arg if isinstance(expr, ast.TypeCast) else expr
    if isinstance(node, (ast.A_Const, ast.SQLValueFunction)):
        return RawStream()(expr)
    if isinstance(node, ast.FuncCall) and not node.args:
        return RawStream()(expr)
    if isinstance(node, ast.A_Expr) and node.lexpr is None and isinstance(node.rexpr, ast.A_Const):
        return RawStream()(expr)  # -1
    return None


def _is_null(expr: ast.Node) -> bool:
    node = expr.arg if isinstance(expr, ast.TypeCast) else expr
    return isinstance(node, ast.A_Const) and bool(node.isnull)


def _default_of(expr: ast.Node) -> tuple[bool, str | None]:
    """(has a default, its text when simple): DEFAULT NULL is no default, and PostgreSQL stores none for it."""
    if _is_null(expr):
        return False, None
    return True, _simple_default(expr)


def _column_names(expr: object) -> tuple[str, ...]:
    """The plain column names an expression reads (for a CHECK), in order of appearance."""
    found: list[str] = []

    def visit(node: object) -> None:
        if isinstance(node, ast.ColumnRef):
            names = _strings(node.fields)
            if names and names[-1] not in found:
                found.append(names[-1])
            return
        if isinstance(node, ast.Node):
            for name in node:
                visit(getattr(node, name))
        elif isinstance(node, tuple):
            for item in node:
                visit(item)

    visit(expr)
    return tuple(found)


class _Reader:
    """Applies one statement after another to an `Expected`."""

    def __init__(self, filename: str, default_schema: str) -> None:
        self.out = Expected(filename)
        self.default_schema = default_schema

    # -- names ---------------------------------------------------------------------------------

    def key(self, schema: str | None, name: str) -> Table:
        return table_key(schema, name, self.default_schema)

    def rel(self, rv: ast.RangeVar) -> Table:
        return self.key(rv.schemaname, required(rv.relname))

    def qualified(self, names: list[str]) -> Table:
        return self.key(names[-2] if len(names) > 1 else None, names[-1])

    # -- statements ----------------------------------------------------------------------------

    def read(self, stmt: ast.Node | None, line: int) -> None:
        handler = getattr(self, "_" + type(stmt).__name__, None)
        if handler is not None:
            handler(stmt, line)
        elif not isinstance(stmt, _QUIET):
            self.out.skipped.append(
                Skipped(line, type(stmt).__name__, "nothing derivable: not a schema change runbook models")
            )

    def _CreateStmt(self, stmt: ast.CreateStmt, line: int) -> None:
        if stmt.partbound is not None or stmt.inhRelations or stmt.ofTypename is not None:
            self.out.skipped.append(
                Skipped(line, "CreateStmt", "partitions, inheritance and typed tables are not modelled")
            )
            return
        relation = required(stmt.relation)  # CREATE TABLE always names its table
        key = self.rel(relation)
        if relation.relpersistence == "t":
            self.out.skipped.append(
                Skipped(line, "CreateStmt", "a temporary table lasts only for the session that made it")
            )
            return
        if stmt.if_not_exists and key not in self.out.tables:
            self.out.unmodelled_tables.add(key)
            self.out.skipped.append(
                Skipped(line, "CreateStmt", "CREATE TABLE IF NOT EXISTS may have found an older table")
            )
            return
        self._drop_table(key)
        table = self.out.tables[key] = TableState(key, line, created=True)
        for element in stmt.tableElts or ():
            if isinstance(element, ast.ColumnDef):
                self._column_def(table, element, line)
            elif isinstance(element, ast.Constraint):
                self._constraint(table, element, line)
        for column in table.columns.values():
            if column.not_null is None:
                column.not_null = False
            if column.has_default is None:
                column.has_default = False

    def _column_def(self, table: TableState, cdef: ast.ColumnDef, line: int) -> None:
        column = table.column(required(cdef.colname), line)
        column.line = line
        # a column read here is written with its type (those of PARTITION OF and OF type are skipped)
        type_name = required(cdef.typeName)
        written = RawStream()(type_name)
        serial = _SERIALS.get(_strings(type_name.names)[-1]) if not type_name.arrayBounds else None
        column.type = serial or written
        column.type_key = self.qualified(_strings(type_name.names))
        if serial:
            column.not_null, column.has_default = True, True
        if cdef.is_not_null:
            column.not_null = True
        if cdef.raw_default is not None:
            column.has_default, column.default_sql = _default_of(cdef.raw_default)
        for con in cdef.constraints or ():
            if con.contype == CT.CONSTR_NOTNULL:
                column.not_null = True
            elif con.contype == CT.CONSTR_NULL:
                column.not_null = False
            elif con.contype == CT.CONSTR_DEFAULT:
                column.has_default, column.default_sql = _default_of(con.raw_expr)
            elif con.contype in (CT.CONSTR_IDENTITY, CT.CONSTR_GENERATED):
                column.has_default, column.default_sql = True, None
                if con.contype == CT.CONSTR_IDENTITY:
                    column.not_null = True
            elif con.contype in (CT.CONSTR_PRIMARY, CT.CONSTR_UNIQUE, CT.CONSTR_FOREIGN, CT.CONSTR_CHECK):
                self._constraint(table, con, line, column=cdef.colname)

    def _constraint(self, table: TableState, con: ast.Constraint, line: int, column: str | None = None) -> None:
        kinds = {CT.CONSTR_PRIMARY: "p", CT.CONSTR_UNIQUE: "u", CT.CONSTR_FOREIGN: "f", CT.CONSTR_CHECK: "c"}
        kind = kinds.get(required(con.contype))  # the parser sets every enum field of a node
        if kind is None:
            return  # EXCLUDE, deferrability attributes: not modelled
        if con.conname:  # a name given again replaces whatever this file said about it before
            self.out.constraints = [
                c for c in self.out.constraints if not (c.table == table.key and c.name == con.conname)
            ]
        if kind in "pu" and con.indexname:  # ... UNIQUE USING INDEX i: the index becomes the constraint
            index = self.out.indexes.pop(self.key(table.key[0], con.indexname), None)
            if index is None or any(c is None for c in index.columns):
                self.out.skipped.append(
                    Skipped(line, "AlterTableStmt", f"constraint from index {con.indexname} written elsewhere")
                )
                return
            columns = tuple(c for c in index.columns if c is not None)
        elif kind == "c":
            columns = _column_names(con.raw_expr)
        else:
            columns = tuple(_strings(con.keys if kind in "pu" else con.fk_attrs)) or ((column,) if column else ())
        found = Constraint(table.key, kind, line, con.conname or None, columns, deferrable=bool(con.deferrable))
        if kind == "p":
            for name in columns:
                if name in table.columns or not table.created:
                    table.column(name, line).not_null = True
        if kind == "f":
            found.references = self.rel(required(con.pktable))  # a foreign key names the table it references
            found.ref_columns = tuple(_strings(con.pk_attrs))
            found.on_delete = con.fk_del_action if con.fk_del_action not in ("\x00", "", None) else "a"
            found.on_update = con.fk_upd_action if con.fk_upd_action not in ("\x00", "", None) else "a"
        if kind in "fc":
            # NOT VALID is honoured by ALTER TABLE only; a constraint of CREATE TABLE is checked at once.
            found.validated = not (con.skip_validation and not table.created)
        self.out.constraints.append(found)

    def _drop_constraint(self, table: Table, name: str) -> None:
        for con in self.out.constraints:
            if con.table == table and con.name == name and not con.dropped:
                con.dropped = True
                if con.kind in "pu":
                    self.out.indexes.pop(self.key(table[0], name), None)
                return
        self.out.constraints.append(Constraint(table, "?", 0, name, dropped=True))

    def _AlterTableStmt(self, stmt: ast.AlterTableStmt, line: int) -> None:
        if stmt.objtype != OT.OBJECT_TABLE:
            objtype = required(stmt.objtype)  # the parser sets every enum field of a statement
            self.out.skipped.append(Skipped(line, "AlterTableStmt", f"ALTER {objtype.name[7:]} is not modelled"))
            return
        key = self.rel(required(stmt.relation))  # ALTER TABLE always names its table
        table = self.out.table(key, line)
        for cmd in stmt.cmds or ():
            sub = cmd.subtype
            if sub == AT.AT_AddColumn:
                if cmd.missing_ok and not (
                    cmd.def_.colname in table.columns and table.columns[cmd.def_.colname].dropped
                ):
                    self.out.unmodelled_columns.add((key, cmd.def_.colname))
                    self.out.skipped.append(
                        Skipped(line, "AlterTableStmt", "ADD COLUMN IF NOT EXISTS may have kept an older column")
                    )
                    continue
                column = table.column(cmd.def_.colname, line)
                column.not_null = column.has_default = None
                self._column_def(table, cmd.def_, line)
                if column.not_null is None:
                    column.not_null = False
                if column.has_default is None:
                    column.has_default = False
            elif sub == AT.AT_DropColumn:
                table.column(cmd.name, line).dropped = True
                table.columns[cmd.name].line = line
                self._column_gone(key, cmd.name)
            elif sub == AT.AT_AlterColumnType:
                column = table.column(cmd.name, line)
                column.type, column.line = RawStream()(cmd.def_.typeName), line
                column.type_key = self.qualified(_strings(cmd.def_.typeName.names))
            elif sub in (AT.AT_SetNotNull, AT.AT_DropNotNull):
                column = table.column(cmd.name, line)
                column.not_null, column.line = sub == AT.AT_SetNotNull, line
            elif sub == AT.AT_ColumnDefault:
                column = table.column(cmd.name, line)
                default = cmd.def_
                assert not isinstance(default, tuple)  # SET DEFAULT's is one expression, DROP DEFAULT's none
                column.has_default, column.default_sql = _default_of(default) if default is not None else (False, None)
                column.line = line
            elif sub == AT.AT_AddConstraint:
                self._constraint(table, cmd.def_, line)
            elif sub == AT.AT_DropConstraint:
                self._drop_constraint(key, cmd.name)
            elif sub == AT.AT_ValidateConstraint:
                for con in self.out.constraints:
                    if con.table == key and con.name == cmd.name and not con.dropped:
                        con.validated = True
            else:
                self.out.skipped.append(Skipped(line, "AlterTableStmt", f"{sub.name[3:]} is not modelled"))

    def _IndexStmt(self, stmt: ast.IndexStmt, line: int) -> None:
        relation = required(stmt.relation)  # CREATE INDEX always names its table
        table = self.rel(relation)
        if not stmt.idxname:
            self.out.skipped.append(Skipped(line, "IndexStmt", "an index without a name: PostgreSQL chooses it"))
            return
        key = self.key(relation.schemaname, stmt.idxname)
        if stmt.if_not_exists and key not in self.out.indexes:
            self.out.unmodelled_indexes.add(key)
            self.out.skipped.append(
                Skipped(line, "IndexStmt", "CREATE INDEX IF NOT EXISTS may have found an older index")
            )
            return
        columns = tuple(p.name if p.name else None for p in stmt.indexParams or ())
        self.out.indexes[key] = Index(key, line, table, columns, bool(stmt.unique), stmt.whereClause is not None)

    def _DropStmt(self, stmt: ast.DropStmt, line: int) -> None:
        kind = required(stmt.removeType)  # the parser sets every enum field of a statement
        for obj in stmt.objects or ():
            if isinstance(obj, ast.String):  # DROP EXTENSION e, DROP SCHEMA s: a bare name
                names = [required(obj.sval)]
            else:
                names = _strings(obj) if isinstance(obj, tuple) else _strings(getattr(obj, "names", None) or ())
            if not names:
                continue
            key = self.qualified(names)
            if kind == OT.OBJECT_TABLE:
                self._drop_table(key)
                self.out.tables[key] = TableState(key, line, dropped=True)
            elif kind == OT.OBJECT_INDEX:
                self.out.indexes[key] = Index(key, line, dropped=True)
            elif kind == OT.OBJECT_TYPE:
                self.out.enums[key] = Enum(key, line, dropped=True)
                if stmt.behavior == DropBehavior.DROP_CASCADE:
                    self.out.cascaded_types[key] = line
                    self._drop_columns_of_type(key, None, line)
            elif kind == OT.OBJECT_EXTENSION:
                self.out.extensions[names[-1]] = (line, False)
                if stmt.behavior == DropBehavior.DROP_CASCADE:
                    self.out.cascaded_extensions[names[-1]] = line
                    self._drop_columns_of_type(None, names[-1], line)
            elif kind == OT.OBJECT_SCHEMA:
                self.out.dropped_schemas[names[-1]] = line
                self.out.skipped.append(Skipped(line, "DropStmt", "DROP SCHEMA: what it held is not modelled"))
            else:
                self.out.skipped.append(Skipped(line, "DropStmt", f"DROP {kind.name[7:]} is not modelled"))

    def _drop_table(self, key: Table) -> None:
        self.out.dropped_tables.add(key)
        self.out.tables.pop(key, None)
        self.out.constraints = [c for c in self.out.constraints if c.table != key]
        self.out.indexes = {k: i for k, i in self.out.indexes.items() if i.table != key}
        for con in self.out.constraints:  # a foreign key to it goes with it (CASCADE; PostgreSQL refuses otherwise)
            if con.references == key:
                con.dropped = True

    def _drop_columns_of_type(self, type_key: Table | None, extension: str | None, line: int) -> None:
        """DROP TYPE/EXTENSION ... CASCADE: the columns of that type go, and what is built on them."""
        for table in self.out.tables.values():
            for column in table.columns.values():
                if column.dropped or column.type_key is None:
                    continue
                if column.type_key == type_key or (extension and column.type_key[1] == extension):
                    column.dropped, column.line = True, line
                    self._column_gone(table.key, column.name)

    def _column_gone(self, key: Table, name: str) -> None:
        _column_gone(self.out, key, name)

    def _RenameStmt(self, stmt: ast.RenameStmt, line: int) -> None:
        kind = required(stmt.renameType)  # the parser sets every enum field of a statement
        newname = required(stmt.newname)  # every RENAME says to what
        if kind == OT.OBJECT_TABLE:
            old = self.rel(required(stmt.relation))  # ALTER TABLE ... RENAME TO names its table
            new = (old[0], newname)
            self.out.renames.append(("table", old, new, ""))
            state = self.out.tables.pop(old, None) or TableState(old, line)
            self.out.tables[old] = TableState(old, line, dropped=True)
            state.key, state.line = new, line
            self.out.tables[new] = state
            for con in self.out.constraints:
                if con.table == old:
                    con.table = new
                if con.references == old:
                    con.references = new
            for index in self.out.indexes.values():
                if index.table == old:
                    index.table = new
        elif kind == OT.OBJECT_COLUMN:
            key = self.rel(required(stmt.relation))  # RENAME COLUMN names its table and its column
            subname = required(stmt.subname)
            self.out.renames.append(("column", key, subname, newname))
            table = self.out.table(key, line)
            column = table.columns.pop(subname, None)
            table.column(subname, line).dropped = True
            column = column or Column(newname, line)
            column.name, column.line = newname, line
            table.columns[newname] = column
            rename = lambda cols: tuple(newname if c == subname else c for c in cols)  # noqa: E731
            for con in self.out.constraints:
                if con.table == key:
                    con.columns = rename(con.columns)
                if con.references == key:
                    con.ref_columns = rename(con.ref_columns)
            for index in self.out.indexes.values():
                if index.table == key:
                    index.columns = rename(index.columns)
        elif kind == OT.OBJECT_TABCONSTRAINT:
            key = self.rel(required(stmt.relation))  # RENAME CONSTRAINT names its table and the constraint
            subname = required(stmt.subname)
            for con in self.out.constraints:
                if con.table == key and con.name == subname and not con.dropped:
                    con.name = newname
                    break
            else:  # renamed here, created elsewhere: only its presence under the new name is known
                self.out.constraints.append(Constraint(key, "?", line, subname, dropped=True))
                self.out.constraints.append(Constraint(key, "?", line, newname, renamed_from=subname))
            if self.key(key[0], subname) in self.out.indexes:  # a key's index is renamed with it
                self._rename_index(self.key(key[0], subname), newname, line)
        elif kind == OT.OBJECT_INDEX:
            self._rename_index(self.rel(required(stmt.relation)), newname, line)  # ALTER INDEX names its index
        elif kind == OT.OBJECT_TYPE:
            old = self.qualified(_strings(stmt.object))
            new = (old[0], newname)
            enum = self.out.enums.pop(old, None)
            self.out.enums[old] = Enum(old, line, dropped=True)
            if enum is not None:
                enum.key = new
                self.out.enums[new] = enum
        else:
            self.out.skipped.append(Skipped(line, "RenameStmt", f"RENAME of {kind.name[7:]} is not modelled"))

    def _rename_index(self, old: Table, newname: str, line: int) -> None:
        state = self.out.indexes.pop(old, None)
        new = (old[0], newname)
        if state is None:  # created elsewhere: only its presence under the new name is known
            state = Index(old, line, renamed_from=old)
        state.key, state.line = new, line
        self.out.indexes[new] = state
        self.out.indexes.setdefault(old, Index(old, line, dropped=True))
        for con in self.out.constraints:
            # A primary key or unique constraint shares its index's name: the rename renames both.
            if con.kind in "pu" and con.name == old[1] and not con.dropped:
                con.name = newname

    def _CreateEnumStmt(self, stmt: ast.CreateEnumStmt, line: int) -> None:
        key = self.qualified(_strings(stmt.typeName))
        self.out.enums[key] = Enum(key, line, labels=_strings(stmt.vals))

    def _AlterEnumStmt(self, stmt: ast.AlterEnumStmt, line: int) -> None:
        key = self.qualified(_strings(stmt.typeName))
        new_value = required(stmt.newVal)  # ADD VALUE and RENAME VALUE both name the new label
        state = self.out.enums.get(key)
        if state is None or state.dropped:
            state = self.out.enums[key] = Enum(key, line)
        state.line = line
        if stmt.oldVal:  # RENAME VALUE
            if state.labels is not None:
                state.labels = [new_value if v == stmt.oldVal else v for v in state.labels]
            else:
                state.added = [v for v in state.added if v != stmt.oldVal] + [new_value]
                state.removed.append(stmt.oldVal)
            return
        if state.labels is None:
            state.added.append(new_value)
            return
        if new_value in state.labels:
            return  # IF NOT EXISTS with a label already there
        if stmt.newValNeighbor and stmt.newValNeighbor in state.labels:
            at = state.labels.index(stmt.newValNeighbor) + (1 if stmt.newValIsAfter else 0)
            state.labels.insert(at, new_value)
        else:
            state.labels.append(new_value)

    def _DoStmt(self, stmt: ast.DoStmt, line: int) -> None:
        """A DO block runs code: what its SQL statements touch (Drizzle wraps ADD CONSTRAINT in one, to ignore
        duplicate_object) is left without an expectation here, and supersedes what earlier statements and
        migrations said about it. Its code may or may not run a statement (IF, EXCEPTION), so nothing is
        expected of them; a block with dynamic SQL (EXECUTE) is not read at all."""
        inner = _do_statements(stmt)
        reason = "a DO block runs code: what its statements change is not expected of it"
        if inner is None:
            self.out.skipped.append(Skipped(line, "DoStmt", reason + " (its SQL could not be read)"))
            return
        scratch = _Reader(self.out.filename, self.default_schema)
        for raw in inner:
            scratch.read(raw, line)
        self.forget(touched(scratch.out), scratch.out)
        self.out.skipped.append(Skipped(line, "DoStmt", reason))

    def forget(self, gone: Touched, seen: Expected) -> None:
        """Drop every expectation on what `gone` names, and mark it touched by something left unmodelled."""
        for key in gone.tables:
            self.out.tables.pop(key, None)
            self.out.unmodelled_tables.add(key)
        for key in seen.tables:  # an ALTER TABLE inside: the columns and keys it names
            for name in seen.tables[key].columns:
                state = self.out.tables.get(key)
                if state is not None:
                    state.columns.pop(name, None)
                self.out.unmodelled_columns.add((key, name))
        for table, name in gone.constraints:
            self.out.constraints = [c for c in self.out.constraints if not (c.table == table and _named(c) == name)]
            self.out.unmodelled_constraints.add((table, name))
        for key in gone.indexes:
            self.out.indexes.pop(key, None)
            self.out.unmodelled_indexes.add(key)
        for key in gone.enums:
            self.out.enums.pop(key, None)
            self.out.unmodelled_types.add(key)
        for name in gone.extensions:
            self.out.extensions.pop(name, None)

    def _CreateExtensionStmt(self, stmt: ast.CreateExtensionStmt, line: int) -> None:
        self.out.extensions[required(stmt.extname)] = (line, True)


def _do_statements(stmt: ast.DoStmt) -> list[ast.Node | None] | None:
    """The SQL statements a DO block's PL/pgSQL runs, parsed; None when it cannot be read or builds SQL at run time."""
    try:
        tree = pglast.parse_plpgsql(RawStream()(stmt))
    except Exception:  # pglast raises its own errors, and ValueError for other languages
        return None
    queries: list[str] = []
    dynamic = False

    def walk(node: object) -> None:
        nonlocal dynamic
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "PLpgSQL_stmt_dynexecute":
                    dynamic = True
                elif key == "PLpgSQL_stmt_execsql":
                    queries.append(value["sqlstmt"]["PLpgSQL_expr"]["query"])
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(tree)
    if dynamic:
        return None
    try:
        return [raw.stmt for query in queries for raw in pglast.parse_sql(query)]
    except pglast.parser.ParseError:
        return None


def read(sql_text: str, *, filename: str = "migration.sql", default_schema: str = "public") -> Expected:
    """The final expected state of what `sql_text` creates, changes and drops, statement after statement."""
    reader = _Reader(filename, default_schema)
    for statement in sql_parse.split(sql_text, filename=filename):
        if statement.raw is not None:
            skipped = len(reader.out.skipped)
            reader.read(statement.raw.stmt, statement.line)
            stmt = statement.raw.stmt
            if len(reader.out.skipped) > skipped and isinstance(stmt, ast.AlterTableStmt):
                # part of the ALTER left unmodelled: whatever it did to the table supersedes earlier expectations
                reader.out.unmodelled_tables.add(reader.rel(required(stmt.relation)))
    return reader.out


def _column_gone(expected: Expected, key: Table, name: str) -> None:
    """PostgreSQL drops the constraints and indexes on a dropped column, and the foreign keys to it."""
    for con in expected.constraints:
        if not con.dropped and (
            (con.table == key and name in con.columns) or (con.references == key and name in con.ref_columns)
        ):
            con.dropped = True
    for index in expected.indexes.values():
        if index.table == key and name in index.columns:
            index.dropped = True


def _cascade_to_columns(expected: Expected, earlier: list[Expected]) -> None:
    """A column this migration changes but did not create, whose type (from the migration that made it) this
    migration drops later with CASCADE: it goes with the type, and so does what is built on it."""
    for key, state in expected.tables.items():
        for column in state.columns.values():
            if column.dropped or column.type_key is not None:
                continue
            made = next(
                (
                    b.tables[key].columns[column.name]
                    for b in earlier
                    if key in b.tables and column.name in b.tables[key].columns
                ),
                None,
            )
            if made is None or made.type_key is None:
                continue
            column.type_key = made.type_key
            line = expected.cascaded_types.get(made.type_key) or expected.cascaded_extensions.get(made.type_key[1])
            if line and line > column.line:
                column.dropped, column.line = True, line
                _column_gone(expected, key, column.name)


def _renamed(renames: list, table: Table | None, columns: tuple) -> tuple[Table | None, tuple]:
    """`table` and its `columns` after `renames` (Expected.renames, in statement order)."""
    for kind, key, old, new in renames:
        if kind == "table" and table == key:
            table = old  # ("table", old key, new key, "")
        elif kind == "column" and table == key:
            columns = tuple(new if c == old else c for c in columns)
    return table, columns


def resolve(expected: Expected, earlier: Iterable[Expected]) -> Expected:
    """Fill in what `expected` renames but did not create, from the migrations before it (latest first).

    `ALTER INDEX a RENAME TO b` says only that b exists; the migration that created a says on which table and
    columns, so that a later DROP COLUMN under b is seen to take b with it. Renames of renames are followed, and
    so are the renames of its table and columns by the migrations in between (and by this one). A column this
    migration changes whose type it then drops with CASCADE is found the same way.
    """
    indexes = {k: i for k, i in expected.indexes.items() if i.table is None and i.renamed_from and not i.dropped}
    constraints = [c for c in expected.constraints if c.kind == "?" and c.renamed_from and not c.dropped]
    cascaded = expected.cascaded_types or expected.cascaded_extensions
    if not (indexes or constraints or cascaded):
        return expected  # the earlier migrations are not even read
    earlier = list(earlier)
    if cascaded:
        _cascade_to_columns(expected, earlier)
    # every one of them is renamed from a name (see `indexes` and `constraints` above)
    wanted_index = {i.renamed_from: i for i in indexes.values() if i.renamed_from is not None}
    wanted_con = {(c.table, c.renamed_from): c for c in constraints if c.renamed_from is not None}
    since: list[Expected] = [expected]  # the migrations after the one being looked at, latest first

    def now(table: Table | None, columns: tuple) -> tuple[Table | None, tuple]:
        for later in reversed(since):
            table, columns = _renamed(later.renames, table, columns)
        return table, columns

    for before in earlier:
        for old, index in list(wanted_index.items()):
            found = before.indexes.get(old)
            if found is None or found.dropped:
                continue
            del wanted_index[old]
            if found.table is not None:
                index.table, index.columns = now(found.table, found.columns)  # `found` is as `before` left it
                index.unique, index.partial = found.unique, found.partial
            elif found.renamed_from:
                wanted_index[found.renamed_from] = index
        for (table, old_name), con in list(wanted_con.items()):
            made = next(
                (c for c in before.constraints if c.table == table and c.name == old_name and not c.dropped), None
            )
            if made is None:
                continue
            del wanted_con[(table, old_name)]
            if made.kind != "?":
                _, con.columns = now(made.table, made.columns)
                con.references, con.ref_columns = now(made.references, made.ref_columns)
            elif made.renamed_from:
                wanted_con[(table, made.renamed_from)] = con
        if not (wanted_index or wanted_con):
            break
        since.append(before)
    for index in indexes.values():  # a column or table this migration drops after the rename takes the index
        state = expected.tables.get(index.table) if index.table else None
        if state is not None and (
            (state.dropped and state.line > index.line)
            or any(
                c in state.columns and state.columns[c].dropped and state.columns[c].line > index.line
                for c in index.columns
            )
        ):
            index.dropped = True
    return expected


@dataclass(frozen=True)
class Origin:
    """Where a later migration changes an object: the migration and the line of the statement that does it."""

    migration: str
    line: int

    def __str__(self) -> str:
        return f"migration {self.migration} line {self.line}"


@dataclass(frozen=True)
class Touched:
    """What migrations change, at the grain later ones can supersede (whole tables, columns, names), and where.

    Each object maps to the first statement that changes it; `earlier | later` keeps the earlier one's, so
    what a migration expected is said to be superseded by the first later migration that changed it.
    """

    tables: dict[Table, Origin] = field(default_factory=dict)  # created, dropped or renamed: every expectation
    columns: dict[tuple[Table, str], Origin] = field(default_factory=dict)  # changed in any way
    # dropped or renamed away: what is built on them (an index, a key) goes or changes too, where a new
    # default or NOT NULL leaves it as it was
    columns_gone: dict[tuple[Table, str], Origin] = field(default_factory=dict)
    constraints: dict[tuple[Table, str], Origin] = field(default_factory=dict)
    indexes: dict[Table, Origin] = field(default_factory=dict)
    enums: dict[Table, Origin] = field(default_factory=dict)  # types created, changed or dropped
    extensions: dict[str, Origin] = field(default_factory=dict)
    schemas: dict[str, Origin] = field(default_factory=dict)  # dropped: everything in them

    def __or__(self, later: Touched) -> Touched:
        return Touched(*({**getattr(later, f.name), **getattr(self, f.name)} for f in fields(Touched)))

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(Touched))


def _named(con: Constraint) -> str | None:
    """The constraint's name, or the one PostgreSQL gives an unnamed key ("Item_pkey", "Item_code_key")."""
    if con.name:
        return con.name
    suffix = {"p": "pkey", "u": "key", "f": "fkey"}.get(con.kind)
    if suffix is None:
        return None
    middle = "" if con.kind == "p" else "_" + "_".join(c for c in con.columns if c)
    return f"{con.table[1]}{middle}_{suffix}"


def touched(expected: Expected, migration: str = "") -> Touched:
    """What `expected`'s migration changes, each object with the line that last changes it there."""
    at = lambda line: Origin(migration, line)  # noqa: E731
    tables = {
        key: at(line)
        for key, line in (
            (k, expected.tables[k].line if k in expected.tables else 0)
            for k in expected.dropped_tables | expected.unmodelled_tables
        )
    }
    columns = {
        key: at(expected.tables[key[0]].line if key[0] in expected.tables else 0) for key in expected.unmodelled_columns
    }
    gone: dict[tuple[Table, str], Origin] = {}
    for key, state in expected.tables.items():
        if state.created or state.dropped:
            tables[key] = at(state.line)
        columns.update(((key, name), at(column.line)) for name, column in state.columns.items())
        gone.update(((key, name), at(column.line)) for name, column in state.columns.items() if column.dropped)
    names = {(c.table, name): at(c.line) for c in expected.constraints if (name := _named(c))}
    names.update({key: at(0) for key in expected.unmodelled_constraints if key not in names})
    names.update({(c.table, f"{c.table[1]}_pkey"): at(c.line) for c in expected.constraints if c.kind == "p"})
    indexes = {key: at(index.line) for key, index in expected.indexes.items()}
    indexes.update({key: at(0) for key in expected.unmodelled_indexes if key not in indexes})
    return Touched(
        tables,
        columns,
        gone,
        names,
        indexes,
        {**{key: at(0) for key in expected.unmodelled_types}, **{key: at(e.line) for key, e in expected.enums.items()}},
        {name: at(line) for name, (line, _) in expected.extensions.items()},
        {name: at(line) for name, line in expected.dropped_schemas.items()},
    )


@dataclass(frozen=True)
class Left:
    """An expectation left out because a later migration changes its object again: what, and where."""

    what: str
    by: Origin

    def __str__(self) -> str:
        return f"{self.what}: changed again by {self.by}"


class _Stale:
    """Whether a later migration changes an object an expectation is about, and which one does."""

    def __init__(self, later: Touched) -> None:
        self.later = later

    def schema(self, key: Table) -> Origin | None:
        """The object's schema dropped later (a key without a schema is in the default one, public)."""
        return self.later.schemas.get(key[0] or "public")

    def table(self, key: Table | None) -> Origin | None:
        if key is None:
            return None
        return self.later.tables.get(key) or self.schema(key)

    def columns(self, key: Table | None, names: tuple) -> Origin | None:
        """The table, or any of these columns dropped or renamed (a DROP COLUMN takes the indexes and constraints
        on it; a rename changes what they are on)."""
        if key is None:  # an index renamed here, created elsewhere: no table known
            return None
        gone = self.later.columns_gone
        return self.table(key) or next((gone[(key, n)] for n in names if (key, n) in gone), None)

    def column(self, key: Table, column: Column) -> Origin | None:
        """The column changed in any way, or its type dropped later (DROP TYPE/EXTENSION ... CASCADE drops the
        columns of that type)."""
        found = self.table(key) or self.later.columns.get((key, column.name))
        if found or column.type_key is None:
            return found
        type_schema, type_name = column.type_key
        return (
            self.later.enums.get(column.type_key)
            or self.later.extensions.get(type_name)
            or (self.later.schemas.get(type_schema) if type_schema else None)
        )


_K = TypeVar("_K")
_V = TypeVar("_V")


def superseded(expected: Expected, later: Touched) -> tuple[Expected, list[Left]]:
    """`expected` without what later migrations change again (they check it themselves), and what was left out.

    A migration validated after later ones were applied (`runbook validate 5` after 6 and 7, `runbook check`)
    would otherwise expect a column type, an enum's labels or an index that a later migration changed on
    purpose: a false failure. The changes count whether named (ALTER ... DROP COLUMN c) or implied: an index or
    constraint on a column dropped later goes with it, as does a foreign key to a table dropped later, a column
    of a type or extension dropped later with CASCADE, and everything in a schema dropped later.
    """
    if not later:
        return expected, []
    stale = _Stale(later)
    left: list[Left] = []

    def kept(
        items: dict[_K, _V], by_of: Callable[[_K, _V], Origin | None], what_of: Callable[[_K, _V], str]
    ) -> dict[_K, _V]:
        """`items` less those a later migration changes, which go to `left`, named with where."""
        out = {}
        for key, item in items.items():
            by = by_of(key, item)
            if by:
                left.append(Left(what_of(key, item), by))
            else:
                out[key] = item
        return out

    def kept_columns(key: Table, state: TableState) -> dict[str, Column]:
        return kept(
            state.columns,
            lambda _, column: stale.column(key, column),
            lambda name, _: f"column {shown(key)}.{name}",
        )

    tables: dict[Table, TableState] = {}
    for key, state in kept(
        expected.tables, lambda key, _: stale.table(key), lambda key, _: f"table {shown(key)}"
    ).items():
        columns = kept_columns(key, state)
        tables[key] = (
            TableState(state.key, state.line, state.created, state.dropped, columns)
            if len(columns) != len(state.columns)
            else state
        )

    def constraint_by(_: int, con: Constraint) -> Origin | None:
        name = _named(con)
        return (
            stale.columns(con.table, con.columns)
            or (stale.columns(con.references, con.ref_columns) if con.references is not None else None)
            or (later.constraints.get((con.table, name)) if name else None)
        )

    constraints = list(
        kept(
            dict(enumerate(expected.constraints)),
            constraint_by,
            lambda _, con: f"constraint {_named(con) or con.kind} on {shown(con.table)}",
        ).values()
    )
    indexes = kept(
        expected.indexes,
        lambda key, index: later.indexes.get(key) or stale.columns(index.table, index.columns) or stale.schema(key),
        lambda key, _: f"index {shown(key)}",
    )
    enums = kept(
        expected.enums, lambda key, _: later.enums.get(key) or stale.schema(key), lambda key, _: f"type {shown(key)}"
    )
    extensions = kept(
        expected.extensions, lambda name, _: later.extensions.get(name), lambda name, _: f"extension {name}"
    )
    return Expected(
        expected.filename, tables, constraints, indexes, enums, extensions, expected.skipped, expected.dropped_tables
    ), left
