"""Rows for behaviour tests, built from the catalog: what an INSERT needs to reach the constraint under test.

A test such as "an INSERT with customer_id NULL is rejected" only proves something if every other
column is acceptable, so that the NOT NULL of customer_id is what refuses the row: the row must satisfy
every *other* constraint of the table. The builder reads the table from pg_catalog (columns, foreign
keys, every unique index and exclusion constraint, the CHECK constraints: runbook_lib.batch.tableshape)
and fills a row the way an application would:

- a nullable column, an identity, a generated column (never given a value) and a column with a default
  are left to the server; but a column with a default that sits in a unique, primary-key or exclusion
  key gets a value of its own (a DEFAULT '' slug would repeat), unless the server makes its default
  new each time (gen_random_uuid); a nullable one of those is given NULL, new to any key; a keyed
  identity or serial column gets max + n too, since a sequence can lag behind rows inserted with
  their own values (an identity ALWAYS with OVERRIDING SYSTEM VALUE);
- a column of any such key ("keyed") gets a value no row has yet, per row of the statement, so the
  n-th row made up for a table differs from the others and from the rows already there;
- a foreign key column takes an existing parent row's key (a sub-select, every column of a composite
  key from the same row), unless it is keyed, the parent table has no rows (a deploy from empty) or
  the key shares a column with a wider key already served (the new parent then takes that value):
  then a new parent row is inserted first, built by the same rules, recursively, in the same
  statement (a data-modifying CTE, WITH runbook_parent_1 AS (INSERT ... RETURNING ...): the foreign
  key checks of the outer INSERT run at its end and see it). A chain of new parents that comes back
  to a table it is building (a cycle of required foreign keys) cannot be inserted and raises
  CannotBuild naming the cycle; a nullable key in the cycle breaks it (left NULL);
- any other required column gets a value made up from its type, within what its CHECK constraints say
  (runbook_lib.batch.checkrules: allowed values, numeric bounds, length limits): a unique
  'runbook-test-...' string for text, a constant for numbers (max + n for keyed ones), true,
  now() + offset for times (the offset grows with the column's position, so the usual
  CHECK (ends_at > starts_at) holds, and with the row number), gen_random_uuid(), '{}' for json and
  arrays, an enum's first label.

A row that cannot be built (a type it cannot make up, a cycle, no such table) raises CannotBuild with
one sentence naming the column and why; the test is reported not run, with that sentence. A row the
server still refuses for another reason (a CHECK of a form not read, a trigger) is runbook's own
statement failing: the test is reported not run, with the server's message (runbook_lib.batch.blocks).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg
from psycopg import sql

from runbook_lib.batch import tableshape
from runbook_lib.batch.blocks import do_block
from runbook_lib.batch.checkrules import ColumnRule
from runbook_lib.batch.model import TableRef
from runbook_lib.batch.tableshape import Column, ForeignKey, TableShape
from runbook_lib.errors import CannotBuild

_STRINGS = {"text", "varchar", "bpchar", "name", "citext"}
_INTEGERS = {"int2", "int4", "int8"}
_NUMBERS = {"numeric", "float4", "float8", "money"}
_CONSTANTS = {
    "bool": sql.SQL("true"),
    "uuid": sql.SQL("gen_random_uuid()"),
    "json": sql.SQL("'{}'"),
    "jsonb": sql.SQL("'{}'"),
    "bytea": sql.SQL("'\\x'"),
    "time": sql.SQL("localtime"),
    "timetz": sql.SQL("current_time"),
    "interval": sql.SQL("interval '1 hour'"),
    "inet": sql.SQL("'192.0.2.1'"),
    "cidr": sql.SQL("'192.0.2.0/24'"),
    "tsvector": sql.SQL("''"),
}
_TIMES = {"timestamp", "timestamptz"}
_NULL = sql.SQL("NULL")
# A keyed integer whose CHECK bounds it on both sides within this many values takes the n-th one free.
_SMALL_RANGE = 100_000


@dataclass
class RowBuilder:
    """Builds INSERT statements for tables of one database; shapes are read once per builder."""

    conn: psycopg.Connection
    _shapes: dict[TableRef, TableShape] = field(default_factory=dict)
    _has_rows: dict[TableRef, bool] = field(default_factory=dict)

    def shape(self, ref: TableRef) -> TableShape:
        if ref not in self._shapes:
            self._shapes[ref] = tableshape.current(self.conn, ref)
        return self._shapes[ref]

    def has_rows(self, ref: TableRef) -> bool:
        if ref not in self._has_rows:
            stmt = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(self.shape(ref).identifier)
            row = self.conn.execute(stmt).fetchone()
            assert row is not None  # SELECT EXISTS (...) returns one row
            self._has_rows[ref] = bool(row[0])
        return self._has_rows[ref]

    # -- statements -----------------------------------------------------------------------------

    def insert(
        self,
        ref: TableRef,
        given: dict[str, sql.Composable] | None = None,
        *,
        include: tuple[str, ...] = (),
        rows: int = 1,
        returning: str | None = None,
        make_up_keys: bool = False,
    ) -> sql.Composed:
        """INSERT of `rows` acceptable rows, with the `given` values (e.g. {"customer_id": NULL}), and a value
        for each column of `include`; the new parent rows it needs first are CTEs of the same statement.

        `make_up_keys`: for a statement the constraint under test refuses as each row goes in (NOT NULL, a
        unique key), a foreign key that would need a new parent row (keyed here, or no parent to point at) gets
        made-up values instead: PostgreSQL checks foreign keys only at the end of the statement, after every row
        went in, so they never decide such a test, and a foreign-key error on this table then proves the rows went
        in (SqlBlock.keys_made_up_on). Other foreign keys still take an existing parent's key, as a reader expects."""
        stmt = _Statement(make_up_keys=make_up_keys)
        body = self._insert(stmt, ref, dict(given or {}), include, rows)
        if returning:
            body += sql.SQL(" RETURNING {}").format(sql.Identifier(returning))
        return stmt.composed(body)

    def null_inserts(self, ref: TableRef, names: list[str]) -> dict[str, sql.Composed | CannotBuild]:
        """For each of `names`, an INSERT of one row with that column NULL (refused as it goes in: `make_up_keys`);
        the row is built once for all of them, the same but for the column that is NULL. A column that cannot be
        given NULL (a generated one), or a row that cannot be built, maps to its CannotBuild."""
        shape = self.shape(ref)
        found: dict[str, sql.Composed | CannotBuild] = {}
        given = []
        for name in names:
            try:
                self._named(shape, name)
                given.append(name)
            except CannotBuild as exc:
                found[name] = exc
        if not given:
            return found
        stmt = _Statement(make_up_keys=True)
        try:
            columns, _ = self._chosen(shape, {}, tuple(given))
            values = self._row(stmt, shape, columns, {}, stmt.next_n(ref))
        except CannotBuild as exc:
            return found | {name: exc for name in given}
        for name in given:
            row = [_NULL if c.name == name else v for c, v in zip(columns, values, strict=True)]
            found[name] = stmt.composed(_insert_sql(shape, columns, [row]))
        return found

    def duplicate(self, ref: TableRef, columns: tuple[str, ...], *, make_up_keys: bool = False) -> sql.Composed:
        """INSERT of two new rows that share one value for each of `columns` (computed once, in a MATERIALIZED
        CTE) and differ in every other keyed column: a duplicate that only a unique key on `columns` refuses.
        `make_up_keys` as for `insert` (the second row is refused as it goes in)."""
        stmt = _Statement(make_up_keys=make_up_keys)
        shape = self.shape(ref)
        # A generated column cannot be given a value: the columns it is computed from are shared instead. A
        # foreign key over a shared column is shared whole: both rows point at the same parent row, since a
        # parent with the same key value is that same row (a composite key such as (workspace_id, router_id)).
        names = set(shape.sources(columns))
        grown = True
        while grown:
            grown = False
            for fk in shape.foreign_keys:
                if names & set(fk.columns) and not set(fk.columns) <= names:
                    names |= set(fk.columns)
                    grown = True
        shared = [
            self._named(shape, c.name) for c in shape.columns if c.name in names and not _generated(shape, c.name)
        ]
        values = self._row(stmt, shape, shared, {}, 1)
        # format_type() of the catalog: the server's own spelling of the column's type.
        cte = sql.SQL("runbook_duplicate AS MATERIALIZED (SELECT {})").format(
            sql.SQL(", ").join(
                sql.SQL("CAST({} AS {}) AS {}").format(v, sql.SQL(c.type), sql.Identifier(c.name))
                for c, v in zip(shared, values, strict=True)
            )
        )
        given: dict[str, sql.Composable] = {
            c.name: sql.SQL("(SELECT {} FROM runbook_duplicate)").format(sql.Identifier(c.name)) for c in shared
        }
        return stmt.composed(self._insert(stmt, ref, given, (), 2), [cte])

    def reassign(self, child: TableRef, column: str, parent: TableRef, parent_column: str) -> sql.Composed:
        """UPDATE of one existing `child` row's foreign key `column` to an existing `parent` row other than the one it
        references: a move that only a broken foreign key (or one that points elsewhere) would refuse.

        The child row is one whose key is set (a row with `column` inserted first, taking a parent as `insert`
        gives it, when the table has none); the new parent is the first other one by its key, and one no child row
        references yet when `column` is keyed (unique) in the child. When the parent table has no such row, one is
        made up first, as every test row is: the test is about what the foreign key allows, and an empty or
        one-row parent table (a deploy from empty) must not leave it unproved. CannotBuild when neither row can be
        built."""
        shape, parent_shape = self.shape(child), self.shape(parent)
        self._named(shape, column)
        if parent_shape.column(parent_column) is None:
            raise CannotBuild(f"table {parent} has no column {parent_column}")
        col, pcol = sql.Identifier(column), sql.Identifier(parent_column)
        keyed = column in shape.keyed
        unreferenced = (
            sql.SQL(" AND NOT EXISTS (SELECT 1 FROM {child} runbook_c WHERE runbook_c.{col} = p.{pcol})").format(
                child=shape.identifier, col=col, pcol=pcol
            )
            if keyed
            else sql.SQL("")
        )
        child_row = self.conn.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {} IS NOT NULL)").format(shape.identifier, col)
        ).fetchone()
        assert child_row is not None  # SELECT EXISTS (...) returns one row
        has_child = bool(child_row[0])
        # Enough parents: two (any child row then has one other than its own), or, keyed, one no child references
        # (the row inserted first takes a new parent of its own then, as `insert` builds it).
        enough = (
            sql.SQL("SELECT count(*) >= 2 FROM (SELECT 1 FROM {} LIMIT 2) p").format(parent_shape.identifier)
            if not keyed
            else sql.SQL("SELECT EXISTS (SELECT 1 FROM {parent} p WHERE true{unreferenced})").format(
                parent=parent_shape.identifier, unreferenced=unreferenced
            )
        )
        update = sql.SQL(
            "WITH runbook_child AS MATERIALIZED (SELECT tableoid AS runbook_table, ctid AS runbook_row,"
            " {col} AS runbook_old FROM {child} WHERE {col} IS NOT NULL LIMIT 1)"
            " UPDATE {child} SET {col} = (SELECT p.{pcol} FROM {parent} p"
            " WHERE p.{pcol} <> (SELECT runbook_old FROM runbook_child){unreferenced} ORDER BY p.{pcol} LIMIT 1)"
            " WHERE (tableoid, ctid) = (SELECT runbook_table, runbook_row FROM runbook_child)"
        ).format(child=shape.identifier, col=col, parent=parent_shape.identifier, pcol=pcol, unreferenced=unreferenced)
        first: list[sql.Composable] = []
        if not has_child and shape.ref == parent_shape.ref:
            # a self-reference with no row using it: two rows (the key left NULL, or the row would need itself),
            # then one pointed at another, the move's starting point
            any_row = sql.SQL("(SELECT p.{pcol} FROM {t} p ORDER BY p.{pcol} LIMIT 1)").format(
                pcol=pcol, t=shape.identifier
            )
            first += [
                self.insert(child),
                self.insert(child),
                sql.SQL(
                    "UPDATE {t} SET {col} = {any_row} WHERE ctid = (SELECT ctid FROM {t} WHERE {col} IS NULL"
                    " AND {pcol} <> {any_row} ORDER BY {pcol} DESC LIMIT 1)"
                ).format(t=shape.identifier, col=col, pcol=pcol, any_row=any_row),
            ]
        elif not has_child:  # no row to move: one inserted first, its key from a parent
            first.append(self.insert(child, include=(column,)))
        enough_row = self.conn.execute(enough).fetchone()
        assert enough_row is not None  # SELECT EXISTS (...) or an aggregate: one row
        if not enough_row[0]:  # no other parent to move it to: one made up
            first.append(self.insert(parent, include=(parent_column,)))
        if not first:
            return sql.Composed([update])
        body = sql.SQL("\nBEGIN\n{};\nEND\n").format(sql.SQL(";\n").join([*first, update]))
        return sql.Composed([sql.SQL(do_block(body.as_string(self.conn)))])

    def _insert(
        self, stmt: _Statement, ref: TableRef, given: dict[str, sql.Composable], include: tuple[str, ...], rows: int
    ) -> sql.Composed:
        """The INSERT itself (no WITH): its fresh parents go to `stmt`."""
        shape = self.shape(ref)
        for name in list(given) + list(include):
            self._named(shape, name)
        columns, given = self._chosen(shape, given, include)
        if not columns:
            return sql.SQL("INSERT INTO {table} DEFAULT VALUES").format(table=shape.identifier)
        return _insert_sql(
            shape, columns, [self._row(stmt, shape, columns, given, stmt.next_n(ref)) for _ in range(rows)]
        )

    def _named(self, shape: TableShape, name: str) -> Column:
        column = shape.column(name)
        if column is None:
            raise CannotBuild(f"table {shape.ref} has no column {name}")
        if column.generated:
            raise CannotBuild(f"{shape.ref}.{name} is a generated column: an INSERT cannot give it a value")
        return column

    def _chosen(
        self, shape: TableShape, given: dict[str, sql.Composable], include: tuple[str, ...]
    ) -> tuple[list[Column], dict[str, sql.Composable]]:
        """The columns the INSERT names, and `given` with NULL for a nullable keyed column whose default repeats."""
        given = dict(given)
        chosen = []
        for column in shape.columns:
            if column.name in given or column.name in include:
                chosen.append(column)
            elif column.generated:
                continue
            elif column.identity or (column.has_default and column.from_sequence):
                # A sequence can lag behind rows inserted with their own values (a data import, a seed): a keyed
                # one gets max + n like any keyed integer, an identity ALWAYS with OVERRIDING SYSTEM VALUE.
                if column.name in shape.keyed and self._can_make(shape, column):
                    chosen.append(column)
            elif column.has_default:
                if column.name not in shape.keyed or column.server_makes_fresh:
                    continue
                if not column.not_null and column.name not in shape.strict:
                    given[column.name] = _NULL  # new to any unique key, where the default repeats
                    chosen.append(column)
                elif self._can_make(shape, column):
                    chosen.append(column)
            elif column.not_null or column.name in shape.strict:
                chosen.append(column)
        return chosen, given

    def _can_make(self, shape: TableShape, column: Column) -> bool:
        if any(column.name in fk.columns for fk in shape.foreign_keys):
            return True
        try:
            self.made_up(shape, column, 1)
        except CannotBuild:
            return False
        return True

    # -- rows and parents -----------------------------------------------------------------------

    def _row(
        self, stmt: _Statement, shape: TableShape, columns: list[Column], given: dict[str, sql.Composable], n: int
    ) -> list[sql.Composable]:
        """The values of one row, the n-th `stmt` adds to the table: given, from a parent row, or made up."""
        values = {c.name: given[c.name] for c in columns if c.name in given}
        stmt.building.append(shape.ref)
        try:
            # The widest key first: a column in two keys takes the composite key's parent row, and a key that
            # shares a column with one already served gets a new parent row holding that column's value.
            for fk in sorted(shape.foreign_keys, key=lambda k: -len(k.columns)):
                wanted = [c.name for c in columns if c.name in fk.columns and c.name not in values]
                if not wanted:
                    continue
                fixed = {c: values[c] for c in fk.columns if c in values}
                if stmt.make_up_keys and (fixed or self._needs_new_parent(shape, fk)):
                    continue  # made up below: the statement is refused before foreign keys are checked
                values.update(self._from_parent(stmt, shape, fk, wanted, fixed))
            for column in columns:
                if column.name not in values:
                    values[column.name] = self.made_up(shape, column, n)
        finally:
            stmt.building.pop()
        return [values[c.name] for c in columns]

    def _from_parent(
        self, stmt: _Statement, shape: TableShape, fk: ForeignKey, wanted: list[str], fixed: dict[str, sql.Composable]
    ) -> dict[str, sql.Composable]:
        """`wanted` columns of `fk`, all from one parent row: a new one when the key is keyed here (an existing
        parent's key may be taken already), the parent table is empty, or other columns of the key are `fixed`
        already (the new parent takes their values), else the first existing one. A NULL among `fixed` leaves
        the key unchecked (MATCH SIMPLE): the others are then served as if nothing were fixed."""
        parent_of = dict(zip(fk.columns, fk.parent_columns, strict=True))
        if _NULL in fixed.values():
            fixed = {}
        if fixed or self._needs_new_parent(shape, fk):
            given = {parent_of[c]: value for c, value in fixed.items()}
            name = sql.Identifier(self._new_parent(stmt, shape, fk, given))
            return {c: sql.SQL("(SELECT {} FROM {})").format(sql.Identifier(parent_of[c]), name) for c in wanted}
        # Ordered by the whole key, so every column of a composite key comes from the same parent row.
        order = sql.SQL(", ").join(sql.Identifier(c) for c in fk.parent_columns)
        parent = self.shape(fk.parent).identifier
        return {
            c: sql.SQL("(SELECT {col} FROM {parent} ORDER BY {key} LIMIT 1)").format(
                col=sql.Identifier(parent_of[c]), parent=parent, key=order
            )
            for c in wanted
        }

    def _needs_new_parent(self, shape: TableShape, fk: ForeignKey) -> bool:
        """An existing parent row will not do: the key is keyed here (its value may be taken), or there is none."""
        return any(c in shape.keyed for c in fk.columns) or not self.has_rows(fk.parent)

    def _new_parent(self, stmt: _Statement, shape: TableShape, fk: ForeignKey, given: dict[str, sql.Composable]) -> str:
        """A CTE of `stmt` inserting a new row of fk's parent table (with the `given` values), returning the
        referenced columns; its name."""
        edge = f"{shape.ref}.{', '.join(fk.columns)}"
        if fk.parent in stmt.building:
            chain = " -> ".join([*stmt.edges[stmt.building.index(fk.parent) :], edge, str(fk.parent)])
            raise CannotBuild(
                f"a new {stmt.building[0]} row needs a new row of each table along the cycle of required foreign "
                f"keys {chain}, and none can be inserted before the others; test this table with a block in "
                "validation.sql"
            )
        stmt.edges.append(edge)
        try:
            body = self._insert(stmt, fk.parent, given, (), 1)
        finally:
            stmt.edges.pop()
        name = f"runbook_parent_{len(stmt.ctes) + 1}"
        stmt.ctes.append(
            sql.SQL("{} AS ({} RETURNING {})").format(
                sql.Identifier(name), body, sql.SQL(", ").join(sql.Identifier(c) for c in fk.parent_columns)
            )
        )
        return name

    # -- values ---------------------------------------------------------------------------------

    def made_up(self, shape: TableShape, column: Column, n: int = 1) -> sql.Composable:
        """A value for `column` in the n-th row made up for its table, from its type and CHECK rules (no foreign
        key considered); a keyed column's value is one no row has yet."""
        base, keyed = column.base_type, column.name in shape.keyed
        rule = shape.rules.get(column.name, ColumnRule())
        pick = (n - 1) if keyed else 0
        if rule.allowed:
            return sql.Literal(rule.allowed[pick % len(rule.allowed)])
        if column.is_array:
            return sql.SQL("'{}'")
        if column.labels:
            return sql.Literal(column.labels[pick % len(column.labels)])
        if base in _STRINGS:
            limits = [x for x in (column.max_length, rule.max_length) if x is not None]
            return sql.Literal(unique_text(min(limits) if limits else None, rule.min_length))
        if base in _INTEGERS:
            return _integer(shape, column, rule, n, keyed)
        if base in _NUMBERS:
            return _number(shape, column, rule, n, keyed and base != "money")
        if base in _TIMES:
            offset = f"{n - 1} days {column.number} seconds" if n > 1 else f"{column.number} seconds"
            return sql.SQL("{} + interval {}").format(_time_base(shape, _TIMES, "now()"), sql.Literal(offset))
        if base == "date":
            return sql.SQL("{} + {}").format(
                _time_base(shape, {"date"}, "current_date"), sql.Literal((n - 1) * 1000 + column.number)
            )
        if keyed and base == "bool":
            return sql.Literal(n % 2 == 1)
        if keyed and base == "bytea":
            return sql.SQL("uuid_send(gen_random_uuid())")
        if base in _CONSTANTS:
            return _CONSTANTS[base]
        raise CannotBuild(
            f"{shape.ref}.{column.name} is required and of type {column.type}, for which runbook cannot make up "
            "a value; give it a default, or test this table with a block in validation.sql"
        )


def _insert_sql(shape: TableShape, columns: list[Column], rows: list[list[sql.Composable]]) -> sql.Composed:
    """INSERT INTO the table (columns) VALUES each row."""
    return sql.SQL("INSERT INTO {table} ({columns}){overriding} VALUES {rows}").format(
        table=shape.identifier,
        columns=sql.SQL(", ").join(sql.Identifier(c.name) for c in columns),
        # An identity ALWAYS column refuses a value unless the INSERT says it means it.
        overriding=sql.SQL(" OVERRIDING SYSTEM VALUE" if any(c.identity == "a" for c in columns) else ""),
        rows=sql.SQL(", ").join(sql.SQL("({})").format(sql.SQL(", ").join(row)) for row in rows),
    )


def _generated(shape: TableShape, name: str) -> bool:
    column = shape.column(name)
    return column is not None and bool(column.generated)


@dataclass
class _Statement:
    """One statement being built: the new parent rows it inserts first (data-modifying CTEs, in the order
    they must run), how many rows it adds to each table (the n that keeps each made-up key new), and the
    chain of rows under construction (the tables, and the foreign keys between them) where a cycle shows."""

    make_up_keys: bool = False  # foreign-key columns made up, no parent rows (RowBuilder.insert)
    ctes: list[sql.Composable] = field(default_factory=list)
    counts: dict[TableRef, int] = field(default_factory=dict)
    building: list[TableRef] = field(default_factory=list)
    edges: list[str] = field(default_factory=list)

    def next_n(self, ref: TableRef) -> int:
        self.counts[ref] = self.counts.get(ref, 0) + 1
        return self.counts[ref]

    def composed(self, body: sql.Composable, extra: Sequence[sql.Composable] = ()) -> sql.Composed:
        ctes = self.ctes + list(extra)
        if not ctes:
            return sql.Composed([body])
        return sql.SQL("WITH {} {}").format(sql.SQL(", ").join(ctes), body)


def _integer(shape: TableShape, column: Column, rule: ColumnRule, n: int, keyed: bool) -> sql.Composable:
    """Keyed: the n-th value past the largest one (or the n-th free one of a small CHECK range); else a constant
    within the CHECK's bounds."""
    low, high = rule.integer_range()
    col, table = sql.Identifier(column.name), shape.identifier
    if keyed and low is not None and high is not None and high - low < _SMALL_RANGE:
        return sql.SQL(
            "(SELECT v FROM generate_series({low}, {high}) v WHERE NOT EXISTS"
            " (SELECT 1 FROM {table} WHERE {col} = v) ORDER BY v OFFSET {skip} LIMIT 1)"
        ).format(low=sql.Literal(low), high=sql.Literal(high), table=table, col=col, skip=sql.Literal(n - 1))
    if keyed and low is not None and low > 1:
        return sql.SQL("(SELECT greatest(max({col}), {floor}) + {n} FROM {table})").format(
            col=col, floor=sql.Literal(low - 1), n=sql.Literal(n), table=table
        )
    if keyed:
        return sql.SQL("(SELECT coalesce(max({col}), 0) + {n} FROM {table})").format(
            col=col, n=sql.Literal(n), table=table
        )
    value = n if low is None else low + n - 1
    return sql.Literal(value if high is None else min(value, high))


def _number(shape: TableShape, column: Column, rule: ColumnRule, n: int, keyed: bool) -> sql.Composable:
    """Keyed: n past the largest value (and past the CHECK's lower bound); else a constant within the bounds."""
    low = rule.lower.value if rule.lower else None
    high = rule.upper.value if rule.upper else None
    if keyed:
        floor = (
            sql.SQL("greatest(max({}), {})").format(sql.Identifier(column.name), sql.Literal(max(low, 0)))
            if low is not None
            else sql.SQL("coalesce(max({}), 0)").format(sql.Identifier(column.name))
        )
        return sql.SQL("(SELECT {} + {} FROM {})").format(floor, sql.Literal(n), shape.identifier)
    if low is not None and high is not None:
        value = low + (high - low) * n / (n + 1)  # strictly between the two
    elif low is not None:
        value = low + n
    elif high is not None:
        value = Decimal(n) if n < high else high - n
    else:
        value = Decimal(n)
    value = value.quantize(Decimal("0.000001")).normalize()
    return sql.Literal(int(value) if value == value.to_integral_value() else value)


def _time_base(shape: TableShape, types: set[str], now: str) -> sql.Composable:
    """When a row's times start: now, or past the latest value of every keyed column of these types, so a keyed
    time is new and every time column of the row keeps the same base (later columns stay later)."""
    keyed = [c for c in shape.columns if c.base_type in types and c.name in shape.keyed and not c.is_array]
    if not keyed:
        return sql.SQL(now)
    return sql.SQL("(SELECT greatest({now}, {maxes}) FROM {table})").format(
        now=sql.SQL(now),
        maxes=sql.SQL(", ").join(sql.SQL("max({})").format(sql.Identifier(c.name)) for c in keyed),
        table=shape.identifier,
    )


def unique_text(max_length: int | None = None, min_length: int | None = None) -> str:
    """A string no row holds yet: 'runbook-test-' and 12 random hex digits (cut to the column's length, or
    longer, in random hex digits, to a CHECK's minimum length)."""
    text = f"runbook-test-{_hex(12)}"
    if min_length is not None and len(text) < min_length:
        text += _hex(min_length - len(text))
    if max_length is not None and max_length < len(text):
        text = _hex(max_length)
    return text


def _hex(digits: int) -> str:
    """`digits` random hex digits: from the process's generator, not the system's (uuid4 asks the kernel each
    time, and a release makes thousands of test values; they need to be new, not secret)."""
    return f"{random.getrandbits(4 * digits):0{digits}x}" if digits > 0 else ""
