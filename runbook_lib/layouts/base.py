"""What every layout gives runbook: its migrations in order, and its history table read and written as the tool does."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # start-up time: config reads LayoutSettings before any connection
    import psycopg

RUNBOOK = "runbook"  # batch folders with batch.toml (runbook's own)
PRISMA = "prisma"  # <timestamp>_<name>/migration.sql
GOLANG_MIGRATE = "golang-migrate"  # <version>_<name>.up.sql / .down.sql
FLYWAY = "flyway"  # V<version>__<description>.sql, U<version>__..., R__...
DRIZZLE = "drizzle"  # NNNN_<tag>.sql in meta/_journal.json's order
LAYOUTS = (RUNBOOK, PRISMA, GOLANG_MIGRATE, FLYWAY, DRIZZLE)
TOOL_LAYOUTS = (GOLANG_MIGRATE, FLYWAY, DRIZZLE)


@dataclass(frozen=True)
class LayoutSettings:
    """runbook.toml's settings for a tool's layout (`[flyway]`, `[golang-migrate]`, `[drizzle]`); the tool's
    defaults where the file leaves them out. Only the keys of the chosen layout mean anything."""

    layout: str | None = None  # None: found from the files
    # Flyway: flyway.placeholders (${name} -> value), flyway.schemas (the first holds the table, and is the
    # search_path with the others after it), flyway.table
    placeholders: dict[str, str] = field(default_factory=dict)
    schemas: tuple[str, ...] = ()
    table: str | None = None  # Flyway's or golang-migrate's table name (None: the tool's default)
    # Drizzle: the migrations schema and table (drizzle-kit's migrations.schema / migrations.table)
    migrations_schema: str | None = None
    migrations_table: str | None = None
    rollback_dir: Path | None = None  # a folder of hand-written undo scripts, matched to migrations by version
    out_of_order: bool = False  # a pending migration older than the last applied one may run (else refused)


@dataclass(frozen=True)
class Migration:
    """One migration as the tool's folder holds it, in the tool's order."""

    version: str  # the tool's key: golang-migrate "20240826120919", Flyway "1.0.0.3.1" ("" for R__), Drizzle's tag
    name: str  # what runbook shows and records: the file name without .sql (and without .up for golang-migrate)
    description: str  # Flyway's description ("schema-create spring batch"), else the name after the version
    path: Path  # the forward SQL file, as stored
    sql: str  # the text to run: the file's, with the tool's placeholders substituted
    down: Path | None = None  # the undo script (golang-migrate .down.sql, Flyway U or a rollback folder's file)
    kind: str = "versioned"  # Flyway: "versioned" or "repeatable"
    created_at: int | None = None  # Drizzle: the journal's `when` (milliseconds), written as created_at
    checksum: str = ""  # the tool's own checksum of the file as stored ("" where the tool keeps none)


@dataclass(frozen=True)
class AppliedRow:
    """What the tool's history says of one migration."""

    key: str  # the Migration.version (or, for Flyway's repeatables, the name) the row is for
    checksum: str | None = None  # the tool's, as stored (None where it keeps none)
    applied_at: datetime | None = None
    applied_by: str | None = None


@dataclass(frozen=True)
class ToolState:
    """The tool's history as its own runner reads it."""

    exists: bool  # the table is there
    applied: dict[str, AppliedRow] = field(default_factory=dict)  # by Migration.version
    blocked: str = ""  # a sentence when the tool would refuse to go on (golang-migrate dirty, Flyway success = false)
    last: str | None = None  # the version the tool considers current (golang-migrate's single row)


class History(Protocol):
    """A tool's history table: read as the tool reads it, written as the tool writes it.

    Writes happen on the migration's own connection inside its transaction (a non-transactional migration:
    right after it), so a crash never leaves the tool's history and the database apart.
    """

    label: str  # e.g. "golang-migrate's schema_migrations", shown wherever runbook names the history

    def read(self, conn: psycopg.Connection, migrations: list[Migration]) -> ToolState: ...

    def lock(self, conn: psycopg.Connection) -> None:
        """Take the advisory lock the tool's own runner takes (held until the connection's session ends, or
        its transaction for a transaction-level lock), so a concurrent run of the tool waits."""

    def unlock(self, conn: psycopg.Connection) -> None: ...

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
        """The row(s) the tool writes after a successful migration (creating the table as the tool does when it
        is missing); `ran` False: recorded without running it (`runbook baseline`). Returns what was done."""

    def record_failed(self, conn: psycopg.Connection, migration: Migration, migrations: list[Migration]) -> str:
        """The row(s) the tool leaves when a migration fails after some of it committed (statements outside a
        transaction), which stop the tool's next run; "" where the tool records no failure."""

    def record_rolled_back(self, conn: psycopg.Connection, migration: Migration, migrations: list[Migration]) -> str:
        """What the tool's history says after the migration's undo script ran."""


def read_text(path: Path) -> str:
    """A SQL file's text exactly as its bytes say (CRLF kept), as the tools send it."""
    with path.open(encoding="utf-8", newline="") as handle:
        return handle.read()
