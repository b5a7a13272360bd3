"""Drizzle Kit's migrations folder and drizzle-orm's history table, read and written as drizzle-orm does.

Drizzle's rules, from drizzle-orm 0.45 (`src/migrator.ts` readMigrationFiles, `src/pg-core/dialect.ts`
PgDialect.migrate, `src/node-postgres/migrator.ts`; checked against the published package):

- the migrations are the entries of `meta/_journal.json`, in the journal's order, each read from `<tag>.sql`;
  a listed file that is missing stops the migrator; a .sql file the journal does not list is ignored;
- each file is split on `--> statement-breakpoint` and every chunk is sent as it is, all migrations in one
  transaction (so a chunk `COMMIT;` ends it early: teams use that to run CREATE INDEX CONCURRENTLY);
- the history is `drizzle.__drizzle_migrations (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)`,
  one row per migration: `hash` the sha256 hex of the file's text as read, `created_at` the entry's `when`;
- what runs is decided by the newest row alone (`ORDER BY created_at DESC LIMIT 1`): every migration whose
  `when` is greater than its created_at; the hash is written but never compared;
- no advisory lock, no failed state, no down migrations.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from runbook_lib.errors import BatchError
from runbook_lib.layouts.base import AppliedRow, LayoutSettings, Migration, ToolState, read_text

NAME = "drizzle"
JOURNAL = Path("meta") / "_journal.json"
BREAKPOINT = "--> statement-breakpoint"  # readMigrationFiles: query.split('--> statement-breakpoint')
DEFAULT_SCHEMA = "drizzle"  # PgDialect.migrate: config.migrationsSchema ?? 'drizzle'
DEFAULT_TABLE = "__drizzle_migrations"  # PgDialect.migrate: config.migrationsTable ?? '__drizzle_migrations'
_NUMBERED = re.compile(r"\d+_(.+)", re.DOTALL)


@dataclass(frozen=True)
class JournalEntry:
    """One entry of meta/_journal.json: the two keys drizzle-orm's migrator uses."""

    tag: str
    when: int


# --- the folder ------------------------------------------------------------------------------------------


def evidence(root: Path) -> int:
    """How strongly `root` looks like a Drizzle Kit folder: its journal's entry count (0 without a journal).

    A journal that cannot be read still counts as 1, so the folder is taken for Drizzle's and `read`
    explains what is wrong with it rather than another layout being guessed.
    """
    if not (root / JOURNAL).is_file():
        return 0
    try:
        return len(journal(root))
    except BatchError:
        return 1


def journal(root: Path) -> list[JournalEntry]:
    """The journal's entries in its order, refused with one sentence when drizzle-orm could not use them."""
    path = root / JOURNAL
    data = _journal_json(path)
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise BatchError(
            f'{path} has no "entries" list; regenerate it with `drizzle-kit generate` '
            "or restore it from version control."
        )
    parsed = [_entry(path, index, entry) for index, entry in enumerate(entries)]
    _refuse_duplicates(path, parsed)
    return parsed


def _journal_json(path: Path) -> object:
    """The journal parsed as JSON (drizzle-orm: JSON.parse of the file)."""
    if not path.is_file():
        raise BatchError(
            f"{path} is missing; Drizzle Kit's folder needs its journal (`drizzle-kit generate` writes it)."
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BatchError(f"{path} is not valid JSON ({exc}); restore it from version control.") from exc


def _entry(path: Path, index: int, entry: object) -> JournalEntry:
    """One entry: `tag` a file name without .sql, `when` integer milliseconds (written to a bigint column)."""
    if not isinstance(entry, dict):
        raise BatchError(f"{path} entry {index} is not an object; restore the journal from version control.")
    tag, when = entry.get("tag"), entry.get("when")
    if not isinstance(tag, str) or not tag or "/" in tag or "\\" in tag:
        raise BatchError(
            f'{path} entry {index} has no usable "tag" (the migration\'s file name without .sql); '
            "restore the journal from version control."
        )
    if not isinstance(when, int) or isinstance(when, bool):
        raise BatchError(
            f'{path} entry {index} ({tag}) has no integer "when" (milliseconds), which drizzle '
            "records as created_at; restore the journal from version control."
        )
    return JournalEntry(tag=tag, when=when)


def _refuse_duplicates(path: Path, entries: list[JournalEntry]) -> None:
    """A tag listed twice would run the same file twice; runbook keys migrations by tag."""
    seen: set[str] = set()
    for entry in entries:
        if entry.tag in seen:
            raise BatchError(f"{path} lists {entry.tag} twice; remove the duplicate entry.")
        seen.add(entry.tag)


def read(root: Path, settings: LayoutSettings) -> list[Migration]:
    """The journal's migrations in journal order, as readMigrationFiles reads them (`<tag>.sql` per entry)."""
    return [_migration(root, entry, settings) for entry in journal(root)]


def _migration(root: Path, entry: JournalEntry, settings: LayoutSettings) -> Migration:
    path = root / f"{entry.tag}.sql"
    text = _sql_text(root, entry.tag, path)
    match = _NUMBERED.fullmatch(entry.tag)
    return Migration(
        version=entry.tag,
        name=entry.tag,
        description=match.group(1) if match else entry.tag,
        path=path,
        sql=text,
        down=_down(entry.tag, settings),
        created_at=entry.when,
        checksum=checksum(text),
    )


def _sql_text(root: Path, tag: str, path: Path) -> str:
    """The file's text; readMigrationFiles throws "No file ... found" for a listed file it cannot read."""
    if not path.is_file():
        raise BatchError(
            f"{root / JOURNAL} lists {tag}, but {tag}.sql is missing; restore the file or remove "
            "its entry from the journal (drizzle-orm's migrator refuses the folder too)."
        )
    try:
        return read_text(path)
    except UnicodeDecodeError as exc:
        raise BatchError(f"{path} is not UTF-8 ({exc}); save it as UTF-8.") from exc


def _down(tag: str, settings: LayoutSettings) -> Path | None:
    """Drizzle has no down migrations: only a hand-written `<tag>.sql` in runbook's rollback folder."""
    if settings.rollback_dir is None:
        return None
    path = settings.rollback_dir / f"{tag}.sql"
    return path if path.is_file() else None


def checksum(text: str) -> str:
    """What drizzle-orm stores as `hash`: sha256 hex of the whole file's text (UTF-8), before it is split.

    readMigrationFiles (drizzle-orm 0.45.4 as published): `query = readFileSync(...).toString()` then
    `crypto.createHash('sha256').update(query)`; line endings as in the file. (A later source revision,
    drizzle-team/drizzle-orm 016e07d8, turns CRLF into LF before hashing and splitting: a CRLF file's row
    written by such a drizzle holds the LF text's hash.)
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def unlisted(root: Path) -> list[Path]:
    """The .sql files beside the journal that it does not list: drizzle-orm never runs them."""
    tags = {entry.tag for entry in journal(root)}
    return sorted((p for p in root.glob("*.sql") if p.is_file() and p.stem not in tags), key=lambda p: p.name.encode())


def statements(migration: Migration) -> list[str]:
    """The chunks drizzle-orm sends, one query each: the text split on `--> statement-breakpoint`, nothing
    trimmed or dropped (readMigrationFiles: `query.split('--> statement-breakpoint')`).

    A chunk may be blank (PostgreSQL answers an empty query), and `COMMIT;--> statement-breakpoint` ends
    drizzle's transaction so the next chunk (CREATE INDEX CONCURRENTLY) runs outside one.
    """
    return migration.sql.split(BREAKPOINT)


# --- the history table -----------------------------------------------------------------------------------


class History:
    """drizzle-orm's `__drizzle_migrations`, read as PgDialect.migrate reads it and written as it writes it."""

    def __init__(self, settings: LayoutSettings) -> None:
        self.schema = settings.migrations_schema or DEFAULT_SCHEMA
        self.table = settings.migrations_table or DEFAULT_TABLE
        self.label = f"Drizzle's {self.schema}.{self.table}"
        self._name = sql.Identifier(self.schema, self.table)

    def exists(self, conn: psycopg.Connection) -> bool:
        row = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s)",
            (self.schema, self.table),
        ).fetchone()
        assert row is not None  # SELECT EXISTS (...) returns one row
        return row[0]

    def read(self, conn: psycopg.Connection, migrations: list[Migration]) -> ToolState:
        """Applied as drizzle-orm decides: a migration runs when its `when` is greater than the newest row's
        created_at, so every migration whose `when` is at most that is applied (no row: none is).

        The newest row is drizzle's own query, `ORDER BY created_at DESC LIMIT 1`, which puts a NULL
        created_at first; drizzle reads it as Number(null) = 0, so then everything would run again.
        """
        if not self.exists(conn):
            return ToolState(exists=False)
        newest = conn.execute(
            sql.SQL("SELECT id, hash, created_at FROM {} ORDER BY created_at DESC LIMIT 1").format(self._name)
        ).fetchone()
        if newest is None:
            return ToolState(exists=True)
        applied = [m for m in migrations if m.created_at is not None and m.created_at <= int(newest[2] or 0)]
        hashes = self._hashes(conn, [m.created_at for m in applied])
        # _created_at(m) is m.created_at, set for every applied migration (the filter above)
        rows = {m.version: AppliedRow(key=m.version, checksum=hashes.get(_created_at(m))) for m in applied}
        return ToolState(exists=True, applied=rows, last=_latest(applied))

    def _hashes(self, conn: psycopg.Connection, created_at: list[int | None]) -> dict[int, str]:
        """The stored hash by created_at (the newest row's where a `when` was recorded twice)."""
        if not created_at:
            return {}
        found = conn.execute(
            sql.SQL("SELECT created_at, hash FROM {} WHERE created_at = ANY(%s) ORDER BY id").format(self._name),
            (created_at,),
        ).fetchall()
        return {int(when): hash_ for when, hash_ in found}

    def lock(self, conn: psycopg.Connection) -> None:
        """Nothing: drizzle-orm's pg migrator takes no advisory lock (PgDialect.migrate only creates the
        table, reads the newest row and runs one transaction), so there is no lock of drizzle's to wait on."""

    def unlock(self, conn: psycopg.Connection) -> None:
        """Nothing: `lock` took nothing."""

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
        """drizzle's row for the migration: (hash, created_at), as PgDialect.migrate inserts it after running
        one; the table made first with drizzle's own DDL when missing. Drizzle keeps no time, user or
        duration, and a baseline (`ran` False) is the same row. Runs in the caller's transaction."""
        when = _created_at(migration)
        created = self._create_when_missing(conn)
        conn.execute(
            sql.SQL('INSERT INTO {} ("hash", "created_at") VALUES (%s, %s)').format(self._name),
            (migration.checksum, when),
        )
        return f"{created}inserted ({migration.checksum[:12]}..., {when}) into {self.schema}.{self.table}"

    def _create_when_missing(self, conn: psycopg.Connection) -> str:
        """PgDialect.migrate's CREATE SCHEMA / CREATE TABLE IF NOT EXISTS, sent only when the table is missing
        (CREATE SCHEMA checks the database's CREATE privilege even when the schema exists)."""
        if self.exists(conn):
            return ""
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (\n\tid SERIAL PRIMARY KEY,\n\thash text NOT NULL,"
                "\n\tcreated_at bigint\n)"
            ).format(self._name)
        )
        return f"created {self.schema}.{self.table}; "

    def record_failed(self, conn: psycopg.Connection, migration: Migration, migrations: list[Migration]) -> str:
        """Nothing: drizzle-orm records no failure (its transaction rolls back, leaving no row)."""
        return ""

    def record_rolled_back(self, conn: psycopg.Connection, migration: Migration, migrations: list[Migration]) -> str:
        """Deletes the migration's row(s) so drizzle-orm's migrator runs it again.

        Matched by created_at alone, the only column drizzle decides by (the hash differs when the file was
        edited, or hashed by a drizzle that turns CRLF into LF). It only runs again once it is the newest:
        drizzle looks at the newest row, so rows of later migrations must go first (roll back newest first).
        """
        when = _created_at(migration)
        if not self.exists(conn):
            return f"{self.schema}.{self.table} does not exist: nothing to delete"
        deleted = conn.execute(sql.SQL("DELETE FROM {} WHERE created_at = %s").format(self._name), (when,)).rowcount
        row = conn.execute(
            sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE created_at > %s)").format(self._name), (when,)
        ).fetchone()
        assert row is not None  # SELECT EXISTS (...) returns one row
        later = row[0]
        said = f"deleted {deleted} row(s) with created_at {when} from {self.schema}.{self.table}"
        if later:
            return f"{said}; a later migration's row remains, so drizzle will not run {migration.version} again"
        return said


def _created_at(migration: Migration) -> int:
    if migration.created_at is None:
        raise BatchError(
            f"{migration.path} has no journal `when`, which drizzle records as created_at; "
            "list it in meta/_journal.json."
        )
    return migration.created_at


def _latest(applied: list[Migration]) -> str | None:
    """The applied migration drizzle counts from: the greatest `when` (the later entry on a tie)."""
    if not applied:
        return None
    return max(enumerate(applied), key=lambda pair: (pair[1].created_at, pair[0]))[1].version
