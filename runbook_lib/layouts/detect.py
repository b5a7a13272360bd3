"""Which layout a migrations folder holds: from runbook.toml's `layout` when set, else from the files.

A folder runbook cannot read is refused with what was found, never taken for an empty history: a golang-migrate
folder read as batch folders would hold no batch, and every migration would look applied.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from runbook_lib.errors import BatchError

if TYPE_CHECKING:
    import psycopg

from runbook_lib.layouts.base import DRIZZLE, FLYWAY, GOLANG_MIGRATE, LAYOUTS, PRISMA, RUNBOOK, History, LayoutSettings

# batch.model's names: it imports this package (layouts.base), so they are not imported from it
MIGRATION = "migration.sql"
MANIFEST = "batch.toml"


def tool(layout: str) -> ModuleType:
    """The module that reads `layout`'s folder and history (imported when a project uses it)."""
    if layout == GOLANG_MIGRATE:
        from runbook_lib.layouts import golang_migrate  # only a golang-migrate project needs it

        return golang_migrate
    if layout == FLYWAY:
        from runbook_lib.layouts import flyway  # only a Flyway project needs it

        return flyway
    if layout == DRIZZLE:
        from runbook_lib.layouts import drizzle  # only a Drizzle project needs it

        return drizzle
    raise ValueError(f"{layout!r} is not a tool layout")


def history(settings: LayoutSettings) -> History:
    """The tool's history table (its module's `History`) for a project's settings."""
    if settings.layout is None:
        raise ValueError("None is not a tool layout")  # as tool() refuses any other name
    return tool(settings.layout).History(settings)


def _folders(root: Path) -> tuple[int, int]:
    """Subfolders holding a migration.sql (Prisma's or runbook's), and those of them with a batch.toml."""
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]
    with_sql = [p for p in folders if (p / MIGRATION).is_file() or (p / MANIFEST).is_file()]
    return len(with_sql), sum(1 for p in with_sql if (p / MANIFEST).is_file())


def evidence(root: Path) -> dict[str, int]:
    """How many entries of `root` look like each tool's migrations (file names, and Drizzle's journal); the
    batch and Prisma folders only when a tool's files are there too (the ambiguity a layout must be named for)."""
    found = {layout: n for layout in (GOLANG_MIGRATE, FLYWAY, DRIZZLE) if (n := tool(layout).evidence(root))}
    if found:
        folders, manifests = _folders(root)
        found.update({k: v for k, v in ((RUNBOOK, manifests), (PRISMA, folders - manifests)) if v})
    return found


def layout_of(root: Path, settings: LayoutSettings | None = None) -> str:
    """The folder's layout: RUNBOOK for batch folders and Prisma's alike (`batch.discovery` tells them apart, and
    calls `refuse_unreadable` when it finds no migration); refused, in one sentence naming what was found, when
    it is ambiguous."""
    chosen = settings.layout if settings else None
    if chosen is not None:
        if chosen not in LAYOUTS:
            raise BatchError(
                f"runbook.toml's layout = {chosen!r} is not one runbook reads; use one of {', '.join(LAYOUTS)}."
            )
        return RUNBOOK if chosen == PRISMA else chosen
    found = evidence(root)
    if not found:
        return RUNBOOK
    if len(found) == 1:
        return next(iter(found))
    listed = " and ".join(f"{n} {k} migration(s)" for k, n in found.items())
    raise BatchError(
        f"{root} holds {listed}, so runbook cannot tell which tool's folder it is; set layout in "
        f'runbook.toml (layout = "{max(found, key=found.__getitem__)}"), or pass the folder of one.'
    )


def refuse_unreadable(root: Path) -> None:
    """A folder in which runbook found no migration: refused when it holds .sql files (a layout runbook does not
    read, or the wrong folder), never taken for a history with nothing pending; with no SQL at all it is a new
    project's (Prisma's migration_lock.toml alone, or nothing), and commands say it is empty."""
    sql = [p for p in root.rglob("*.sql") if not any(part.startswith(".") for part in p.relative_to(root).parts)]
    if not sql:
        return
    folders = Counter(p.parent for p in sql)
    where = "" if set(folders) == {root} else f" in {len(folders)} folder(s)"
    raise BatchError(
        f"{root} holds {len(sql)} .sql file(s){where} but no migration runbook can read (no <n>_<name>/"
        "migration.sql folders, golang-migrate .up.sql pairs, Flyway V<version>__<name>.sql scripts or a Drizzle "
        'meta/_journal.json); name the layout in runbook.toml (layout = "golang-migrate", "flyway" or '
        '"drizzle"), or pass --migrations-dir with the folder that holds the migrations.'
    )


@contextmanager
def tool_session(conn: psycopg.Connection, batch: object | None, *, prepare: bool = True) -> Iterator[str]:
    """While runbook applies another tool's migrations: the advisory lock that tool's own runner takes, so a
    concurrent run of the tool waits instead of interleaving; and what the tool does before its first migration
    (Flyway creates its schemas and says so in its history), committed before any migration runs. Yields what
    the preparation did ("" nothing). A batch of runbook's or Prisma's layout: nothing."""
    settings = getattr(batch, "settings", None)
    if getattr(batch, "tool", None) is None or settings is None:
        yield ""
        return
    tool_history = history(settings)
    tool_history.lock(conn)
    conn.commit()
    try:
        done = ""
        if prepare and hasattr(tool_history, "prepare"):
            done = tool_history.prepare(conn)
            conn.commit()
        yield done
    finally:
        if not conn.closed and not conn.broken:
            conn.rollback()
            tool_history.unlock(conn)
            conn.commit()
