"""Finding batches: the folders of a migrations directory, numbered, with their dependencies checked."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from runbook_lib import config
from runbook_lib.batch.manifest import read as read_manifest
from runbook_lib.batch.model import MANIFEST, MIGRATION, Batch
from runbook_lib.errors import BatchError
from runbook_lib.layouts import detect
from runbook_lib.layouts.base import DRIZZLE, FLYWAY, GOLANG_MIGRATE, TOOL_LAYOUTS, LayoutSettings
from runbook_lib.tomltext import line_of as _line_of


def _folder_number(path: Path) -> int | None:
    match = re.match(r"^(\d+)", path.name)
    return int(match.group(1)) if match else None


def load_folder(path: Path, *, position: int, previous: int | None) -> Batch:
    """One batch folder; `position` and `previous` number folders that have no batch.toml (Prisma)."""
    if not (path / MIGRATION).is_file():
        raise BatchError(f"{path} has no {MIGRATION}; every batch folder needs one (the forward change).")
    manifest = path / MANIFEST
    if not manifest.is_file():
        return Batch(
            number=position,
            name=path.name,
            path=path,
            title=path.name,
            type="Prisma migration",
            depends_on=(previous,) if previous is not None else (),
        )
    return read_manifest(manifest)


def _where(batch: Batch, key: str) -> str:
    """`<folder>/batch.toml line N` where `key` is set; the folder alone for a Prisma folder (no batch.toml)."""
    manifest = batch.path / MANIFEST
    if not manifest.is_file():
        return str(batch.path)
    return f"{manifest} line {_line_of(manifest.read_text(encoding='utf-8'), key)}"


@dataclass(frozen=True)
class Discovery:
    """The batches of a migrations folder, and the folders skipped because they hold no migration.sql.

    Some projects keep other things among their migrations (TypeScript data migrations, notes); those
    are not batches, but a command says it passed them over rather than hiding them.
    """

    root: Path
    batches: list[Batch]
    skipped: tuple[Path, ...] = ()
    broken: tuple[tuple[Path, str], ...] = ()  # scan(keep_going=True): a folder that cannot be read, and why
    layout: str = ""  # another tool's layout (golang-migrate, flyway, drizzle); "" for batch or Prisma folders

    @property
    def empty(self) -> bool:
        """No migration at all: a new project, said as such rather than as "every migration is applied"."""
        return not self.batches and not self.broken

    @property
    def note(self) -> str:
        """One line naming the skipped folders (a Drizzle folder's files its journal does not list); empty when
        none was skipped."""
        if not self.skipped:
            return ""
        listed = ", ".join(p.name for p in self.skipped)
        if self.layout:
            return (
                f"skipped {len(self.skipped)} file(s) of {self.root} that {self.layout} does not run either "
                f"(not in its order): {listed}"
            )
        return (
            f"skipped {len(self.skipped)} folder(s) of {self.root} with no {MIGRATION} "
            f"(not migrations runbook can run): {listed}"
        )


def _order(folders: list[Path]) -> list[Path]:
    """batch.toml projects by the number before the name; Prisma's layout by byte order of the names.

    Prisma sorts its folders as `LC_ALL=C sort` does, so a stamp of another length
    (`20250625_add_pivot_table_charttype` among `20250101120000_...`) stays where Prisma runs it.
    """
    if not any((p / MANIFEST).is_file() for p in folders):
        return sorted(folders, key=lambda p: p.name.encode("utf-8"))
    return sorted(folders, key=lambda p: (_folder_number(p) is None, _folder_number(p) or 0, p.name))


def scan(migrations_dir: Path | str, *, keep_going: bool = False) -> Discovery:
    """Every batch under `migrations_dir`, in order, with the folders that hold no migration.sql.

    Duplicate numbers and unknown dependencies are refused. Folders without batch.toml (Prisma's
    layout) are numbered 1, 2, ... by their order, counting only the ones that are migrations.
    `keep_going` (`runbook status`): a folder whose files are malformed, or that depends on one, is
    listed in `broken` with the reason instead of refusing the whole folder.
    """
    root = Path(migrations_dir)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise BatchError(
            f"Migrations folder {root} {what}; pass --migrations-dir with the folder holding your batches."
        )
    settings = config.layout_of_folder(root)
    layout = detect.layout_of(root, settings)
    if layout in TOOL_LAYOUTS:
        return _tool_scan(root, layout, settings)
    folders = _order([p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))])
    batches: list[Batch] = []
    skipped: list[Path] = []
    broken: list[tuple[Path, str]] = []
    previous: int | None = None
    for folder in folders:
        if not any((folder / name).exists() for name in (MIGRATION, MANIFEST)):
            skipped.append(folder)
            continue
        try:
            batch = load_folder(folder, position=len(batches) + 1, previous=previous)
        except BatchError as exc:
            if not keep_going:
                raise
            broken.append((folder, str(exc)))
            continue
        batches.append(batch)
        previous = batch.number
    if not batches and not broken:
        detect.refuse_unreadable(root)  # no migration found: a folder of .sql files is not an empty history
    _refuse_mixed_layouts(root, [b.path for b in batches])
    seen: dict[int, Batch] = {}
    for batch in batches:
        if batch.number in seen:
            raise BatchError(
                f"Batch number {batch.number} is used by both {_where(seen[batch.number], 'batch')} and "
                f"{_where(batch, 'batch')}; give each batch its own number in batch.toml."
            )
        seen[batch.number] = batch
    for batch in list(batches):
        for dep in batch.depends_on:
            if dep not in seen:
                missing = BatchError(
                    f"{_where(batch, 'depends_on')}: depends_on names batch {dep}, which is not in {root}; "
                    "fix depends_on or add that batch."
                )
                if not (keep_going and broken):  # with a broken folder, that may be the batch it names
                    raise missing
                broken.append((batch.path, str(missing)))
                batches.remove(batch)
                del seen[batch.number]
                break
    _refuse_cycles(seen)
    return Discovery(root, sorted(batches, key=lambda b: b.number), tuple(skipped), tuple(broken))


_KIND = {GOLANG_MIGRATE: "golang-migrate migration", FLYWAY: "Flyway migration", DRIZZLE: "Drizzle migration"}


_TOOL_SCANS: dict[tuple, Discovery] = {}  # the last reading of each tool folder, by the files' names, sizes, times


def _signature(root: Path, settings: LayoutSettings) -> tuple:
    """What a tool folder's reading depends on: every file under it (name, size, mtime) and the settings; a stat
    per file, where reading them again costs every file's text and checksum (a release reads the folder for
    each of its phases and migrations)."""
    files = []
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        files.append((str(path), stat.st_size, stat.st_mtime_ns))
    return (str(root), repr(settings), tuple(files))


def _tool_scan(root: Path, layout: str, settings: LayoutSettings) -> Discovery:
    """Another tool's folder, read by its layout module in the tool's order: numbered 1, 2, ... as Prisma's
    folders are, each depending on the one before. Read again only when a file under it changed."""
    settings = replace(settings, layout=layout)
    key = _signature(root, settings)
    cached = _TOOL_SCANS.get(key)
    if cached is not None:
        return replace(cached, batches=list(cached.batches))
    found = _read_tool(root, settings)
    _TOOL_SCANS.clear()  # one folder at a time is what a process works on
    _TOOL_SCANS[key] = found
    return replace(found, batches=list(found.batches))


def _read_tool(root: Path, settings: LayoutSettings) -> Discovery:
    layout = settings.layout or ""
    module = detect.tool(layout)
    batches = [
        Batch(
            number=n,
            name=m.name,
            path=m.path,
            title=m.description or m.name,
            type=_KIND[layout],
            depends_on=(n - 1,) if n > 1 else (),
            tool=m,
            settings=settings,
        )
        for n, m in enumerate(module.read(root, settings), start=1)
    ]
    unlisted = tuple(module.unlisted(root)) if hasattr(module, "unlisted") else ()
    return Discovery(root, batches, unlisted, layout=layout)


def _refuse_mixed_layouts(root: Path, folders: list[Path]) -> None:
    """A folder without batch.toml among batches that number themselves would be numbered by its position,
    silently another number than its name says: refused, naming it."""
    numbered = [f for f in folders if (f / MANIFEST).is_file()]
    unnumbered = [f for f in folders if not (f / MANIFEST).is_file()]
    if not numbered or not unnumbered:
        return
    folder = unnumbered[0]
    guess = _folder_number(folder)
    example = f"batch = {guess}" if guess is not None else "batch = N"
    raise BatchError(
        f"{folder} has no {MANIFEST}, unlike the other batches of {root} (e.g. {numbered[0].name}); add one "
        f"with `{example}` and a title, or remove every {MANIFEST} to number the folders by their order "
        f"(Prisma's layout)."
    )


def discover(migrations_dir: Path | str) -> list[Batch]:
    """Every batch under `migrations_dir`, in order (`scan` also says which folders it skipped)."""
    return scan(migrations_dir).batches


def _refuse_cycles(batches: dict[int, Batch]) -> None:
    state: dict[int, int] = {}

    def visit(number: int, trail: list[int]) -> None:
        if state.get(number) == 2:
            return
        if state.get(number) == 1:
            cycle = " -> ".join(str(n) for n in [*trail[trail.index(number) :], number])
            where = ", ".join(_where(batches[n], "depends_on") for n in trail[trail.index(number) :])
            raise BatchError(
                f"Batches depend on each other in a cycle ({cycle}; see {where}); "
                "remove one of these depends_on entries."
            )
        state[number] = 1
        for dep in batches[number].depends_on:
            visit(dep, [*trail, number])
        state[number] = 2

    for number in batches:
        visit(number, [])


def find(migrations_dir: Path | str, number: int) -> Batch:
    batches = discover(migrations_dir)
    for batch in batches:
        if batch.number == number:
            return batch
    known = ", ".join(str(b.number) for b in batches) or "none"
    raise BatchError(
        f"Batch {number} is not in {migrations_dir} (batches there: {known}); check the number or --migrations-dir."
    )
