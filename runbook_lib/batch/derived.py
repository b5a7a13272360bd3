"""Tests derived from the migration's own statements: what it says must now be in the catalog, and enforced.

runbook_lib.sql.expect reads migration.sql into the final expected state of each object; this module
turns that state into SqlBlocks, the same kind of test as the declared [checks] and validation.sql, so
they run through the same runner, record and summary. Each catalog test returns one readable value
('NOT NULL', 'valid unique index on Lead (email)', 'A, B, C') that must equal what the migration says,
so a failure shows both. Behaviour tests are added where a row can be built from the catalog
(runbook_lib.batch.rowbuilder) on a table without CHECK constraints or triggers, so that nothing but the
constraint under test can refuse it: NULL rejected, duplicate rejected, delete of a referenced parent
rejected. Where a row cannot be built only the catalog test runs, and a note says so: a derived test
must never fail for a reason the migration did not state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from runbook_lib.batch import declared
from runbook_lib.batch.blocks import DERIVED_SOURCE, Expectation, SqlBlock
from runbook_lib.batch.model import Batch, ForeignKeyCheck, TableRef, UniqueCheck
from runbook_lib.batch.rowbuilder import RowBuilder, regclass_text
from runbook_lib.errors import CannotBuild, RunbookError
from runbook_lib.sql import expect
from runbook_lib.sql.expect import Table

ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
_ACTION_SQL = ("CASE {} WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE'"
               " WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' END")


@dataclass
class Derivation:
    """The derived tests of one migration, and what was not turned into a test (and why)."""

    blocks: list[SqlBlock] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _ref(key: Table) -> TableRef:
    return TableRef(key[1], key[0])


def _shown(key: Table) -> str:
    return f"{key[0]}.{key[1]}" if key[0] else key[1]


def _relation(key: Table) -> sql.Composable:
    return sql.SQL("to_regclass({})").format(sql.Literal(regclass_text(_ref(key))))


def _attribute(key: Table, column: str, select: str) -> sql.Composable:
    """`select` over the column's pg_attribute row (alias a, defaults d), or 'missing'."""
    return sql.SQL(
        "SELECT coalesce((SELECT " + select + " FROM pg_attribute a"
        " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE a.attrelid = {rel} AND a.attname = {col} AND a.attnum > 0 AND NOT a.attisdropped), 'missing')"
    ).format(rel=_relation(key), col=sql.Literal(column))


def _name_array(array: str, rel: str) -> str:
    """The column names of an int2 array of attnums (conkey, indkey) of relation `rel`, in order, as text[]."""
    return (f"ARRAY(SELECT coalesce(a.attname::text, 'expression') FROM unnest({array}::int2[])"
            f" WITH ORDINALITY k(num, ord) LEFT JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = k.num"
            " ORDER BY k.ord)")


def _names_of(array: str, rel: str) -> str:
    """The same names as one text: 'a, b'."""
    return f"array_to_string({_name_array(array, rel)}, ', ')"


# The key columns of index `i` (pg_index): indkey without the INCLUDE columns, as int2[] (0-based).
_INDEX_KEYS = "(i.indkey::int2[])[0:i.indnkeyatts - 1]"


class _Builder:
    def __init__(self, conn: psycopg.Connection, expected: expect.Expected) -> None:
        self.conn, self.expected = conn, expected
        self.rows = RowBuilder(conn)
        self.out = Derivation()
        self._plain: dict[Table, bool] = {}

    # -- blocks ---------------------------------------------------------------------------------

    def block(self, what: str, line: int, stmt: sql.Composable | str, value: str | Expectation) -> SqlBlock:
        where = f"{self.expected.filename} line {line}"
        expectation = value if isinstance(value, Expectation) else Expectation("value", value)
        text = stmt if isinstance(stmt, str) else stmt.as_string(self.conn)
        found = SqlBlock(f"{what} (derived: {where})", text, expectation, DERIVED_SOURCE + where, line)
        self.out.blocks.append(found)
        return found

    def adopt(self, declared_block: SqlBlock, what: str, line: int) -> None:
        """A behaviour test built by runbook_lib.batch.declared, renamed and marked as derived; skipped if not buildable."""
        if declared_block.not_runnable:
            self.out.notes.append(f"{what}: not tested by behaviour, {declared_block.not_runnable}")
            return
        where = f"{self.expected.filename} line {line}"
        self.out.blocks.append(dataclasses.replace(
            declared_block, name=f"{what} (derived: {where})", source=DERIVED_SOURCE + where, line=line))

    def plain(self, key: Table) -> bool:
        """A plain table (not partitioned) without CHECK constraints or user triggers: a built row can only be
        refused by the constraint under test (a partitioned table refuses a row no partition takes)."""
        if key not in self._plain:
            found = self.conn.execute(sql.SQL(
                "SELECT coalesce((SELECT relkind = 'r' FROM pg_class WHERE oid = {rel}), false) AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {rel} AND contype = 'c')"
                " AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = {rel} AND NOT tgisinternal)"
            ).format(rel=_relation(key))).fetchone()[0]
            self._plain[key] = bool(found)
            if not found:
                self.out.notes.append(f"{_shown(key)}: no behaviour tests (no such table, a partitioned one, or CHECK "
                                      "constraints or triggers that could refuse a made-up row)")
        return self._plain[key]

    def behaviour(self, key: Table, what: str, line: int, build, expectation: Expectation) -> None:
        if not self.plain(key):
            return
        try:
            self.block(what, line, build(), expectation)
        except CannotBuild as exc:
            self.out.notes.append(f"{what}: not tested by behaviour, cannot build the row: {exc}")

    # -- kinds ----------------------------------------------------------------------------------

    def table(self, state: expect.TableState) -> None:
        key, name = state.key, _shown(state.key)
        presence = sql.SQL("SELECT CASE WHEN {} IS NULL THEN 'absent' ELSE 'present' END").format(_relation(key))
        if state.dropped:
            self.block(f"Table {name} is dropped", state.line, presence, "absent")
            return
        if state.created:
            self.block(f"Table {name} exists", state.line, presence, "present")
        not_null = []
        for column in state.columns.values():
            self.column(key, column)
            if column.not_null and not column.dropped:
                not_null.append(column)
        for column in not_null:
            self.behaviour(key, f"{name} without {column.name} rejected", column.line,
                           lambda c=column: self.rows.insert(_ref(key), {c.name: sql.SQL("NULL")}),
                           Expectation("error", "23502", column=column.name))
        if not_null and self.rows_can_differ(key):
            self.behaviour(key, f"A valid {name} row accepted", not_null[0].line,
                           lambda: self.rows.insert(_ref(key)), Expectation("ok"))

    def rows_can_differ(self, key: Table) -> bool:
        """False when a built row would repeat an existing key: a unique index made only of foreign key columns
        (each takes the first parent row) on a table that has rows."""
        try:
            shape = self.rows.shape(_ref(key))
            if not self.rows.has_rows(_ref(key)):
                return True
        except CannotBuild:
            return True  # the behaviour test reports it
        from_parents = {c for fk in shape.foreign_keys for c in fk.columns}
        for (columns,) in self.conn.execute(sql.SQL(
                "SELECT " + _name_array(_INDEX_KEYS, "i.indrelid") + " FROM pg_index i"
                " WHERE i.indrelid = {} AND i.indisunique").format(_relation(key))):
            if set(columns) <= from_parents:
                self.out.notes.append(f"A valid {_shown(key)} row accepted: not tested by behaviour, its unique "
                                      f"key ({', '.join(columns)}) comes from parent rows an existing row may use")
                return False
        return True

    def column(self, key: Table, column: expect.Column) -> None:
        label = f"{_shown(key)}.{column.name}"
        if column.dropped:
            self.block(f"{label} is dropped", column.line,
                       _attribute(key, column.name, "'present'"), "missing")
            return
        if column.type is not None:
            try:
                canonical = declared.canonical_type(self.conn, column.type)
                self.block(f"{label} is {canonical}", column.line,
                           _attribute(key, column.name, "format_type(a.atttypid, a.atttypmod)"), canonical)
            except CannotBuild as exc:
                self.out.notes.append(f"{label}: type not compared ({exc})")
                self.block(f"{label} exists", column.line, _attribute(key, column.name, "'present'"), "present")
        if column.not_null is not None:
            wanted = "NOT NULL" if column.not_null else "nullable"
            self.block(f"{label} is {wanted}", column.line,
                       _attribute(key, column.name, "CASE WHEN a.attnotnull THEN 'NOT NULL' ELSE 'nullable' END"), wanted)
        if column.has_default is None:
            return
        if not column.has_default:
            self.block(f"{label} has no default", column.line, _attribute(
                key, column.name, "CASE WHEN a.atthasdef OR a.attidentity <> '' THEN 'a default' ELSE 'no default' END"),
                "no default")
            return
        spelled = self.default_as_server_spells_it(key, column) if column.default_sql else None
        if spelled is not None:
            self.block(f"{label} defaults to {spelled}", column.line, _attribute(
                key, column.name, "CASE WHEN d.adbin IS NULL THEN 'no default' ELSE pg_get_expr(d.adbin, d.adrelid) END"),
                spelled)
        else:
            self.block(f"{label} has a default", column.line, _attribute(
                key, column.name, "CASE WHEN a.atthasdef OR a.attidentity <> '' THEN 'a default' ELSE 'no default' END"),
                "a default")

    def default_as_server_spells_it(self, key: Table, column: expect.Column) -> str | None:
        """pg_get_expr of the written default on a scratch column of the same type (rolled back), or None."""
        type_text = self.conn.execute(sql.SQL(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = {} AND a.attname = {}"
            " AND a.attnum > 0 AND NOT a.attisdropped").format(_relation(key), sql.Literal(column.name))).fetchone()
        if type_text is None:
            return None
        try:
            with self.conn.transaction():
                # The migration's own expression (already run by apply), on a temporary table inside a savepoint.
                self.conn.execute(sql.SQL("CREATE TEMPORARY TABLE runbook_default_probe (c {} DEFAULT {})").format(
                    sql.SQL(type_text[0]), sql.SQL(column.default_sql)))
                spelled = self.conn.execute(
                    "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d"
                    " WHERE d.adrelid = 'runbook_default_probe'::regclass").fetchone()[0]
                raise psycopg.Rollback()
        except psycopg.Error:
            return None
        return spelled

    def constraint(self, con: expect.Constraint) -> None:
        key, name = con.table, _shown(con.table)
        cols = ", ".join(con.columns)
        if con.dropped:
            if con.name:
                self.block(f"Constraint {con.name} on {name} is dropped", con.line, sql.SQL(
                    "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {} AND conname = {})"
                    " THEN 'present' ELSE 'absent' END").format(_relation(key), sql.Literal(con.name)), "absent")
            return
        by_name = sql.SQL(" AND c.conname = {}").format(sql.Literal(con.name)) if con.name else sql.SQL("")
        if con.kind == "?":
            self.block(f"Constraint {con.name} on {name} exists", con.line, sql.SQL(
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = {}{})"
                " THEN 'present' ELSE 'absent' END").format(_relation(key), by_name), "present")
        if con.kind == "p":
            self.block(f"{name} has PRIMARY KEY ({cols})", con.line, sql.SQL(
                "SELECT coalesce((SELECT " + _names_of("c.conkey", "c.conrelid") + " FROM pg_constraint c"
                " WHERE c.conrelid = {} AND c.contype = 'p'), 'missing')").format(_relation(key)), cols)
        elif con.kind == "u":
            check = UniqueCheck(_ref(key), con.columns)
            self.block(f"{name} ({cols}) is UNIQUE", con.line, sql.SQL(
                "SELECT CASE WHEN EXISTS ({}) THEN 'unique' ELSE 'missing' END").format(
                declared._unique_index_sql(check, "1")), "unique")
            self.unique_behaviour(key, con.columns, con.line, con.name)
        elif con.kind == "f":
            self.foreign_key(con, by_name)
        elif con.kind == "c":
            wanted = "validated" if con.validated else "not validated"
            what = f"{name} has CHECK {con.name}" if con.name else f"{name} has a CHECK on ({cols})"
            on_columns = sql.SQL("") if con.name else sql.SQL(
                " AND {}::text[] <@ ARRAY(SELECT a.attname::text FROM pg_attribute a"
                " WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey))").format(sql.Literal(list(con.columns)))
            self.block(f"{what}, {wanted}", con.line, sql.SQL(
                "SELECT coalesce((SELECT CASE WHEN bool_and(c.convalidated) THEN 'validated' ELSE 'not validated' END"
                " FROM pg_constraint c WHERE c.conrelid = {rel} AND c.contype = 'c'{name}{cols} HAVING count(*) > 0), 'missing')"
            ).format(rel=_relation(key), name=by_name, cols=on_columns), wanted)

    def foreign_key(self, con: expect.Constraint, by_name: sql.Composable) -> None:
        key, parent = con.table, con.references
        ref_cols = con.ref_columns
        wanted = (f"({', '.join(con.columns)}) REFERENCES {parent[1]}"
                  + (f" ({', '.join(ref_cols)})" if ref_cols else "")
                  + f" ON DELETE {ACTIONS[con.on_delete]} ON UPDATE {ACTIONS[con.on_update]}")
        shown_refs = "' (' || " + _names_of("c.confkey", "c.confrelid") + " || ')'" if ref_cols else "''"
        described = ("'(' || " + _names_of("c.conkey", "c.conrelid") + " || ') REFERENCES ' || p.relname || "
                     + shown_refs + " || ' ON DELETE ' || " + _ACTION_SQL.format("c.confdeltype")
                     + " || ' ON UPDATE ' || " + _ACTION_SQL.format("c.confupdtype"))
        on_columns = sql.SQL("") if con.name else sql.SQL(" AND {} = {}").format(
            sql.SQL(_names_of("c.conkey", "c.conrelid")), sql.Literal(", ".join(con.columns)))
        what = f"{_shown(key)} FOREIGN KEY {con.name + ' ' if con.name else ''}{wanted}"
        self.block(what, con.line, sql.SQL(
            "SELECT coalesce((SELECT string_agg(" + described + ", '; ') FROM pg_constraint c"
            " JOIN pg_class p ON p.oid = c.confrelid"
            " WHERE c.conrelid = {rel} AND c.contype = 'f'{name}{cols}), 'missing')"
        ).format(rel=_relation(key), name=by_name, cols=on_columns), wanted)
        if con.on_delete not in "ra" or len(con.columns) != 1 or len(ref_cols) != 1 or not con.validated:
            return
        if con.deferrable:
            self.out.notes.append(f"{what}: not tested by behaviour, a DEFERRABLE key is checked at commit only")
            return
        if not (self.plain(key) and self.plain(parent)):
            return
        check = ForeignKeyCheck(_ref(key).column(con.columns[0]), _ref(parent).column(ref_cols[0]),
                                "restrict" if con.on_delete == "r" else "no action")
        found = declared._foreign_key(self.conn, self.rows, check, writes=True)
        if len(found) == 3:
            block = found[2].block
            if con.name:  # the constraint that must refuse the delete is the one the migration named
                block = dataclasses.replace(block, expect=dataclasses.replace(block.expect, constraint=con.name))
            self.adopt(block, f"Delete of a {parent[1]} referenced by {_shown(key)}.{con.columns[0]} rejected", con.line)

    def unique_behaviour(self, key: Table, columns: tuple, line: int, own: str | None = None) -> None:
        """`own`: the name of the constraint or index under test, so another one on the same columns is seen."""
        if not self.plain(key) or any(c is None for c in columns):
            return
        # Another unique index on some of these columns (or on the same ones, under another name: a primary key a
        # later migration added) would refuse the duplicate first: no behaviour test then.
        narrower = self.conn.execute(sql.SQL(
            "SELECT string_agg(c.relname, ', ') FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = {rel} AND i.indisunique AND i.indpred IS NULL"
            " AND " + _name_array(_INDEX_KEYS, "i.indrelid") + " <@ {cols}::text[]"
            " AND (NOT " + _name_array(_INDEX_KEYS, "i.indrelid") + " @> {cols}::text[]"
            " OR (c.relname <> {own} AND {own} <> ''))"
        ).format(rel=_relation(key), cols=sql.Literal(list(columns)), own=sql.Literal(own or ""))).fetchone()[0]
        if narrower:
            self.out.notes.append(f"Duplicate {_shown(key)} ({', '.join(columns)}): not tested by behaviour, "
                                  f"unique index {narrower} on fewer of its columns would refuse it first")
            return
        found = declared._unique(self.conn, self.rows, UniqueCheck(_ref(key), tuple(columns)), writes=True)
        if len(found) == 2:
            self.adopt(found[1].block, f"Duplicate {_shown(key)} ({', '.join(columns)}) rejected", line)

    def index(self, index: expect.Index) -> None:
        name = _shown(index.key)
        rel = sql.SQL("to_regclass({})").format(sql.Literal(regclass_text(_ref(index.key))))
        if index.dropped:
            self.block(f"Index {name} is dropped", index.line, sql.SQL(
                "SELECT CASE WHEN {} IS NULL THEN 'absent' ELSE 'present' END").format(rel), "absent")
            return
        if index.table is None:
            self.block(f"Index {name} exists", index.line, sql.SQL(
                "SELECT CASE WHEN {} IS NULL THEN 'absent' ELSE 'present' END").format(rel), "present")
            return
        cols = ", ".join(c or "expression" for c in index.columns)
        wanted = f"valid{' unique' if index.unique else ''} index on {index.table[1]} ({cols})"
        self.block(f"Index {name} is a {wanted}", index.line, sql.SQL(
            "SELECT coalesce((SELECT CASE WHEN i.indisvalid AND i.indisready THEN 'valid' ELSE 'invalid' END"
            " || CASE WHEN i.indisunique THEN ' unique' ELSE '' END || ' index on ' || t.relname || ' ('"
            " || " + _names_of(_INDEX_KEYS, "i.indrelid") + " || ')' FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid WHERE i.indexrelid = {}), 'missing')"
        ).format(rel), wanted)
        if index.unique and not index.partial:
            self.unique_behaviour(index.table, index.columns, index.line, index.key[1])

    def enum(self, state: expect.Enum) -> None:
        name = _shown(state.key)
        regtype = sql.SQL("to_regtype({})").format(sql.Literal(regclass_text(_ref(state.key))))
        if state.dropped:
            self.block(f"Type {name} is dropped", state.line, sql.SQL(
                "SELECT CASE WHEN {} IS NULL THEN 'absent' ELSE 'present' END").format(regtype), "absent")
            return
        if state.labels is not None:
            self.block(f"Enum {name} has the values {', '.join(state.labels)}", state.line, sql.SQL(
                "SELECT coalesce((SELECT string_agg(enumlabel, ', ' ORDER BY enumsortorder) FROM pg_enum"
                " WHERE enumtypid = {}), 'missing')").format(regtype), ", ".join(state.labels))
            return
        for label, wanted in [(v, "present") for v in state.added] + [(v, "absent") for v in state.removed]:
            self.block(f"Enum {name} {'has' if wanted == 'present' else 'no longer has'} the value {label}", state.line,
                       sql.SQL("SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_enum WHERE enumtypid = {} AND enumlabel = {})"
                               " THEN 'present' ELSE 'absent' END").format(regtype, sql.Literal(label)), wanted)

    def extension(self, name: str, line: int, installed: bool) -> None:
        wanted = "installed" if installed else "not installed"
        self.block(f"Extension {name} is {wanted}", line, sql.SQL(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_extension WHERE extname = {}) THEN 'installed'"
            " ELSE 'not installed' END").format(sql.Literal(name)), wanted)


def derive(conn: psycopg.Connection, sql_text: str, *, filename: str = "migration.sql",
           later: expect.Touched | None = None) -> Derivation:
    """The derived tests of `sql_text`, built against `conn` (run them only in a transaction that is rolled back).

    Building reads the catalog (types as format_type spells them, rows for behaviour tests) and probes
    written defaults on a temporary table inside a savepoint; it changes nothing that outlives the caller's
    transaction.
    """
    schema = conn.execute("SELECT current_schema()").fetchone()[0] or "public"
    expected = expect.read(sql_text, filename=filename, default_schema=schema)
    left = 0
    if later is not None:
        expected, left = expect.superseded(expected, later)
    builder = _Builder(conn, expected)
    for extension, (line, installed) in expected.extensions.items():
        builder.extension(extension, line, installed)
    for state in expected.enums.values():
        builder.enum(state)
    for state in expected.tables.values():
        builder.table(state)
    for con in expected.constraints:
        builder.constraint(con)
    for index in expected.indexes.values():
        builder.index(index)
    builder.out.notes = [f"{expected.filename} line {s.line}: {s.kind} skipped, {s.reason}" for s in expected.skipped] \
        + builder.out.notes
    if left:
        builder.out.notes.append(f"{left} expectation(s) left to later applied migrations, which change the same "
                                 "objects again and are checked there")
    return builder.out


_TOUCHED: dict[tuple[str, str], expect.Touched] = {}  # (migration.sql, its version) -> what it changes


def _file_key(path) -> tuple[str, str]:
    """The file and its version, without reading it."""
    stat = path.stat()
    return str(path), f"{stat.st_mtime_ns}:{stat.st_size}"


def touched_by(batches: list[Batch]) -> expect.Touched:
    """Everything `batches` (later applied migrations) change, each file read once per version per process."""
    total = expect.Touched()
    for batch in batches:
        key = _file_key(batch.migration_path)
        if key not in _TOUCHED:
            try:
                _TOUCHED[key] = expect.touched(expect.read(batch.migration_sql))
            except RunbookError:  # a later file that does not parse supersedes nothing; its own run says why
                _TOUCHED[key] = expect.Touched()
        total = _TOUCHED[key] | total
    return total
