"""golang-migrate's folder (`<version>_<title>.up.sql` / `.down.sql`) and its history, `schema_migrations`.

golang-migrate v4's rules, from its source (github.com/golang-migrate/migrate):

- source/parse.go: a file is a migration when its name matches `^([0-9]+)_(.*)\\.(down|up)\\.(.*)$`; the version
  is parsed as an unsigned integer and migrations run in numeric order; a second file with the same version and
  direction is refused (ErrDuplicateMigration); other files are passed over.
- database/postgres/postgres.go (commit 0165cfcf7b30): one table, `schema_migrations` by default, in
  CURRENT_SCHEMA(), holding a single row (version, dirty). `Version` reads it with LIMIT 1 (no row, or no table:
  NilVersion); `SetVersion` TRUNCATEs it and inserts the new row, nothing for NilVersion; `migrate up` runs the
  migrations above that version, and refuses to go on while the row is dirty ("Dirty database version V. Fix and
  force version."); `ensureVersionTable` creates the table when it is missing.
- `Lock` takes a session-level `pg_advisory_lock` keyed by database/util.go's GenerateAdvisoryLockId.

runbook writes the row as `SetVersion` leaves it once a migration finished, inside the migration's own
transaction, so `migrate up` afterwards starts where runbook stopped.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import psycopg
from psycopg import sql

from runbook_lib.errors import BatchError, DatabaseError
from runbook_lib.layouts.base import GOLANG_MIGRATE, AppliedRow, LayoutSettings, Migration, ToolState, read_text

NAME = GOLANG_MIGRATE
TABLE = "schema_migrations"  # postgres.go: DefaultMigrationsTable
NIL_VERSION = -1  # database.NilVersion: no migration applied

#: source/parse.go's DefaultRegex.
_FILE = re.compile(r"^([0-9]+)_(.*)\.(down|up)\.(.*)$")
#: What `evidence` counts: the SQL pairs golang-migrate's postgres projects hold.
_SQL_FILE = re.compile(r"^[0-9]+_.*\.(?:up|down)\.sql$")
#: A hand-written undo script in rollback_dir: `<version>.sql` or `<version>_<anything>.sql`.
_ROLLBACK_FILE = re.compile(r"^([0-9]+)(?:_.*)?\.sql$")
#: The schema_migrations.version column is a bigint.
_MAX_VERSION = 2**63 - 1
#: database/util.go: advisoryLockIDSalt.
_LOCK_SALT = 1486364155


def evidence(root: Path) -> int:
    """How many files directly in `root` are golang-migrate `.up.sql` / `.down.sql` files (0 when none), so
    detection can tell this folder from the other tools'."""
    if not root.is_dir():
        return 0
    return sum(1 for p in root.iterdir() if _SQL_FILE.match(p.name) and p.is_file())  # a stat only for a match


def _version(path: Path, digits: str) -> int:
    """The file's version as golang-migrate parses it; refused when schema_migrations' bigint cannot hold it."""
    version = int(digits)
    if version > _MAX_VERSION:
        raise BatchError(
            f"{path} has version {digits}, larger than golang-migrate's schema_migrations can hold "
            f"(a bigint); rename it with a version of at most {_MAX_VERSION}."
        )
    return version


def _files(root: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """The up and down files of `root` by version; a second file of one version and direction is refused, as
    golang-migrate refuses it (ErrDuplicateMigration)."""
    ups: dict[int, Path] = {}
    downs: dict[int, Path] = {}
    for path in sorted(root.iterdir(), key=lambda p: p.name):
        match = _FILE.match(path.name)
        if match is None or not path.is_file():
            continue
        version = _version(path, match.group(1))
        found = ups if match.group(3) == "up" else downs
        if version in found:
            raise BatchError(
                f"{path} has version {version}, as {found[version].name} has, and golang-migrate refuses "
                f"two {match.group(3)} migrations of one version; give one of them a new version."
            )
        found[version] = path
    return ups, downs


def _rollbacks(folder: Path) -> dict[int, Path]:
    """rollback_dir's undo scripts by version (`<version>_<name>.sql`), one per version."""
    if not folder.is_dir():
        raise BatchError(
            f"rollback_dir {folder} is not a folder; create it, or remove rollback_dir from "
            f"runbook.toml's [{NAME}] table."
        )
    found: dict[int, Path] = {}
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        match = _ROLLBACK_FILE.match(path.name)
        if match is None or not path.is_file() or path.name.endswith(".up.sql"):
            continue
        version = _version(path, match.group(1))
        if version in found:
            raise BatchError(
                f"{path} undoes version {version}, as {found[version].name} does; keep one undo script "
                "per version in rollback_dir."
            )
        found[version] = path
    return found


def _migration(path: Path, version: int, down: Path | None) -> Migration:
    match = _FILE.match(path.name)
    assert match is not None  # _files kept only matching names
    title, extension = match.group(2), match.group(4)
    return Migration(
        version=str(version),
        name=path.name.removesuffix(f".up.{extension}"),
        description=title,
        path=path,
        sql=read_text(path),
        down=down,
        checksum="",  # golang-migrate keeps none
    )


def read(root: Path, settings: LayoutSettings) -> list[Migration]:
    """The up migrations of `root` in golang-migrate's order (numeric: 1, 2, 10), each with its undo script: the
    `.down.sql` beside it, else rollback_dir's script of that version. A `.down.sql` alone is passed over."""
    if not root.is_dir():
        raise BatchError(f"{root} is not a folder; pass --migrations-dir with golang-migrate's migrations folder.")
    ups, downs = _files(root)
    rollbacks = _rollbacks(settings.rollback_dir) if settings.rollback_dir is not None else {}
    return [_migration(ups[v], v, downs.get(v) or rollbacks.get(v)) for v in sorted(ups)]


def lock_id(database: str, schema: str, table: str) -> int:
    """database/util.go's GenerateAdvisoryLockId(database, schema, table), as postgres.go's Lock calls it.

    golang-migrate v4 (util.go at commit 2ca20f99a1d0): the additional names, then the database name, joined by
    NUL bytes; `crc32.ChecksumIEEE` of that, multiplied by the salt 1486364155 in uint32 (wrapping). Its own test
    vectors (util_test.go): ("database_name") -> 1764327054, ("database_name", "schema_name_1") -> 2453313553.
    """
    key = "\x00".join((schema, table, database)).encode("utf-8")
    return (zlib.crc32(key) * _LOCK_SALT) & 0xFFFFFFFF


class History:
    """golang-migrate's `schema_migrations` (or runbook.toml's [golang-migrate] table) in the current schema."""

    def __init__(self, settings: LayoutSettings) -> None:
        self.table = settings.table or TABLE
        self.label = f"golang-migrate's {self.table}"

    # -- where the table is ------------------------------------------------------------------------------------

    def _schema(self, conn: psycopg.Connection) -> str:
        """CURRENT_SCHEMA(), where golang-migrate keeps its table; refused when the search_path names none."""
        row = conn.execute("SELECT current_schema()").fetchone()
        assert row is not None  # a SELECT without FROM returns one row
        schema = row[0]
        if schema is None:
            raise DatabaseError(
                f"The search_path names no existing schema, so {self.label} has none (golang-migrate "
                "refuses this too: ErrNoSchema); set search_path to the schema golang-migrate uses."
            )
        return schema

    def _name(self, conn: psycopg.Connection) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self._schema(conn)), sql.Identifier(self.table))

    def _exists(self, conn: psycopg.Connection) -> bool:
        row = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p'))",
            (self._schema(conn), self.table),
        ).fetchone()
        assert row is not None  # SELECT EXISTS (...) returns one row
        return row[0]

    def _row(self, conn: psycopg.Connection) -> tuple[int, bool] | None:
        """postgres.go's Version: the first row (LIMIT 1); None for NilVersion (no table, or no row)."""
        if not self._exists(conn):
            return None
        row = conn.execute(sql.SQL("SELECT version, dirty FROM {} LIMIT 1").format(self._name(conn))).fetchone()
        return (int(row[0]), bool(row[1])) if row else None

    # -- reading -----------------------------------------------------------------------------------------------

    def read(self, conn: psycopg.Connection, migrations: list[Migration]) -> ToolState:
        """The history as `migrate up` reads it: every migration up to the row's version is applied (the version
        is the last one run); a dirty row, or a version the folder does not hold, stops `migrate up`. Creates
        nothing."""
        if not self._exists(conn):
            return ToolState(exists=False)
        row = self._row(conn)
        if row is None:
            return ToolState(exists=True)
        version, dirty = row
        applied = {m.version: AppliedRow(key=m.version) for m in migrations if int(m.version) <= version}
        return ToolState(
            exists=True, applied=applied, blocked=self._blocked(version, dirty, migrations), last=str(version)
        )

    def _blocked(self, version: int, dirty: bool, migrations: list[Migration]) -> str:
        """Why `migrate up` would refuse to go on: a dirty row (migrate.go ErrDirty), else a current version with
        no migration in the folder (migrate.go versionExists: "no migration found for version V")."""
        if dirty:
            previous = _previous(version, migrations)
            return (
                f"{self.label} is dirty at version {version} (a migration failed or was stopped part way); "
                f"check the database, then run `migrate force {version}` if it is applied or "
                f"`migrate force {previous}` if not."
            )
        if version != NIL_VERSION and all(int(m.version) != version for m in migrations):
            return (
                f"{self.label} is at version {version}, which no migration in the folder has (golang-migrate "
                f"refuses this too: no migration found for version {version}); restore that migration's files, "
                f"or run `migrate force` with the version of the last migration applied."
            )
        return ""

    def dirty_version(self, conn: psycopg.Connection) -> str | None:
        """The version of a dirty row, None when the row is clean or absent; lets the caller tell a dirty row it
        left itself (a non-transactional migration that failed part way) from one golang-migrate left."""
        row = self._row(conn)
        return str(row[0]) if row is not None and row[1] else None

    # -- locking -----------------------------------------------------------------------------------------------

    def lock_ids(self, conn: psycopg.Connection) -> tuple[int, ...]:
        """The advisory lock ids golang-migrate may take on this database and table.

        postgres.go's Lock keys the lock on Config.DatabaseName, which is CURRENT_DATABASE() when a program passes
        its own connection (WithInstance) but the URL's path, "/<database>", when `migrate -database postgres://...`
        or migrate.New opens it (Open: `DatabaseName: purl.Path`); runbook takes both, so either waits.
        """
        row = conn.execute("SELECT current_database(), current_schema()").fetchone()
        assert row is not None  # a SELECT without FROM returns one row
        database, schema = row
        if schema is None:
            self._schema(conn)  # raises the sentence
        return lock_id(f"/{database}", schema, self.table), lock_id(database, schema, self.table)

    def lock(self, conn: psycopg.Connection) -> None:
        """postgres.go's Lock: `SELECT pg_advisory_lock(id)`, session-level, waiting until it is free."""
        for lid in self.lock_ids(conn):
            conn.execute("SELECT pg_advisory_lock(%s::bigint)", (lid,))

    def unlock(self, conn: psycopg.Connection) -> None:
        """postgres.go's Unlock: `SELECT pg_advisory_unlock(id)`."""
        for lid in reversed(self.lock_ids(conn)):
            conn.execute("SELECT pg_advisory_unlock(%s::bigint)", (lid,))

    # -- writing (inside the caller's transaction; never commits) -----------------------------------------------

    def _ensure_table(self, conn: psycopg.Connection) -> None:
        """postgres.go's ensureVersionTable: look first (a role without CREATE can still write an existing table),
        then create it with golang-migrate's own DDL."""
        if self._exists(conn):
            return
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version bigint not null primary key, dirty boolean not null)"
            ).format(self._name(conn))
        )

    def _set_version(self, conn: psycopg.Connection, version: int, dirty: bool) -> None:
        """postgres.go's SetVersion: TRUNCATE, then the one row (none for a clean NilVersion)."""
        self._ensure_table(conn)
        name = self._name(conn)
        conn.execute(sql.SQL("TRUNCATE {}").format(name))
        if version >= 0 or dirty:
            conn.execute(sql.SQL("INSERT INTO {} (version, dirty) VALUES (%s, %s)").format(name), (version, dirty))

    def record_applied(
        self,
        conn: psycopg.Connection,
        migration: Migration,
        migrations: list[Migration],
        *,
        ran: bool = True,
        execution_ms: int = 0,
        installed_by: str = "",
    ) -> str:
        """The row `migrate up` leaves after the migration (and `migrate force V` for a baseline): (V, false).

        A migration applied out of order (--out-of-order: older than the current version) leaves a clean higher
        version where it is: golang-migrate would otherwise take the later migrations for pending and run them
        again."""
        current = self._current(conn)
        if current is not None and not current[1] and current[0] > int(migration.version):
            return f"{self.table} stays at version {current[0]} ({migration.version} applied out of order)"
        self._set_version(conn, int(migration.version), False)
        return f"{self.table} at version {migration.version}"

    def _current(self, conn: psycopg.Connection) -> tuple[int, bool] | None:
        """The one row (version, dirty), or None when there is no table or no row."""
        regclass = conn.execute(
            "SELECT to_regclass(format('%%I.%%I', current_schema(), %s::text))", (self.table,)
        ).fetchone()
        assert regclass is not None  # a SELECT without FROM returns one row
        exists = regclass[0]
        if exists is None:
            return None
        row = conn.execute(sql.SQL("SELECT version, dirty FROM {} LIMIT 1").format(self._name(conn))).fetchone()
        return (int(row[0]), bool(row[1])) if row else None

    def record_failed(self, conn: psycopg.Connection, migration: Migration, migrations: list[Migration]) -> str:
        """The row `migrate up` leaves when the migration fails part way: (V, true), which stops the next run."""
        self._set_version(conn, int(migration.version), True)
        return f"{self.table} dirty at version {migration.version}"

    def record_rolled_back(self, conn: psycopg.Connection, migration: Migration, migrations: list[Migration]) -> str:
        """The row `migrate down 1` leaves: the previous migration's version, or no row (NilVersion) for the
        first migration."""
        previous = _previous(int(migration.version), migrations)
        self._set_version(conn, previous, False)
        if previous == NIL_VERSION:
            return f"{self.table} emptied (no migration applied)"
        return f"{self.table} at version {previous}"


def _previous(version: int, migrations: list[Migration]) -> int:
    """The version of the migration before `version` in golang-migrate's order; NilVersion (-1) for the first."""
    return max((int(m.version) for m in migrations if int(m.version) < version), default=NIL_VERSION)
