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

from dataclasses import dataclass, field

from pglast import ast
from pglast.enums import AlterTableType as AT
from pglast.enums import ConstrType as CT
from pglast.enums import ObjectType as OT
from pglast.stream import RawStream

from runbook_lib.sql import parse as sql_parse

# serial types are not types: the column is the integer type with a sequence default, NOT NULL.
_SERIALS = {"smallserial": "smallint", "serial2": "smallint", "serial": "integer", "serial4": "integer",
            "bigserial": "bigint", "serial8": "bigint"}
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


@dataclass
class Index:
    key: Table  # (schema, index name)
    line: int
    table: Table | None = None  # None: renamed here, created elsewhere (only its presence is known)
    columns: tuple[str | None, ...] = ()  # None for an expression
    unique: bool = False
    partial: bool = False
    dropped: bool = False


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


def _strings(nodes) -> list[str]:
    return [n.sval for n in nodes or () if isinstance(n, ast.String)]


def _simple_default(expr) -> str | None:
    """The expression's text when it is a constant, a cast of one or a call without arguments (now())."""
    node = expr.arg if isinstance(expr, ast.TypeCast) else expr
    if isinstance(node, ast.A_Const) or isinstance(node, ast.SQLValueFunction):
        return RawStream()(expr)
    if isinstance(node, ast.FuncCall) and not node.args:
        return RawStream()(expr)
    if isinstance(node, ast.A_Expr) and node.lexpr is None and isinstance(node.rexpr, ast.A_Const):
        return RawStream()(expr)  # -1
    return None


def _column_names(expr) -> tuple[str, ...]:
    """The plain column names an expression reads (for a CHECK), in order of appearance."""
    found: list[str] = []

    def visit(node) -> None:
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
        return (None if schema in (None, self.default_schema) else schema, name)

    def rel(self, rv: ast.RangeVar) -> Table:
        return self.key(rv.schemaname, rv.relname)

    def qualified(self, names: list[str]) -> Table:
        return self.key(names[-2] if len(names) > 1 else None, names[-1])

    # -- statements ----------------------------------------------------------------------------

    def read(self, stmt, line: int) -> None:
        handler = getattr(self, "_" + type(stmt).__name__, None)
        if handler is not None:
            handler(stmt, line)
        elif not isinstance(stmt, _QUIET):
            self.out.skipped.append(Skipped(line, type(stmt).__name__, "nothing derivable: not a schema change runbook models"))

    def _CreateStmt(self, stmt: ast.CreateStmt, line: int) -> None:
        if stmt.partbound is not None or stmt.inhRelations or stmt.ofTypename is not None:
            self.out.skipped.append(Skipped(line, "CreateStmt", "partitions, inheritance and typed tables are not modelled"))
            return
        key = self.rel(stmt.relation)
        if stmt.if_not_exists and key not in self.out.tables:
            self.out.unmodelled_tables.add(key)
            self.out.skipped.append(Skipped(line, "CreateStmt", "CREATE TABLE IF NOT EXISTS may have found an older table"))
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
        column = table.column(cdef.colname, line)
        column.line = line
        written = RawStream()(cdef.typeName)
        serial = _SERIALS.get(_strings(cdef.typeName.names)[-1]) if not cdef.typeName.arrayBounds else None
        column.type = serial or written
        if serial:
            column.not_null, column.has_default = True, True
        if cdef.is_not_null:
            column.not_null = True
        if cdef.raw_default is not None:
            column.has_default, column.default_sql = True, _simple_default(cdef.raw_default)
        for con in cdef.constraints or ():
            if con.contype == CT.CONSTR_NOTNULL:
                column.not_null = True
            elif con.contype == CT.CONSTR_NULL:
                column.not_null = False
            elif con.contype == CT.CONSTR_DEFAULT:
                column.has_default, column.default_sql = True, _simple_default(con.raw_expr)
            elif con.contype in (CT.CONSTR_IDENTITY, CT.CONSTR_GENERATED):
                column.has_default, column.default_sql = True, None
                if con.contype == CT.CONSTR_IDENTITY:
                    column.not_null = True
            elif con.contype in (CT.CONSTR_PRIMARY, CT.CONSTR_UNIQUE, CT.CONSTR_FOREIGN, CT.CONSTR_CHECK):
                self._constraint(table, con, line, column=cdef.colname)

    def _constraint(self, table: TableState, con: ast.Constraint, line: int, column: str | None = None) -> None:
        kinds = {CT.CONSTR_PRIMARY: "p", CT.CONSTR_UNIQUE: "u", CT.CONSTR_FOREIGN: "f", CT.CONSTR_CHECK: "c"}
        kind = kinds.get(con.contype)
        if kind is None:
            return  # EXCLUDE, deferrability attributes: not modelled
        if con.conname:  # a name given again replaces whatever this file said about it before
            self.out.constraints = [c for c in self.out.constraints
                                    if not (c.table == table.key and c.name == con.conname)]
        if kind in "pu" and con.indexname:  # ... UNIQUE USING INDEX i: the index becomes the constraint
            index = self.out.indexes.pop(self.key(table.key[0], con.indexname), None)
            if index is None or any(c is None for c in index.columns):
                self.out.skipped.append(Skipped(line, "AlterTableStmt", f"constraint from index {con.indexname} written elsewhere"))
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
            found.references = self.rel(con.pktable)
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
            self.out.skipped.append(Skipped(line, "AlterTableStmt", f"ALTER {stmt.objtype.name[7:]} is not modelled"))
            return
        key = self.rel(stmt.relation)
        table = self.out.table(key, line)
        for cmd in stmt.cmds or ():
            sub = cmd.subtype
            if sub == AT.AT_AddColumn:
                if cmd.missing_ok and not (cmd.def_.colname in table.columns and table.columns[cmd.def_.colname].dropped):
                    self.out.unmodelled_columns.add((key, cmd.def_.colname))
                    self.out.skipped.append(Skipped(line, "AlterTableStmt", "ADD COLUMN IF NOT EXISTS may have kept an older column"))
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
                for con in self.out.constraints:
                    if con.table == key and cmd.name in con.columns and not con.dropped:
                        con.dropped = True  # PostgreSQL drops the constraints on the column with it
                for index in self.out.indexes.values():
                    if index.table == key and cmd.name in index.columns:
                        index.dropped = True
            elif sub == AT.AT_AlterColumnType:
                column = table.column(cmd.name, line)
                column.type, column.line = RawStream()(cmd.def_.typeName), line
            elif sub in (AT.AT_SetNotNull, AT.AT_DropNotNull):
                column = table.column(cmd.name, line)
                column.not_null, column.line = sub == AT.AT_SetNotNull, line
            elif sub == AT.AT_ColumnDefault:
                column = table.column(cmd.name, line)
                column.has_default = cmd.def_ is not None
                column.default_sql = _simple_default(cmd.def_) if cmd.def_ is not None else None
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
        table = self.rel(stmt.relation)
        if not stmt.idxname:
            self.out.skipped.append(Skipped(line, "IndexStmt", "an index without a name: PostgreSQL chooses it"))
            return
        key = self.key(stmt.relation.schemaname, stmt.idxname)
        if stmt.if_not_exists and key not in self.out.indexes:
            self.out.unmodelled_indexes.add(key)
            self.out.skipped.append(Skipped(line, "IndexStmt", "CREATE INDEX IF NOT EXISTS may have found an older index"))
            return
        columns = tuple(p.name if p.name else None for p in stmt.indexParams or ())
        self.out.indexes[key] = Index(key, line, table, columns, bool(stmt.unique), stmt.whereClause is not None)

    def _DropStmt(self, stmt: ast.DropStmt, line: int) -> None:
        kind = stmt.removeType
        for obj in stmt.objects or ():
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
            elif kind == OT.OBJECT_EXTENSION:
                self.out.extensions[names[-1]] = (line, False)
            else:
                self.out.skipped.append(Skipped(line, "DropStmt", f"DROP {kind.name[7:]} is not modelled"))

    def _drop_table(self, key: Table) -> None:
        self.out.dropped_tables.add(key)
        self.out.tables.pop(key, None)
        self.out.constraints = [c for c in self.out.constraints if c.table != key]
        self.out.indexes = {k: i for k, i in self.out.indexes.items() if i.table != key}

    def _RenameStmt(self, stmt: ast.RenameStmt, line: int) -> None:
        kind = stmt.renameType
        if kind == OT.OBJECT_TABLE:
            old = self.rel(stmt.relation)
            new = (old[0], stmt.newname)
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
            key = self.rel(stmt.relation)
            table = self.out.table(key, line)
            state = table.columns.pop(stmt.subname, None)
            table.column(stmt.subname, line).dropped = True
            state = state or Column(stmt.newname, line)
            state.name, state.line = stmt.newname, line
            table.columns[stmt.newname] = state
            rename = lambda cols: tuple(stmt.newname if c == stmt.subname else c for c in cols)  # noqa: E731
            for con in self.out.constraints:
                if con.table == key:
                    con.columns = rename(con.columns)
                if con.references == key:
                    con.ref_columns = rename(con.ref_columns)
            for index in self.out.indexes.values():
                if index.table == key:
                    index.columns = rename(index.columns)
        elif kind == OT.OBJECT_TABCONSTRAINT:
            key = self.rel(stmt.relation)
            for con in self.out.constraints:
                if con.table == key and con.name == stmt.subname and not con.dropped:
                    con.name = stmt.newname
                    break
            else:  # renamed here, created elsewhere: only its presence under the new name is known
                self.out.constraints.append(Constraint(key, "?", line, stmt.subname, dropped=True))
                self.out.constraints.append(Constraint(key, "?", line, stmt.newname))
            if self.key(key[0], stmt.subname) in self.out.indexes:  # a key's index is renamed with it
                self._rename_index(self.key(key[0], stmt.subname), stmt.newname, line)
        elif kind == OT.OBJECT_INDEX:
            self._rename_index(self.rel(stmt.relation), stmt.newname, line)
        elif kind == OT.OBJECT_TYPE:
            old = self.qualified(_strings(stmt.object))
            new = (old[0], stmt.newname)
            state = self.out.enums.pop(old, None)
            self.out.enums[old] = Enum(old, line, dropped=True)
            if state is not None:
                state.key = new
                self.out.enums[new] = state
        else:
            self.out.skipped.append(Skipped(line, "RenameStmt", f"RENAME of {kind.name[7:]} is not modelled"))

    def _rename_index(self, old: Table, newname: str, line: int) -> None:
        state = self.out.indexes.pop(old, None)
        new = (old[0], newname)
        if state is None:  # created elsewhere: only its presence under the new name is known
            state = Index(old, line)
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
        state = self.out.enums.get(key)
        if state is None or state.dropped:
            state = self.out.enums[key] = Enum(key, line)
        state.line = line
        if stmt.oldVal:  # RENAME VALUE
            if state.labels is not None:
                state.labels = [stmt.newVal if v == stmt.oldVal else v for v in state.labels]
            else:
                state.added = [v for v in state.added if v != stmt.oldVal] + [stmt.newVal]
                state.removed.append(stmt.oldVal)
            return
        if state.labels is None:
            state.added.append(stmt.newVal)
            return
        if stmt.newVal in state.labels:
            return  # IF NOT EXISTS with a label already there
        if stmt.newValNeighbor and stmt.newValNeighbor in state.labels:
            at = state.labels.index(stmt.newValNeighbor) + (1 if stmt.newValIsAfter else 0)
            state.labels.insert(at, stmt.newVal)
        else:
            state.labels.append(stmt.newVal)

    def _CreateExtensionStmt(self, stmt: ast.CreateExtensionStmt, line: int) -> None:
        self.out.extensions[stmt.extname] = (line, True)


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
                reader.out.unmodelled_tables.add(reader.rel(stmt.relation))
    return reader.out


@dataclass(frozen=True)
class Touched:
    """What a migration changes, at the grain later ones can supersede: whole tables, columns, and names."""

    tables: frozenset[Table] = frozenset()  # created, dropped or renamed: every expectation on them
    columns: frozenset[tuple[Table, str]] = frozenset()
    constraints: frozenset[tuple[Table, str]] = frozenset()
    indexes: frozenset[Table] = frozenset()
    enums: frozenset[Table] = frozenset()
    extensions: frozenset[str] = frozenset()

    def __or__(self, other: "Touched") -> "Touched":
        return Touched(self.tables | other.tables, self.columns | other.columns,
                       self.constraints | other.constraints, self.indexes | other.indexes,
                       self.enums | other.enums, self.extensions | other.extensions)


def _named(con: Constraint) -> str | None:
    """The constraint's name, or the one PostgreSQL gives an unnamed key ("Item_pkey", "Item_code_key")."""
    if con.name:
        return con.name
    suffix = {"p": "pkey", "u": "key", "f": "fkey"}.get(con.kind)
    if suffix is None:
        return None
    middle = "" if con.kind == "p" else "_" + "_".join(c for c in con.columns if c)
    return f"{con.table[1]}{middle}_{suffix}"


def touched(expected: Expected) -> Touched:
    whole = set(expected.dropped_tables) | expected.unmodelled_tables
    columns = set(expected.unmodelled_columns)
    for key, state in expected.tables.items():
        if state.created or state.dropped:
            whole.add(key)
        columns.update((key, name) for name in state.columns)
    names = {(c.table, _named(c)) for c in expected.constraints if _named(c)}
    names |= {(c.table, f"{c.table[1]}_pkey") for c in expected.constraints if c.kind == "p"}  # a table has one
    return Touched(frozenset(whole), frozenset(columns), frozenset(names),
                   frozenset(expected.indexes) | frozenset(expected.unmodelled_indexes),
                   frozenset(expected.enums), frozenset(expected.extensions))


def superseded(expected: Expected, later: Touched) -> tuple[Expected, int]:
    """`expected` without what later migrations change again (they check it themselves); and how much was left out.

    A migration validated after later ones were applied (a release validates at its end; `runbook validate 5`
    after 6 and 7) would otherwise expect a column type, an enum's labels or an index that a later migration
    changed on purpose: a false failure.
    """
    if not (later.tables or later.columns or later.constraints or later.indexes or later.enums or later.extensions):
        return expected, 0
    left = 0
    gone_columns: dict[Table, set[str]] = {}
    tables = {}
    for key, state in expected.tables.items():
        if key in later.tables:
            left += 1 + len(state.columns)
            continue
        kept = {n: c for n, c in state.columns.items() if (key, n) not in later.columns}
        gone_columns[key] = set(state.columns) - set(kept)
        left += len(state.columns) - len(kept)
        tables[key] = TableState(state.key, state.line, state.created, state.dropped, kept) \
            if len(kept) != len(state.columns) else state

    def stale(table: Table | None, cols: tuple) -> bool:
        return table in later.tables or bool(gone_columns.get(table, set()) & {c for c in cols if c})

    constraints = [c for c in expected.constraints
                   if not (stale(c.table, c.columns) or (c.references is not None and stale(c.references, c.ref_columns))
                           or (_named(c) and (c.table, _named(c)) in later.constraints))]
    indexes = {k: i for k, i in expected.indexes.items() if k not in later.indexes and not stale(i.table, i.columns)}
    enums = {k: e for k, e in expected.enums.items() if k not in later.enums}
    extensions = {k: v for k, v in expected.extensions.items() if k not in later.extensions}
    left += (len(expected.constraints) - len(constraints) + len(expected.indexes) - len(indexes)
             + len(expected.enums) - len(enums) + len(expected.extensions) - len(extensions))
    return Expected(expected.filename, tables, constraints, indexes, enums, extensions, expected.skipped,
                    expected.dropped_tables), left
