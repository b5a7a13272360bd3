"""Random but valid migration histories, for testing that validation generalises beyond the corpora.

A seeded generator keeps a model of the schema and writes each migration as a team (or Prisma) would:
tables with several unique constraints (single and composite, some over foreign-key columns), CHECKs,
identity and generated columns, self references, cycles of foreign keys broken by a nullable key, enum
types, extensions created and dropped in one file; and later migrations that add, drop and rename
columns, rename and drop indexes and tables (CASCADE), drop a type with its columns. Some migrations
insert rows, so that later behaviour tests meet tables that already have data. Every history applies
cleanly with psql from an empty database: the model only writes what PostgreSQL accepts.

The same seed gives the same history (random.Random(seed)), so a failure is reproduced by its seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Col:
    name: str
    type: str  # SQL type as written
    nullable: bool = True
    default: str | None = None
    identity: str = ""  # "" | "ALWAYS" | "BY DEFAULT"
    generated: str | None = None  # the expression of a STORED generated column
    check_values: tuple[str, ...] = ()  # an IN-list CHECK on this column: the allowed values
    positive: bool = False  # a CHECK (col > 0)
    kind: str = "text"  # text | int | num | ts | bool | uuid | enum | ext: how to make up a value for a seed row


@dataclass
class FK:
    name: str
    cols: tuple[str, ...]
    parent: str
    on_delete: str  # RESTRICT | NO ACTION | CASCADE | SET NULL


@dataclass
class Table:
    name: str
    cols: dict[str, Col] = field(default_factory=dict)
    pk: tuple[str, ...] = ()
    uniques: dict[str, tuple[str, ...]] = field(default_factory=dict)  # constraint or unique index name -> columns
    unique_indexes: set[str] = field(default_factory=set)  # which of `uniques` are CREATE UNIQUE INDEX
    indexes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fks: dict[str, FK] = field(default_factory=dict)
    checks: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> columns it reads
    rows: list[dict[str, str]] = field(default_factory=list)  # seeded rows: column -> SQL literal

    def key_cols(self) -> set[str]:
        used = set(self.pk)
        for cols in list(self.uniques.values()) + list(self.indexes.values()):
            used |= set(cols)
        for fk in self.fks.values():
            used |= set(fk.cols)
        for cols in self.checks.values():
            used |= set(cols)
        return used


@dataclass
class History:
    seed: int
    migrations: list[tuple[str, str]] = field(default_factory=list)  # (folder name, SQL)

    def write(self, folder: Path) -> Path:
        """Prisma's layout: migrations/<stamp>_<name>/migration.sql."""
        root = folder / "migrations"
        for name, text in self.migrations:
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / "migration.sql").write_text(text, encoding="utf-8")
        (root / "migration_lock.toml").write_text('provider = "postgresql"\n', encoding="utf-8")
        return root


class Generator:
    """Writes one history; `extensions` are those the target server can install (pg_available_extensions)."""

    TYPES: ClassVar[list[tuple[str, str]]] = [
        ("TEXT", "text"),
        ("INTEGER", "int"),
        ("BIGINT", "int"),
        ("DECIMAL(65,30)", "num"),
        ("TIMESTAMP(3)", "ts"),
        ("BOOLEAN", "bool"),
        ("UUID", "uuid"),
        ("VARCHAR(40)", "text"),
        ("DOUBLE PRECISION", "num"),
        ("JSONB", "json"),
        ("DATE", "date"),
    ]

    def __init__(self, seed: int, extensions: tuple[str, ...] = ()) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.extensions = extensions
        self.tables: dict[str, Table] = {}
        self.enums: dict[str, tuple[str, ...]] = {}
        self.installed: set[str] = set()
        self.counter = 0
        self.out: list[str] = []

    # -- names ---------------------------------------------------------------------------------

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def emit(self, text: str) -> None:
        self.out.append(text)

    # -- values for seed rows ------------------------------------------------------------------

    def literal(self, table: Table, col: Col, n: int) -> str | None:
        """A value for row n of `table` that keeps every constraint of the model; None: leave it out."""
        if col.generated or (col.identity == "ALWAYS"):
            return None
        fk = next((f for f in table.fks.values() if col.name in f.cols), None)
        if fk is not None:
            known = [r for r in self.tables[fk.parent].rows if r]
            if not known:
                return None
            return known[(n - 1) % len(known)].get(self.tables[fk.parent].pk[0])
        if col.check_values:
            return f"'{col.check_values[0]}'"
        return {
            "text": f"'{self.fresh('v')}'",  # unique across the history, and short enough for VARCHAR(40)
            "int": str(10 + n + len(table.rows) * 7),
            "num": str(10 + n + len(table.rows) * 7),
            "ts": f"TIMESTAMP '2024-01-01' + interval '{n + len(table.rows)} days'",
            "date": f"DATE '2024-01-01' + {n + len(table.rows)}",
            "bool": "true",
            "uuid": "gen_random_uuid()",
            "json": "'{}'",
            "enum": f"'{self.enums.get(col.type.strip(chr(34)), ('a',))[0]}'",
            "ext": None,
        }[col.kind]

    def seed_row(self, table: Table) -> None:
        """INSERT one row, when every required column can be given a value."""
        n = len(table.rows) + 1
        values: dict[str, str] = {}
        for col in table.cols.values():
            value = self.literal(table, col, n)
            if value is None:
                if not col.nullable and col.default is None and not col.identity and not col.generated:
                    return  # a required column without a value: no row
                continue
            values[col.name] = value

        # every unique key needs a column whose value differs from row to row (not a parent's key, a CHECK's
        # first allowed value, an enum's first label or a constant)
        def fresh(c: str) -> bool:
            col = table.cols[c]
            return (
                c in values
                and not any(c in f.cols for f in table.fks.values())
                and not col.check_values
                and col.kind in ("text", "int", "num", "ts", "date", "uuid")
            )

        for cols in [*table.uniques.values(), table.pk]:
            if cols and table.rows and not any(fresh(c) for c in cols):
                return
        pk_given = all(c in values for c in table.pk) if table.pk else False
        if table.pk and not pk_given and not any(table.cols[c].identity or table.cols[c].default for c in table.pk):
            return
        overriding = " OVERRIDING SYSTEM VALUE" if any(table.cols[c].identity == "ALWAYS" for c in values) else ""
        names = ", ".join(q(c) for c in values)
        if values:
            self.emit(f"INSERT INTO {q(table.name)} ({names}){overriding} VALUES ({', '.join(values.values())});")
        else:
            self.emit(f"INSERT INTO {q(table.name)} DEFAULT VALUES;")
        # a row whose key the server chose is not known to the model: no later row points at it
        table.rows.append({c: values[c] for c in table.pk} if pk_given else {})

    # -- the operations ------------------------------------------------------------------------

    def column(self, table: Table, *, allow_required: bool = True) -> Col:
        sql_type, kind = self.rng.choice(self.TYPES)
        if self.enums and self.rng.random() < 0.15:
            sql_type, kind = q(self.rng.choice(sorted(self.enums))), "enum"
        ext_types = {"citext": "CITEXT", "vector": "vector(3)"}
        usable = [e for e in self.installed if e in ext_types]
        if usable and self.rng.random() < 0.2:
            sql_type, kind = ext_types[self.rng.choice(sorted(usable))], "ext"
        col = Col(self.fresh("c"), sql_type, kind=kind)
        roll = self.rng.random()
        if allow_required and roll < 0.45 and kind != "ext":
            col.nullable = False
        elif roll < 0.6 and kind in ("text", "int", "bool"):
            col.nullable = False
            col.default = {"text": "''", "int": "0", "bool": "false"}[kind]
        if kind == "ts" and self.rng.random() < 0.3:
            col.nullable, col.default = False, "CURRENT_TIMESTAMP"
        if kind == "text" and not col.nullable and col.default is None and self.rng.random() < 0.15:
            col.check_values = ("draft", "live")
        if kind == "int" and self.rng.random() < 0.15:
            col.positive = True
        return col

    def col_sql(self, col: Col) -> str:
        text = f"{q(col.name)} {col.type}"
        if col.identity:
            text += f" GENERATED {col.identity} AS IDENTITY"
        if col.generated:
            text += f" GENERATED ALWAYS AS ({col.generated}) STORED"
        if not col.nullable and not col.identity:
            text += " NOT NULL"
        if col.default is not None:
            text += f" DEFAULT {col.default}"
        return text

    def create_table(self) -> None:
        table = Table(self.fresh("T"))
        style = self.rng.choice(["text", "identity", "composite"])
        lines: list[str] = []
        if style == "text":
            table.cols["id"] = Col("id", "TEXT", nullable=False)
            table.pk = ("id",)
        elif style == "identity":
            table.cols["id"] = Col(
                "id", "INTEGER", nullable=False, identity=self.rng.choice(["ALWAYS", "BY DEFAULT"]), kind="int"
            )
            table.pk = ("id",)
        else:
            table.cols["k1"] = Col("k1", "TEXT", nullable=False)
            table.cols["k2"] = Col("k2", "INTEGER", nullable=False, kind="int")
            table.pk = ("k1", "k2")
        for _ in range(self.rng.randint(1, 4)):
            col = self.column(table)
            table.cols[col.name] = col
        # foreign keys to existing tables with a single-column key: required or not, some unique (one-to-one)
        parents = [t for t in self.tables.values() if len(t.pk) == 1]
        for parent in self.rng.sample(parents, k=min(len(parents), self.rng.randint(0, 2))):
            pk_col = parent.cols[parent.pk[0]]
            col = Col(
                self.fresh("ref"),
                "INTEGER" if pk_col.kind == "int" else "TEXT",
                nullable=self.rng.random() < 0.5,
                kind="int" if pk_col.kind == "int" else "text",
            )
            table.cols[col.name] = col
            action = (
                "SET NULL"
                if col.nullable and self.rng.random() < 0.3
                else self.rng.choice(["RESTRICT", "NO ACTION", "CASCADE"])
            )
            table.fks[f"{table.name}_{col.name}_fkey"] = FK(
                f"{table.name}_{col.name}_fkey", (col.name,), parent.name, action
            )
            if self.rng.random() < 0.4:
                table.uniques[f"{table.name}_{col.name}_key"] = (col.name,)
                table.unique_indexes.add(f"{table.name}_{col.name}_key")
        # a self reference, always nullable (a required one could never get a first row)
        if len(table.pk) == 1 and self.rng.random() < 0.2:
            pk_col = table.cols[table.pk[0]]
            col = Col(
                self.fresh("self"),
                "INTEGER" if pk_col.kind == "int" else "TEXT",
                kind="int" if pk_col.kind == "int" else "text",
            )
            table.cols[col.name] = col
            table.fks[f"{table.name}_{col.name}_fkey"] = FK(
                f"{table.name}_{col.name}_fkey", (col.name,), table.name, "SET NULL"
            )
        plain = [
            c
            for c in table.cols.values()
            if c.name not in table.pk
            and c.kind in ("text", "int", "uuid")
            and not any(c.name in f.cols for f in table.fks.values())
        ]
        for col in self.rng.sample(plain, k=min(len(plain), self.rng.randint(0, 2))):
            if not col.check_values:
                table.uniques[f"{table.name}_{col.name}_key"] = (col.name,)
                if self.rng.random() < 0.6:
                    table.unique_indexes.add(f"{table.name}_{col.name}_key")
        fk_cols = [c for f in table.fks.values() for c in f.cols]
        if fk_cols and plain and self.rng.random() < 0.5:
            pair = (self.rng.choice(fk_cols), self.rng.choice(plain).name)
            table.uniques[f"{table.name}_{pair[0]}_{pair[1]}_key"] = pair
            table.unique_indexes.add(f"{table.name}_{pair[0]}_{pair[1]}_key")
        numbers = [
            c
            for c in table.cols.values()
            if c.kind == "int"
            and c.name not in table.pk
            and not any(c.name in f.cols for f in table.fks.values())
            and not c.identity
        ]
        if numbers and self.rng.random() < 0.3:
            source = self.rng.choice(numbers)
            gen = Col(self.fresh("gen"), "BIGINT", kind="int", generated=f"{q(source.name)} * 2")
            table.cols[gen.name] = gen
        for col in table.cols.values():
            lines.append("    " + self.col_sql(col))
            if col.check_values:
                name = f"{table.name}_{col.name}_check"
                table.checks[name] = (col.name,)
                lines.append(
                    f"    CONSTRAINT {q(name)} CHECK ({q(col.name)} IN "
                    f"({', '.join(repr(v) for v in col.check_values)}))"
                )
            if col.positive:
                name = f"{table.name}_{col.name}_positive"
                table.checks[name] = (col.name,)
                lines.append(f"    CONSTRAINT {q(name)} CHECK ({q(col.name)} > 0)")
        lines.append(f"    CONSTRAINT {q(table.name + '_pkey')} PRIMARY KEY ({', '.join(q(c) for c in table.pk)})")
        for name, cols in table.uniques.items():
            if name not in table.unique_indexes:
                lines.append(f"    CONSTRAINT {q(name)} UNIQUE ({', '.join(q(c) for c in cols)})")
        self.emit(f"CREATE TABLE {q(table.name)} (\n" + ",\n".join(lines) + "\n);")
        for name, cols in table.uniques.items():
            if name in table.unique_indexes:
                self.emit(f"CREATE UNIQUE INDEX {q(name)} ON {q(table.name)}({', '.join(q(c) for c in cols)});")
        if plain and self.rng.random() < 0.5:
            cols = tuple(c.name for c in self.rng.sample(plain, k=min(2, len(plain))))
            name = f"{table.name}_{'_'.join(cols)}_idx"
            table.indexes[name] = cols
            self.emit(f"CREATE INDEX {q(name)} ON {q(table.name)}({', '.join(q(c) for c in cols)});")
        self.tables[table.name] = table
        for fk in table.fks.values():
            self.emit(
                f"ALTER TABLE {q(table.name)} ADD CONSTRAINT {q(fk.name)} FOREIGN KEY ({q(fk.cols[0])}) "
                f"REFERENCES {q(fk.parent)}({q(self.tables[fk.parent].pk[0])}) ON DELETE {fk.on_delete} "
                "ON UPDATE CASCADE;"
            )

    def pick(self, min_cols: int = 0) -> Table | None:
        tables = [t for t in self.tables.values() if len(t.cols) > min_cols]
        return self.rng.choice(tables) if tables else None

    def add_column(self) -> None:
        table = self.pick()
        if table is None:
            return
        col = self.column(table, allow_required=not table.rows)
        col.check_values, col.positive = (), False
        table.cols[col.name] = col
        self.emit(f"ALTER TABLE {q(table.name)} ADD COLUMN {self.col_sql(col)};")

    def droppable(self, table: Table) -> list[Col]:
        # not a primary-key column (other tables' foreign keys point at it) nor a generated column's source
        sources = {c.generated.split('"')[1] for c in table.cols.values() if c.generated}
        return [c for c in table.cols.values() if c.name not in table.pk and c.name not in sources]

    def drop_column(self) -> None:
        table = self.pick(min_cols=2)
        if table is None or not self.droppable(table):
            return
        # prefer a column an index, unique key or foreign key uses: PostgreSQL drops those with it, unnamed
        keyed = [c for c in self.droppable(table) if c.name in table.key_cols()]
        col = self.rng.choice(keyed or self.droppable(table))
        cascade = " CASCADE" if self.rng.random() < 0.3 else ""
        self.emit(f"ALTER TABLE {q(table.name)} DROP COLUMN {q(col.name)}{cascade};")
        self._forget_column(table, col.name)

    def _forget_column(self, table: Table, name: str) -> None:
        del table.cols[name]
        table.uniques = {k: v for k, v in table.uniques.items() if name not in v}
        table.unique_indexes &= set(table.uniques)
        table.indexes = {k: v for k, v in table.indexes.items() if name not in v}
        table.fks = {k: v for k, v in table.fks.items() if name not in v.cols}
        table.checks = {k: v for k, v in table.checks.items() if name not in v}

    def rename_column(self) -> None:
        table = self.pick(min_cols=2)
        if table is None or not self.droppable(table):
            return
        col = self.rng.choice(self.droppable(table))
        old, new = col.name, self.fresh("r")
        self.emit(f"ALTER TABLE {q(table.name)} RENAME COLUMN {q(old)} TO {q(new)};")
        table.cols = {(new if k == old else k): v for k, v in table.cols.items()}
        col.name = new
        swap = lambda cols: tuple(new if c == old else c for c in cols)  # noqa: E731
        table.uniques = {k: swap(v) for k, v in table.uniques.items()}
        table.indexes = {k: swap(v) for k, v in table.indexes.items()}
        table.checks = {k: swap(v) for k, v in table.checks.items()}
        for fk in table.fks.values():
            fk.cols = swap(fk.cols)

    def index_of_some_table(self) -> tuple[Table, str] | None:
        """A table and one of its indexes (plain or unique, not a constraint's), if any table has one."""
        table = self.pick()
        names = sorted(table.indexes) + sorted(table.unique_indexes) if table else []
        return (table, self.rng.choice(names)) if names else None

    def rename_index(self) -> None:
        found = self.index_of_some_table()
        if found is None:
            return
        table, old = found
        new = self.fresh(f"{table.name}_renamed_")
        self.emit(f"ALTER INDEX {q(old)} RENAME TO {q(new)};")
        if old in table.indexes:
            table.indexes[new] = table.indexes.pop(old)
        else:
            table.uniques[new] = table.uniques.pop(old)
            table.unique_indexes.discard(old)
            table.unique_indexes.add(new)

    def drop_index(self) -> None:
        found = self.index_of_some_table()
        if found is None:
            return
        table, name = found
        self.emit(f"DROP INDEX {q(name)};")
        table.indexes.pop(name, None)
        if name in table.unique_indexes:
            table.unique_indexes.discard(name)
            del table.uniques[name]

    def add_index(self) -> None:
        table = self.pick(min_cols=1)
        if table is None:
            return
        cols = [c.name for c in table.cols.values() if c.kind in ("text", "int", "ts", "uuid", "num")]
        if not cols:
            return
        chosen = tuple(self.rng.sample(cols, k=min(len(cols), self.rng.randint(1, 2))))
        unique = not table.rows and self.rng.random() < 0.4
        name = f"{table.name}_{'_'.join(chosen)}_{'key' if unique else 'idx'}"
        if name in table.uniques or name in table.indexes:
            return
        self.emit(
            f"CREATE {'UNIQUE ' if unique else ''}INDEX {q(name)} ON {q(table.name)}"
            f"({', '.join(q(c) for c in chosen)});"
        )
        if unique:
            table.uniques[name] = chosen
            table.unique_indexes.add(name)
        else:
            table.indexes[name] = chosen

    def add_foreign_key(self) -> None:
        """A nullable key added to an existing table: how a cycle of foreign keys is closed."""
        table = self.pick()
        parents = [t for t in self.tables.values() if len(t.pk) == 1]
        if table is None or not parents:
            return
        parent = self.rng.choice(parents)
        pk_col = parent.cols[parent.pk[0]]
        col = Col(
            self.fresh("back"),
            "INTEGER" if pk_col.kind == "int" else "TEXT",
            kind="int" if pk_col.kind == "int" else "text",
        )
        table.cols[col.name] = col
        name = f"{table.name}_{col.name}_fkey"
        table.fks[name] = FK(name, (col.name,), parent.name, "SET NULL")
        self.emit(f"ALTER TABLE {q(table.name)} ADD COLUMN {q(col.name)} {col.type};")
        self.emit(
            f"ALTER TABLE {q(table.name)} ADD CONSTRAINT {q(name)} FOREIGN KEY ({q(col.name)}) "
            f"REFERENCES {q(parent.name)}({q(parent.pk[0])}) ON DELETE SET NULL ON UPDATE CASCADE;"
        )

    def set_not_null(self) -> None:
        table = self.pick()
        if table is None:
            return
        cols = [
            c
            for c in table.cols.values()
            if c.nullable and not c.generated and (not table.rows or c.default is not None)
        ]
        if not cols:
            return
        col = self.rng.choice(cols)
        if table.rows:
            return  # existing rows may hold NULL: the model does not track every value
        col.nullable = False
        self.emit(f"ALTER TABLE {q(table.name)} ALTER COLUMN {q(col.name)} SET NOT NULL;")

    def drop_not_null(self) -> None:
        table = self.pick()
        if table is None:
            return
        cols = [c for c in table.cols.values() if not c.nullable and c.name not in table.pk and not c.identity]
        if not cols:
            return
        col = self.rng.choice(cols)
        col.nullable = True
        self.emit(f"ALTER TABLE {q(table.name)} ALTER COLUMN {q(col.name)} DROP NOT NULL;")

    def rename_table(self) -> None:
        table = self.pick()
        if table is None:
            return
        new = self.fresh("Renamed")
        self.emit(f"ALTER TABLE {q(table.name)} RENAME TO {q(new)};")
        del self.tables[table.name]
        for other in self.tables.values():
            for fk in other.fks.values():
                if fk.parent == table.name:
                    fk.parent = new
        for fk in table.fks.values():
            if fk.parent == table.name:
                fk.parent = new
        table.name = new
        self.tables[new] = table

    def drop_table(self) -> None:
        table = self.pick()
        if table is None:
            return
        referenced = any(
            fk.parent == table.name for t in self.tables.values() if t is not table for fk in t.fks.values()
        )
        cascade = " CASCADE" if referenced or self.rng.random() < 0.2 else ""
        self.emit(f"DROP TABLE {q(table.name)}{cascade};")
        del self.tables[table.name]
        for other in self.tables.values():
            other.fks = {k: v for k, v in other.fks.items() if v.parent != table.name}

    def create_enum(self) -> None:
        name = self.fresh("Status")
        labels = ("a", "b", "c")[: self.rng.randint(1, 3)]
        self.enums[name] = labels
        self.emit(f"CREATE TYPE {q(name)} AS ENUM ({', '.join(repr(v) for v in labels)});")

    def drop_enum(self) -> None:
        if not self.enums:
            return
        name = self.rng.choice(sorted(self.enums))
        users = [(t, c) for t in self.tables.values() for c in list(t.cols.values()) if c.type == q(name)]
        self.emit(f"DROP TYPE {q(name)}{' CASCADE' if users else ''};")
        del self.enums[name]
        for table, col in users:
            self._forget_column(table, col.name)

    def extension_churn(self) -> None:
        """An extension created early in a file and dropped later in it; or kept, with a column of its type."""
        if not self.extensions:
            return
        name = self.rng.choice(self.extensions)
        if name in self.installed:
            users = [
                (t, c)
                for t in self.tables.values()
                for c in list(t.cols.values())
                if c.kind == "ext"
                and c.type.lower().startswith({"citext": "citext", "vector": "vector"}.get(name, "?"))
            ]
            self.emit(f"DROP EXTENSION {q(name)}{' CASCADE' if users else ''};")
            self.installed.discard(name)
            for table, col in users:
                self._forget_column(table, col.name)
            return
        self.emit(f"CREATE EXTENSION IF NOT EXISTS {q(name)};")
        if self.rng.random() < 0.5:
            self.emit("SELECT 1;")
            self.emit(f"DROP EXTENSION {q(name)};")
        else:
            self.installed.add(name)

    def seed_some(self) -> None:
        for table in list(self.tables.values()):
            if self.rng.random() < 0.5:
                self.seed_row(table)

    # -- a history -----------------------------------------------------------------------------

    OPERATIONS: ClassVar[list[tuple[str, int]]] = [
        ("create_table", 6),
        ("add_column", 3),
        ("drop_column", 3),
        ("rename_column", 1),
        ("rename_index", 1),
        ("drop_index", 1),
        ("add_index", 2),
        ("add_foreign_key", 1),
        ("set_not_null", 1),
        ("drop_not_null", 1),
        ("rename_table", 1),
        ("drop_table", 1),
        ("create_enum", 1),
        ("drop_enum", 1),
        ("extension_churn", 1),
        ("seed_some", 2),
    ]

    def history(self, migrations: int) -> History:
        found = History(self.seed)
        ops, weights = zip(*self.OPERATIONS, strict=True)
        for number in range(1, migrations + 1):
            self.out = []
            if number == 1:
                self.create_table()
            for op in self.rng.choices(ops, weights, k=self.rng.randint(1, 4)):
                getattr(self, op)()
            if not self.out:
                self.create_table()
            found.migrations.append((f"2024{number:04d}000000_m{number}", "\n\n".join(self.out) + "\n"))
        return found


def generate(seed: int, migrations: int = 8, extensions: tuple[str, ...] = ()) -> History:
    return Generator(seed, extensions).history(migrations)
