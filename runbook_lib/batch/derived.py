"""Tests derived from the migration's own statements: what it says must now be in the catalog, and enforced.

runbook_lib.sql.expect reads migration.sql into the final expected state of each object; this module
turns that state into SqlBlocks, the same kind of test as the declared [checks] and validation.sql, so
they run through the same runner, record and summary. Each catalog test returns one readable value
('NOT NULL', 'valid unique index on Lead (email)', 'A, B, C') that must equal what the migration says,
so a failure shows both. Behaviour tests (NULL rejected, a valid row accepted, duplicate rejected, delete
of a referenced parent rejected) run on rows runbook_lib.batch.rowbuilder builds from the catalog to
satisfy every other constraint of the table (other unique keys, CHECKs it can read, new parent rows where
needed), so that only the constraint under test can refuse them. A derived test must never fail for a
reason the migration did not state: a behaviour block is marked `built`, so a refusal by anything else (a
trigger, a CHECK of a form the builder cannot read, a partitioned table with no partition for the row) is
reported not run with the server's message; a row that cannot be built at all (a type it cannot make
up, a cycle of required foreign keys) is a block reported not run with the reason. A note is left only for
a test that does not apply (a DEFERRABLE key, a narrower unique index that would refuse a duplicate first).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from runbook_lib.batch import declared, tableshape
from runbook_lib.batch.blocks import DERIVED_SOURCE, Expectation, SqlBlock, behaviour_key, merged
from runbook_lib.batch.model import Batch, ForeignKeyCheck, TableRef, UniqueCheck
from runbook_lib.batch.rowbuilder import RowBuilder
from runbook_lib.batch.tableshape import regclass_text
from runbook_lib.errors import CannotBuild, RunbookError
from runbook_lib.sql import expect
from runbook_lib.sql.expect import Table

ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
_ACTION_SQL = (
    "CASE {} WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE'"
    " WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' END"
)


@dataclass
class Derivation:
    """The derived tests of one migration, and what was not turned into a test (and why)."""

    blocks: list[SqlBlock] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _built(found: sql.Composable | CannotBuild) -> sql.Composable:
    """A statement the row builder made, or the reason it could not (raised, as the builder would)."""
    if isinstance(found, CannotBuild):
        raise found
    return found


def _ref(key: Table) -> TableRef:
    return TableRef(key[1], key[0])


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
    return (
        f"ARRAY(SELECT coalesce(a.attname::text, 'expression') FROM unnest({array}::int2[])"
        f" WITH ORDINALITY k(num, ord) LEFT JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = k.num"
        " ORDER BY k.ord)"
    )


def _names_of(array: str, rel: str) -> str:
    """The same names as one text: 'a, b'."""
    return f"array_to_string({_name_array(array, rel)}, ', ')"


# The key columns of index `i` (pg_index): indkey without the INCLUDE columns, as int2[] (0-based).
_INDEX_KEYS = "(i.indkey::int2[])[0:i.indnkeyatts - 1]"


class _Builder:
    def __init__(self, conn: psycopg.Connection, expected: expect.Expected, home: str = "public") -> None:
        self.conn, self.expected, self.home = conn, expected, home  # home: the current schema
        self.rows = RowBuilder(conn)
        self.out = Derivation()

    # -- blocks ---------------------------------------------------------------------------------

    def block(
        self, what: str, line: int, stmt: sql.Composable | str, value: str | Expectation, behaviour: tuple = ()
    ) -> SqlBlock:
        """`behaviour`: the key of what the test proves (blocks.behaviour_key), as a declared test of the same
        behaviour has it: the two are merged into one (`merge`)."""
        where = f"{self.expected.filename} line {line}"
        expectation = value if isinstance(value, Expectation) else Expectation("value", value)
        text = stmt if isinstance(stmt, str) else stmt.as_string(self.conn)
        # a catalog test reads one value: asked with the others in one query (blocks.run_all)
        found = SqlBlock(
            f"{what} (derived: {where})",
            text,
            expectation,
            DERIVED_SOURCE + where,
            line,
            batchable=expectation.kind == "value",
            behaviour=behaviour,
        )
        self.out.blocks.append(found)
        return found

    def adopt(self, declared_block: SqlBlock, what: str, line: int) -> None:
        """A behaviour test built by runbook_lib.batch.declared, renamed and marked as derived (not run, with the
        reason, when its row could not be built)."""
        where = f"{self.expected.filename} line {line}"
        self.out.blocks.append(
            dataclasses.replace(
                declared_block, name=f"{what} (derived: {where})", source=DERIVED_SOURCE + where, line=line
            )
        )

    def behaviour(
        self,
        what: str,
        line: int,
        build: Callable[[], sql.Composable],
        expectation: Expectation,
        *,
        keys_made_up_on: str = "",
        key: tuple = (),
        unbuilt: str = "cannot build the row",
    ) -> None:
        """A test on rows runbook builds (`built`: refused for another reason, it is not run); one whose row cannot
        be built is there too, reported not run with the reason (after `unbuilt`). `keys_made_up_on`: SqlBlock's;
        `key`: its behaviour key."""
        try:
            found = self.block(what, line, build(), expectation, key)
            reason = ""
        except CannotBuild as exc:
            reason = f"{unbuilt}: {exc}"
            found = self.block(what, line, f"-- not run: {reason}", expectation, key)
        self.out.blocks[-1] = dataclasses.replace(
            found, built=True, not_runnable=reason, keys_made_up_on=keys_made_up_on, batchable=False
        )

    # -- kinds ----------------------------------------------------------------------------------

    def table(self, state: expect.TableState) -> None:
        key, name = state.key, expect.shown(state.key)
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
        try:  # one row for all of them, each with its own column NULL
            inserts = self.rows.null_inserts(_ref(key), [c.name for c in not_null])
        except CannotBuild as exc:
            inserts = {c.name: exc for c in not_null}
        for column in not_null:
            refused = Expectation("error", "23502", column=column.name)
            self.behaviour(
                f"{name} without {column.name} rejected",
                column.line,
                functools.partial(_built, inserts[column.name]),
                refused,
                keys_made_up_on=key[1],
                key=behaviour_key("INSERT without", key, (column.name,), str(refused)),
            )
        if not_null:
            # Every keyed column of the row is new (keyed foreign keys take new parent rows): it can be accepted.
            self.behaviour(
                f"A valid {name} row accepted",
                not_null[0].line,
                lambda: self.rows.insert(_ref(key)),
                Expectation("ok"),
                key=behaviour_key("valid row", key, (), "ok"),
            )

    def column(self, key: Table, column: expect.Column) -> None:
        label = f"{expect.shown(key)}.{column.name}"
        if column.dropped:
            self.block(f"{label} is dropped", column.line, _attribute(key, column.name, "'present'"), "missing")
            return
        if column.type is not None:
            try:
                canonical = declared.canonical_type(self.conn, column.type)
                self.block(
                    f"{label} is {canonical}",
                    column.line,
                    _attribute(key, column.name, "format_type(a.atttypid, a.atttypmod)"),
                    canonical,
                    behaviour_key("type", key, (column.name,), canonical),
                )
            except CannotBuild as exc:
                self.out.notes.append(f"{label}: type not compared ({exc})")
                self.block(f"{label} exists", column.line, _attribute(key, column.name, "'present'"), "present")
        if column.not_null is not None:
            wanted = "NOT NULL" if column.not_null else "nullable"
            self.block(
                f"{label} is {wanted}",
                column.line,
                _attribute(key, column.name, "CASE WHEN a.attnotnull THEN 'NOT NULL' ELSE 'nullable' END"),
                wanted,
                behaviour_key("not null", key, (column.name,), wanted) if column.not_null else (),
            )
        if column.has_default is None:
            return
        if not column.has_default:
            self.block(
                f"{label} has no default",
                column.line,
                _attribute(
                    key,
                    column.name,
                    "CASE WHEN a.atthasdef OR a.attidentity <> '' THEN 'a default' ELSE 'no default' END",
                ),
                "no default",
            )
            return
        spelled = self.default_as_server_spells_it(key, column) if column.default_sql else None
        if spelled is not None:
            self.block(
                f"{label} defaults to {spelled}",
                column.line,
                _attribute(
                    key,
                    column.name,
                    "CASE WHEN d.adbin IS NULL THEN 'no default' ELSE pg_get_expr(d.adbin, d.adrelid) END",
                ),
                spelled,
            )
        else:
            self.block(
                f"{label} has a default",
                column.line,
                _attribute(
                    key,
                    column.name,
                    "CASE WHEN a.atthasdef OR a.attidentity <> '' THEN 'a default' ELSE 'no default' END",
                ),
                "a default",
            )

    def default_as_server_spells_it(self, key: Table, column: expect.Column) -> str | None:
        """pg_get_expr of the written default on a scratch column of the same type (rolled back), or None."""
        default_sql = column.default_sql
        if default_sql is None:  # no written default to spell (the caller asks only when there is one)
            return None
        type_text = self.conn.execute(
            sql.SQL(
                "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
                " WHERE a.attrelid = {} AND a.attname = {} AND a.attnum > 0 AND NOT a.attisdropped"
            ).format(_relation(key), sql.Literal(column.name))
        ).fetchone()
        if type_text is None:
            return None
        cache = (*tableshape.database_key(self.conn), type_text[0], default_sql)
        if cache not in _SPELLED:
            _SPELLED[cache] = self._probe_default(type_text[0], default_sql)
        return _SPELLED[cache]

    def _probe_default(self, type_text: str, default_sql: str) -> str | None:
        try:
            with self.conn.transaction():
                # The migration's own expression (already run by apply), on a temporary table inside a savepoint.
                self.conn.execute(
                    sql.SQL("CREATE TEMPORARY TABLE runbook_default_probe (c {} DEFAULT {})").format(
                        sql.SQL(type_text), sql.SQL(default_sql)
                    )
                )
                found = self.conn.execute(
                    "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d"
                    " WHERE d.adrelid = 'pg_temp.runbook_default_probe'::regclass"
                ).fetchone()
                spelled = found[0] if found else None  # a default the server does not keep (NULL)
                raise psycopg.Rollback()
        except psycopg.Error:
            return None
        return spelled

    def constraint(self, con: expect.Constraint) -> None:
        key, name = con.table, expect.shown(con.table)
        cols = ", ".join(con.columns)
        if con.dropped:
            if con.name:
                self.block(
                    f"Constraint {con.name} on {name} is dropped",
                    con.line,
                    sql.SQL(
                        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {} AND conname = {})"
                        " THEN 'present' ELSE 'absent' END"
                    ).format(_relation(key), sql.Literal(con.name)),
                    "absent",
                )
            return
        by_name = sql.SQL(" AND c.conname = {}").format(sql.Literal(con.name)) if con.name else sql.SQL("")
        if con.kind == "?":
            self.block(
                f"Constraint {con.name} on {name} exists",
                con.line,
                sql.SQL(
                    "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = {}{})"
                    " THEN 'present' ELSE 'absent' END"
                ).format(_relation(key), by_name),
                "present",
            )
        if con.kind == "p":
            self.block(
                f"{name} has PRIMARY KEY ({cols})",
                con.line,
                sql.SQL(
                    "SELECT coalesce((SELECT " + _names_of("c.conkey", "c.conrelid") + " FROM pg_constraint c"
                    " WHERE c.conrelid = {} AND c.contype = 'p'), 'missing')"
                ).format(_relation(key)),
                cols,
            )
        elif con.kind == "u":
            check = UniqueCheck(_ref(key), con.columns)
            self.block(
                f"{name} ({cols}) is UNIQUE",
                con.line,
                sql.SQL("SELECT CASE WHEN EXISTS ({}) THEN 'unique' ELSE 'missing' END").format(
                    declared._unique_index_sql(check, "1")
                ),
                "unique",
                behaviour_key("unique", key, tuple(sorted(con.columns)), "present"),
            )
            self.unique_behaviour(key, con.columns, con.line, con.name)
        elif con.kind == "f":
            self.foreign_key(con, by_name)
        elif con.kind == "c":
            wanted = "validated" if con.validated else "not validated"
            what = f"{name} has CHECK {con.name}" if con.name else f"{name} has a CHECK on ({cols})"
            on_columns = (
                sql.SQL("")
                if con.name
                else sql.SQL(
                    " AND {}::text[] <@ ARRAY(SELECT a.attname::text FROM pg_attribute a"
                    " WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey))"
                ).format(sql.Literal(list(con.columns)))
            )
            self.block(
                f"{what}, {wanted}",
                con.line,
                sql.SQL(
                    "SELECT coalesce((SELECT CASE WHEN bool_and(c.convalidated) THEN 'validated' ELSE 'not validated'"
                    " END FROM pg_constraint c WHERE c.conrelid = {rel} AND c.contype = 'c'{name}{cols}"
                    " HAVING count(*) > 0), 'missing')"
                ).format(rel=_relation(key), name=by_name, cols=on_columns),
                wanted,
                behaviour_key("check", key, (con.name,), wanted) if con.name else (),
            )

    def foreign_key(self, con: expect.Constraint, by_name: sql.Composable) -> None:
        key, parent = con.table, con.references
        assert parent is not None  # a FOREIGN KEY (kind "f") always names the table it references (sql.expect)
        ref_cols = con.ref_columns
        wanted = (
            f"({', '.join(con.columns)}) REFERENCES {parent[1]}"
            + (f" ({', '.join(ref_cols)})" if ref_cols else "")
            + f" ON DELETE {ACTIONS[con.on_delete]} ON UPDATE {ACTIONS[con.on_update]}"
        )
        shown_refs = "' (' || " + _names_of("c.confkey", "c.confrelid") + " || ')'" if ref_cols else "''"
        described = (
            "'(' || "
            + _names_of("c.conkey", "c.conrelid")
            + " || ') REFERENCES ' || p.relname || "
            + shown_refs
            + " || ' ON DELETE ' || "
            + _ACTION_SQL.format("c.confdeltype")
            + " || ' ON UPDATE ' || "
            + _ACTION_SQL.format("c.confupdtype")
        )
        on_columns = (
            sql.SQL("")
            if con.name
            else sql.SQL(" AND {} = {}").format(
                sql.SQL(_names_of("c.conkey", "c.conrelid")), sql.Literal(", ".join(con.columns))
            )
        )
        what = f"{expect.shown(key)} FOREIGN KEY {con.name + ' ' if con.name else ''}{wanted}"
        self.block(
            what,
            con.line,
            sql.SQL(
                "SELECT coalesce((SELECT string_agg(" + described + ", '; ') FROM pg_constraint c"
                " JOIN pg_class p ON p.oid = c.confrelid"
                " WHERE c.conrelid = {rel} AND c.contype = 'f'{name}{cols}), 'missing')"
            ).format(rel=_relation(key), name=by_name, cols=on_columns),
            wanted,
            declared.foreign_key_key(
                "foreign key", key, tuple(con.columns), f"ON DELETE {ACTIONS[con.on_delete]}", parent, tuple(ref_cols)
            ),
        )
        if len(con.columns) == 1 and len(ref_cols) == 1:
            self.reassign(con)
        if con.on_delete not in "ra" or len(con.columns) != 1 or len(ref_cols) != 1 or not con.validated:
            return
        if con.deferrable:
            self.out.notes.append(f"{what}: not tested by behaviour, a DEFERRABLE key is checked at commit only")
            return
        check = ForeignKeyCheck(
            _ref(key).column(con.columns[0]),
            _ref(parent).column(ref_cols[0]),
            "restrict" if con.on_delete == "r" else "no action",
        )
        found = declared._foreign_key(self.conn, self.rows, check, writes=True, home=self.home)
        if len(found) == 3:
            block = found[2].block
            if con.name:  # the constraint that must refuse the delete is the one the migration named
                block = dataclasses.replace(block, expect=dataclasses.replace(block.expect, constraint=con.name))
            self.adopt(
                block, f"Delete of a {parent[1]} referenced by {expect.shown(key)}.{con.columns[0]} rejected", con.line
            )

    def reassign(self, con: expect.Constraint) -> None:
        """An existing child row moved to another existing parent row is accepted: the key refuses what has no
        parent, not a change of parent (the reference's "update customer_id to a DIFFERENT customer: SUCCESS").
        The rows it needs (a child, a second parent) are made up when the tables lack them; not run, with the
        reason, only when they cannot be built."""
        key, parent = con.table, con.references
        assert parent is not None  # only foreign_key() asks, for a FOREIGN KEY: it names the table it references
        column, parent_column = con.columns[0], con.ref_columns[0]
        self.behaviour(
            f"UPDATE of {expect.shown(key)}.{column} to a different existing {parent[1]} accepted",
            con.line,
            lambda: self.rows.reassign(_ref(key), column, _ref(parent), parent_column),
            Expectation("ok"),
            key=declared.foreign_key_key("reassign", key, (column,), "ok", parent, (parent_column,)),
            unbuilt="no rows to move between parents",
        )

    def unique_behaviour(self, key: Table, columns: tuple, line: int, own: str | None = None) -> None:
        """`own`: the name of the constraint or index under test, so another one on the same columns is seen."""
        if any(c is None for c in columns):
            return
        # Another unique index on some of these columns (or on the same ones, under another name: a primary key a
        # later migration added) would refuse the duplicate first: no behaviour test then.
        row = self.conn.execute(
            sql.SQL(
                "SELECT string_agg(c.relname, ', ') FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = {rel} AND i.indisunique AND i.indpred IS NULL"
                " AND " + _name_array(_INDEX_KEYS, "i.indrelid") + " <@ {cols}::text[]"
                " AND (NOT " + _name_array(_INDEX_KEYS, "i.indrelid") + " @> {cols}::text[]"
                " OR (c.relname <> {own} AND {own} <> ''))"
            ).format(rel=_relation(key), cols=sql.Literal(list(columns)), own=sql.Literal(own or ""))
        ).fetchone()
        assert row is not None  # an aggregate without GROUP BY returns one row
        narrower = row[0]
        if narrower:
            self.out.notes.append(
                f"Duplicate {expect.shown(key)} ({', '.join(columns)}): not tested by behaviour, "
                f"unique index {narrower} on fewer of its columns would refuse it first"
            )
            return
        found = declared._unique(
            self.conn, self.rows, UniqueCheck(_ref(key), tuple(columns)), writes=True, home=self.home
        )
        if len(found) == 2:
            self.adopt(found[1].block, f"Duplicate {expect.shown(key)} ({', '.join(columns)}) rejected", line)

    def index(self, index: expect.Index) -> None:
        name = expect.shown(index.key)
        rel = sql.SQL("to_regclass({})").format(sql.Literal(regclass_text(_ref(index.key))))
        if index.dropped:
            self.block(
                f"Index {name} is dropped",
                index.line,
                sql.SQL("SELECT CASE WHEN {} IS NULL THEN 'absent' ELSE 'present' END").format(rel),
                "absent",
            )
            return
        if index.table is None:
            self.block(
                f"Index {name} exists",
                index.line,
                sql.SQL("SELECT CASE WHEN {} IS NULL THEN 'absent' ELSE 'present' END").format(rel),
                "present",
            )
            return
        cols = ", ".join(c or "expression" for c in index.columns)
        wanted = f"valid{' unique' if index.unique else ''} index on {index.table[1]} ({cols})"
        # a plain index on columns proves what a declared [checks] index on the same columns does
        plain = not index.unique and not index.partial and all(index.columns)
        self.block(
            f"Index {name} is a {wanted}",
            index.line,
            sql.SQL(
                "SELECT coalesce((SELECT CASE WHEN i.indisvalid AND i.indisready THEN 'valid' ELSE 'invalid' END"
                " || CASE WHEN i.indisunique THEN ' unique' ELSE '' END || ' index on ' || t.relname || ' ('"
                " || "
                + _names_of(_INDEX_KEYS, "i.indrelid")
                + " || ')' FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid WHERE i.indexrelid = {}), 'missing')"
            ).format(rel),
            wanted,
            # `plain`: every column is named (no expression), so the filter keeps them all
            behaviour_key("index", index.table, tuple(c for c in index.columns if c is not None), "valid")
            if plain
            else (),
        )
        if index.unique and not index.partial:
            self.unique_behaviour(index.table, index.columns, index.line, index.key[1])

    def enum(self, state: expect.Enum) -> None:
        name = expect.shown(state.key)
        regtype = sql.SQL("to_regtype({})").format(sql.Literal(regclass_text(_ref(state.key))))
        if state.dropped:
            self.block(
                f"Type {name} is dropped",
                state.line,
                sql.SQL("SELECT CASE WHEN {} IS NULL THEN 'absent' ELSE 'present' END").format(regtype),
                "absent",
            )
            return
        if state.labels is not None:
            self.block(
                f"Enum {name} has the values {', '.join(state.labels)}",
                state.line,
                sql.SQL(
                    "SELECT coalesce((SELECT string_agg(enumlabel, ', ' ORDER BY enumsortorder) FROM pg_enum"
                    " WHERE enumtypid = {}), 'missing')"
                ).format(regtype),
                ", ".join(state.labels),
            )
            return
        for label, wanted in [(v, "present") for v in state.added] + [(v, "absent") for v in state.removed]:
            self.block(
                f"Enum {name} {'has' if wanted == 'present' else 'no longer has'} the value {label}",
                state.line,
                sql.SQL(
                    "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_enum WHERE enumtypid = {} AND enumlabel = {})"
                    " THEN 'present' ELSE 'absent' END"
                ).format(regtype, sql.Literal(label)),
                wanted,
            )

    def extension(self, name: str, line: int, installed: bool) -> None:
        wanted = "installed" if installed else "not installed"
        self.block(
            f"Extension {name} is {wanted}",
            line,
            sql.SQL(
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_extension WHERE extname = {}) THEN 'installed'"
                " ELSE 'not installed' END"
            ).format(sql.Literal(name)),
            wanted,
        )


def merge(
    declared_blocks: list[SqlBlock], derived_blocks: list[SqlBlock], written: Sequence[SqlBlock] = ()
) -> tuple[list[SqlBlock], list[SqlBlock], list[SqlBlock]]:
    """The declared tests with the derived tests that prove the same behaviour merged into them, the derived
    tests left (each a behaviour of its own), and the blocks of validation.sql (`written`), in that order: one
    behaviour, one test.

    "The same behaviour" is the `behaviour` key both sides give a test (blocks.behaviour_key: the kind of constraint
    or behaviour, the table, the columns, the expected outcome, and for a foreign key its parent): the declared
    "Lead.customer_id is NOT NULL in the schema" and the derived "Lead.customer_id is NOT NULL (derived:
    migration.sql line 15)" are one test, recorded with `also_from` = migration.sql line 15; when the two ask
    different SQL both run, and it fails if either would. A derived test that asks the very statement a declared
    test or a block of validation.sql (`written`) asks, with the same expectation, is merged into it the same way.
    A derived test with another key (another column, another outcome) stays a test of its own."""
    kept, left = merged(derived_blocks, list(declared_blocks) + list(written))
    return kept[: len(declared_blocks)], left, kept[len(declared_blocks) :]


def derive(
    conn: psycopg.Connection,
    sql_text: str,
    *,
    filename: str = "migration.sql",
    later: expect.Touched | None = None,
    earlier: Sequence[Batch] = (),
    schema: str | None = None,
) -> Derivation:
    """The derived tests of `sql_text`, built against `conn` (run them only in a transaction that is rolled back).

    `later`: what later applied migrations change (their expectations win); `earlier`: the migrations before
    this one, in order, which say what an object this one renames but did not create is built on.
    Building reads the catalog (types as format_type spells them, rows for behaviour tests) and probes
    written defaults on a temporary table inside a savepoint; it changes nothing that outlives the caller's
    transaction. `schema`: the current schema, when the caller asked already (else asked here).
    """
    if schema is None:
        row = conn.execute("SELECT current_schema()").fetchone()
        assert row is not None  # a SELECT without FROM returns one row
        schema = row[0] or "public"
    expected = expect.read(sql_text, filename=filename, default_schema=schema)
    if earlier:
        expected = expect.resolve(expected, (expected_of(b) for b in reversed(earlier)))
    left: list[expect.Left] = []
    if later is not None:
        expected, left = expect.superseded(expected, later)
    builder = _Builder(conn, expected, schema)
    for extension, (line, installed) in expected.extensions.items():
        builder.extension(extension, line, installed)
    for enum_state in expected.enums.values():
        builder.enum(enum_state)
    for state in expected.tables.values():
        builder.table(state)
    for con in expected.constraints:
        builder.constraint(con)
    for index in expected.indexes.values():
        builder.index(index)
    builder.out.notes = [
        f"{expected.filename} line {s.line}: {s.kind} skipped, {s.reason}" for s in expected.skipped
    ] + builder.out.notes
    if left:
        builder.out.notes.append(
            f"{len(left)} expectation(s) left to later applied migrations, which change the "
            "same objects again and are checked there: " + "; ".join(str(x) for x in left)
        )
    return builder.out


_TOUCHED: dict[tuple[str, str], expect.Touched] = {}  # (migration.sql, its version) -> what it changes
# (database, column type, written default) -> the server's spelling of it: the same few defaults (now(), 0, '')
# come back hundreds of times in a release, each probe a temporary table
_SPELLED: dict[tuple, str | None] = {}
_EXPECTED: dict[tuple[str, str], expect.Expected] = {}  # (migration.sql, its version) -> the state it leaves


def _file_key(path: Path) -> tuple[str, str]:
    """The file and its version, without reading it."""
    stat = path.stat()
    return str(path), f"{stat.st_mtime_ns}:{stat.st_size}"


def migration_label(batch: Batch) -> str:
    """How a note names a migration: its number and its folder's name (a release's are hundreds long)."""
    return f"{batch.number} ({batch.name})" if batch.name and batch.name != str(batch.number) else str(batch.number)


def expected_of(batch: Batch) -> expect.Expected:
    """What `batch`'s migration.sql leaves, read once per file version per process (never changed by callers).

    A file that does not parse expects nothing here; its own run says why."""
    key = _file_key(batch.migration_path)
    if key not in _EXPECTED:
        try:
            _EXPECTED[key] = expect.read(batch.migration_sql)
        except RunbookError:
            _EXPECTED[key] = expect.Expected(batch.migration_path.name)
    return _EXPECTED[key]


def touched_after(batches: list[Batch]) -> dict[int, expect.Touched]:
    """For each of `batches` (applied, in order), what the ones after it change again: built from the last back."""
    after: dict[int, expect.Touched] = {}
    total = expect.Touched()
    for batch in reversed(batches):
        after[batch.number] = total
        total = touched_by([batch]) | total
    return after


def touched_by(batches: list[Batch]) -> expect.Touched:
    """Everything `batches` (later applied migrations) change, each file read once per version per process."""
    total = expect.Touched()
    for batch in batches:
        key = _file_key(batch.migration_path)
        if key not in _TOUCHED:
            _TOUCHED[key] = expect.touched(expected_of(batch), migration_label(batch))
        total = _TOUCHED[key] | total
    return total
