"""What every command shares: where things live, which database, and the options with their one set of defaults.

Where things live: the example, the notebooks, the embedded server's state and the reports.
Two ways to run, decided in one place (`checkout()`):

- from a checkout (the folder above runbook_lib holds pyproject.toml and notebooks/; `pip install -e .`
  too): the notebooks are notebooks/, the example examples/crm/, run folders go to reports/ and the
  embedded server's state to .runbook/, all in the checkout;
- from an installed wheel: the notebooks and the example are the copies the wheel carries inside the
  package (runbook_lib/notebook/ipynb, runbook_lib/db/example_crm: pyproject's package-dir maps them onto
  those same two folders at build time), run folders go to ./reports and the state to ./.runbook of the
  current directory.

RUNBOOK_REPORTS_DIR and RUNBOOK_HOME move the reports and the state in both cases.
"""

from __future__ import annotations

import functools
import os
import tomllib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

from runbook_lib.errors import BatchError, ProjectError, RunbookError
from runbook_lib.layouts import settings as layout_settings
from runbook_lib.layouts.base import LayoutSettings
from runbook_lib.tomltext import line_of

PACKAGE_DIR = Path(__file__).resolve().parent

#: Inside an installed package: the data-only subpackages pyproject.toml maps onto notebooks/ and examples/crm/.
PACKAGED_NOTEBOOKS = PACKAGE_DIR / "notebook" / "ipynb"
PACKAGED_EXAMPLE = PACKAGE_DIR / "db" / "example_crm"


def checkout() -> Path | None:
    """The checkout runbook_lib belongs to (pyproject.toml and notebooks/ next to it), None when installed."""
    candidate = PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").is_file() and (candidate / "notebooks").is_dir():
        return candidate
    return None


def project_root() -> Path:
    """The checkout; for an installed package, the current directory (its reports/ and .runbook/ go there)."""
    return checkout() or Path.cwd()


def example_dir() -> Path:
    root = checkout()
    return root / "examples" / "crm" if root else PACKAGED_EXAMPLE


def example_migrations_dir() -> Path:
    return example_dir() / "migrations"


# --- the project's migrations ------------------------------------------------------------------

#: A project's own settings file: the migrations folder (relative to the file), and the ledger's schema.
PROJECT_FILE = "runbook.toml"
PROJECT_KEYS = ("migrations_dir", "ledger_schema", "layout", "flyway", "golang-migrate", "drizzle")
#: Looked for, in this order, in each directory from the current one up, when there is no runbook.toml: Prisma's,
#: then the folders golang-migrate, Flyway (plain and Maven/Gradle) and Drizzle Kit projects keep theirs in.
CONVENTIONAL_DIRS = (
    Path("prisma") / "migrations",
    Path("migrations"),
    Path("db") / "migrations",
    Path("db") / "migration",
    Path("src") / "main" / "resources" / "db" / "migration",
    Path("drizzle"),
)


@dataclass(frozen=True)
class ProjectFile:
    """runbook.toml, read: each key None where the file leaves it out."""

    path: Path
    migrations_dir: Path | None = None
    ledger_schema: str | None = None  # where runbook keeps its ledger when the role may not create `runbook`
    layout: LayoutSettings = field(default_factory=LayoutSettings)  # `layout` and the tool's own table ([flyway], ...)


def _read_project_file(path: Path) -> ProjectFile:
    """runbook.toml's settings; an unknown key or a bad value is refused with its line."""
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProjectError(
            f"{path} is not valid TOML ({exc}); fix it, or remove it and pass --migrations-dir."
        ) from None
    for key in raw:
        if key not in PROJECT_KEYS:
            raise ProjectError(
                f"{path} line {line_of(text, key)}: unknown key {key!r}; the keys are {', '.join(PROJECT_KEYS)}."
            )
    folder = raw.get("migrations_dir")
    if folder is not None and (not isinstance(folder, str) or not folder.strip()):
        raise ProjectError(
            f"{path} line {line_of(text, 'migrations_dir')}: migrations_dir must name the folder of "
            'your migrations, relative to this file (migrations_dir = "prisma/migrations").'
        )
    schema = raw.get("ledger_schema")
    if schema is not None and (not isinstance(schema, str) or not schema.strip() or len(schema.encode()) > 63):
        raise ProjectError(
            f"{path} line {line_of(text, 'ledger_schema')}: ledger_schema must name a schema (at most "
            '63 bytes) the migration role may create tables in (ledger_schema = "app_migrations").'
        )
    layout, tool_folder = layout_settings.read(path, text, raw)
    found = (path.parent / folder).resolve() if folder else tool_folder
    return ProjectFile(path, found, schema, layout)


def _project_file_path(start: Path | None = None) -> Path | None:
    """The nearest runbook.toml from `start` (the current directory) up."""
    # os.path rather than pathlib: the ledger asks on every write, a release writes thousands of rows
    here = os.path.realpath(start or os.getcwd())
    while True:
        candidate = os.path.join(here, PROJECT_FILE)
        if os.path.isfile(candidate):
            return Path(candidate)
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def find_project_file(start: Path | None = None) -> ProjectFile | None:
    """The nearest runbook.toml from `start` (the current directory) up, read; None when there is none."""
    path = _project_file_path(start)
    return _read_project_file(path) if path else None


def project_ledger_schema(start: Path | None = None) -> str | None:
    """runbook.toml's ledger_schema, found from the current directory up; the file read once per version: the
    ledger asks on every write (a backfill writes its position after every batch)."""
    path = _project_file_path(start)
    if path is None:
        return None
    return _read_once(path).ledger_schema


def _read_once(path: Path) -> ProjectFile:
    """runbook.toml read once per version of the file (its size and time): the ledger asks for its schema on every
    write and discovery for the layout on every reading of the folder."""
    stat = path.stat()
    return _read_version(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _read_version(path: str, mtime_ns: int, size: int) -> ProjectFile:
    return _read_project_file(Path(path))


def find_migrations_dir(start: Path | None = None) -> Path | None:
    """The project's migrations folder, looking from `start` (the current directory) up to the root.

    In each directory: runbook.toml (its migrations_dir), else prisma/migrations, else migrations/; the
    first directory holding any of them decides, so a monorepo's package finds its own before the root's.
    """
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        project_file = directory / PROJECT_FILE
        if project_file.is_file():
            found = _read_project_file(project_file).migrations_dir
            if found is not None:
                return found
        for candidate in CONVENTIONAL_DIRS:
            if (directory / candidate).is_dir():
                return directory / candidate
    return None


def layout_of_folder(folder: Path | str) -> LayoutSettings:
    """The layout settings for a migrations folder: the nearest runbook.toml from the folder up (a project's file
    sits above its migrations), else from the current directory up; the defaults when there is none."""
    found = _project_file_path(Path(folder)) or _project_file_path()
    return _read_once(found).layout if found else LayoutSettings()


def migrations_dir(explicit: Path | str | None = None) -> Path:
    """--migrations-dir when given, else the project's (`find_migrations_dir`); refused when there is none.

    The bundled example is the default only of `runbook demo` and `runbook example`: anywhere else a
    command silently run against the example's batches would report on the wrong project.
    """
    if explicit:
        return Path(explicit)
    found = find_migrations_dir()
    if found is None:
        raise ProjectError(
            f"No migrations folder found in {Path.cwd()} or above (no {PROJECT_FILE}, prisma/migrations or "
            f'migrations/); pass --migrations-dir, or add a {PROJECT_FILE} with migrations_dir = "<folder>".'
        )
    return found


def notebooks_dir() -> Path:
    root = checkout()
    return root / "notebooks" if root else PACKAGED_NOTEBOOKS


def state_dir() -> Path:
    """Runtime state (embedded server data, lock files), outside the user's home; RUNBOOK_HOME moves it."""
    return Path(os.environ.get("RUNBOOK_HOME") or project_root() / ".runbook")


def default_reports_dir() -> Path:
    """reports/ in the project (the current directory for an installed package); RUNBOOK_REPORTS_DIR moves it."""
    return Path(os.environ.get("RUNBOOK_REPORTS_DIR") or project_root() / "reports")


# --- the target database ---------------------------------------------------------------------


def environment_url(explicit: str | None = None) -> str | None:
    """The database a command or notebook was given: --database-url (or the parameter), else DATABASE_URL.

    The one place the URL is looked up; what happens without one (start the embedded server, use it if
    it runs, or refuse) is the caller's choice.
    """
    return explicit or os.environ.get("DATABASE_URL") or None


@contextmanager
def environment_variable(name: str, value: str) -> Iterator[None]:
    """`name` set to `value` for what starts meanwhile (a kernel inherits it), then as it was."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def url_in_environment(url: str) -> AbstractContextManager[None]:
    """DATABASE_URL set to `url` for what starts meanwhile (a kernel inherits it), then as it was."""
    return environment_variable("DATABASE_URL", url)


# --- options: the one set of defaults --------------------------------------------------------

DIRECT, ONLINE = "direct", "online"
STRATEGIES = (DIRECT, ONLINE)
BACKOFF_MS = 200  # the first pause between lock attempts; it doubles
MAX_BACKOFF_S = 2.0  # between attempts: long enough for a blocker to finish, short enough to keep trying


def whole_number(name: str, value: object) -> int:
    """A parameter that must be an integer (papermill passes what it was given)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().lstrip("-").isdigit():
        raise BatchError(f"The parameter {name} must be a whole number, not {value!r}; pass it as -p {name} 7.")
    return int(value)


def flag(name: str, value: object) -> bool:
    """A True/False parameter; a string like 'yes' would silently count as True, so it is refused."""
    if not isinstance(value, bool):
        raise BatchError(f"The parameter {name} must be True or False, not {value!r}; pass it as -p {name} True.")
    return value


@overload
def seconds(name: str, value: object) -> float: ...


@overload
def seconds(name: str, value: object, *, optional: bool) -> float | None: ...


def seconds(name: str, value: object, *, optional: bool = False) -> float | None:
    """A duration parameter in seconds, 0 or more (None allowed where the option is off by default)."""
    if value is None and optional:
        return None
    return _at_least_zero(name, value, "a number of seconds, 0 or more" + (" or None (off)" if optional else ""), 30)


def rate(name: str, value: object) -> float:
    """A throttle's rate, 0 (no limit) or more."""
    return _at_least_zero(name, value, "a number, 0 or more (0: no limit)", 20)


def megabytes(name: str, value: object) -> float | None:
    """An amount of WAL in MB, 0 or more; None leaves it to the server's settings."""
    if value is None:
        return None
    return _at_least_zero(
        name, value, "a number of MB, 0 or more (0: never), or None (the server's checkpoint distance)", 1024
    )


def _at_least_zero(name: str, value: object, what: str, example: int) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise RunbookError(f"The parameter {name} must be {what}, not {value!r}; pass it as -p {name} {example}.")
    return float(value)


@dataclass(frozen=True)
class Options:
    """How apply and rollback change a database, and what validate counts as a failure.

    The CLI's flags, the notebooks' parameters, the phase functions and the fleet all start from
    `Options()`, so a default is written once, here.
    """

    dry_run: bool = False  # execute, measure, then roll back
    force: bool = False  # apply: go ahead after a NO-GO preflight
    strategy: str = DIRECT  # direct: one transaction; online: short steps that avoid long write locks
    lock_timeout_ms: int = 200  # how long one attempt may wait for a lock
    statement_timeout_ms: int = 0  # 0: none
    max_attempts: int = 10  # attempts when a lock is not granted in time
    # Blockers (execution.blockers): a session holding a conflicting lock, idle in transaction or in a
    # transaction older than blocker_threshold_ms, is waited for without queuing, up to wait_for_blockers_s.
    wait_for_blockers_s: float = 60.0
    terminate_blockers_after_s: float | None = None  # opt-in: terminate an idle-in-transaction blocker after this
    blocker_threshold_ms: int = 50  # an application's transaction younger than this is not a blocker
    # online: data statements in batches (execution.backfill)
    # the transaction time each batch's size adapts toward: its rows stay locked that long, so an application
    # write to one of them waits at most about this (10 ms keeps the stall within 20 ms; benchmarks/RESULTS.md)
    backfill_batch_ms: int = 10
    backfill_rows_per_s: int = 0  # throttle: at most this many rows changed per second (0: no limit)
    backfill_pause_ms: int = 0  # throttle: a pause after every batch
    max_replica_lag_ms: int = 1000  # pause batches while a replica's replay lag is over this (0: do not watch)
    backfill_wal_mb_per_s: float = 0.0  # throttle: MB of WAL the server may write per second (0: no limit)
    # from this much WAL on, the backfill's session writes back the pages it dirties as it goes (execution.writeback);
    # None: from the server's checkpoint distance (max_wal_size / (1 + checkpoint_completion_target)); 0: never
    backfill_flush_from_mb: float | None = None
    # validate: a test that could not be run (its precondition could not be established) fails the validation,
    # instead of being reported as not run, neither a pass nor a failure
    fail_on_not_run: bool = False
    # after a successful apply (not a dry run), run the project's `prisma generate` in the parent process and
    # record it (orm.prisma_generate, prisma_generate.json); a failure is a WARN. Not a notebook parameter.
    prisma_generate: bool = False
    # deploy, run, apply: a pending migration older than the last applied one may run (Flyway's outOfOrder); else
    # refused before anything runs. Not a notebook parameter: the command checks it (commands.refuse_out_of_order).
    out_of_order: bool = False

    def checked(self) -> Options:
        """The same options with their types proven; a wrong one is refused naming the parameter."""
        values = Options(
            dry_run=flag("dry_run", self.dry_run),
            force=flag("force", self.force),
            strategy=self.strategy,
            lock_timeout_ms=whole_number("lock_timeout_ms", self.lock_timeout_ms),
            statement_timeout_ms=whole_number("statement_timeout_ms", self.statement_timeout_ms),
            max_attempts=whole_number("max_attempts", self.max_attempts),
            wait_for_blockers_s=seconds("wait_for_blockers_s", self.wait_for_blockers_s),
            terminate_blockers_after_s=seconds(
                "terminate_blockers_after_s", self.terminate_blockers_after_s, optional=True
            ),
            blocker_threshold_ms=whole_number("blocker_threshold_ms", self.blocker_threshold_ms),
            backfill_batch_ms=whole_number("backfill_batch_ms", self.backfill_batch_ms),
            backfill_rows_per_s=whole_number("backfill_rows_per_s", self.backfill_rows_per_s),
            backfill_pause_ms=whole_number("backfill_pause_ms", self.backfill_pause_ms),
            max_replica_lag_ms=whole_number("max_replica_lag_ms", self.max_replica_lag_ms),
            backfill_wal_mb_per_s=rate("backfill_wal_mb_per_s", self.backfill_wal_mb_per_s),
            backfill_flush_from_mb=megabytes("backfill_flush_from_mb", self.backfill_flush_from_mb),
            fail_on_not_run=flag("fail_on_not_run", self.fail_on_not_run),
            prisma_generate=flag("prisma_generate", self.prisma_generate),
            out_of_order=flag("out_of_order", self.out_of_order),
        )
        if values.strategy not in STRATEGIES:
            raise RunbookError(f"Unknown strategy {values.strategy!r}; use one of: {', '.join(STRATEGIES)}.")
        if (
            values.lock_timeout_ms < 0
            or values.statement_timeout_ms < 0
            or values.max_attempts < 1
            or values.blocker_threshold_ms < 0
        ):
            raise RunbookError(
                "lock_timeout_ms, statement_timeout_ms and blocker_threshold_ms must be 0 or more and max_attempts at "
                f"least 1; got {values.lock_timeout_ms}, {values.statement_timeout_ms}, {values.blocker_threshold_ms} "
                f"and {values.max_attempts}."
            )
        if (
            values.backfill_batch_ms < 1
            or min(values.backfill_rows_per_s, values.backfill_pause_ms, values.max_replica_lag_ms) < 0
        ):
            raise RunbookError(
                "backfill_batch_ms must be at least 1 and backfill_rows_per_s, backfill_pause_ms and "
                f"max_replica_lag_ms 0 or more; got {values.backfill_batch_ms}, {values.backfill_rows_per_s}, "
                f"{values.backfill_pause_ms} and {values.max_replica_lag_ms}."
            )
        return values

    def parameters(self, phase: str) -> dict[str, object]:
        """The notebook parameters of `phase` (apply, rollback or validate) that differ from the defaults."""
        names = _PHASE_OPTIONS.get(phase, ())
        return {name: getattr(self, name) for name in names if getattr(self, name) != getattr(DEFAULTS, name)}


DEFAULTS = Options()
BLOCKER_OPTIONS = ("wait_for_blockers_s", "terminate_blockers_after_s", "blocker_threshold_ms")
BACKFILL_OPTIONS = (
    "backfill_batch_ms",
    "backfill_rows_per_s",
    "backfill_pause_ms",
    "max_replica_lag_ms",
    "backfill_wal_mb_per_s",
    "backfill_flush_from_mb",
)
_PHASE_OPTIONS = {
    "preflight": ("terminate_blockers_after_s",),  # refused there when the role may not signal another's session
    "apply": (
        "dry_run",
        "force",
        "strategy",
        "lock_timeout_ms",
        "statement_timeout_ms",
        "max_attempts",
        *BLOCKER_OPTIONS,
        *BACKFILL_OPTIONS,
    ),
    "rollback": ("dry_run", "lock_timeout_ms", "statement_timeout_ms", "max_attempts", *BLOCKER_OPTIONS),
    "validate": ("fail_on_not_run",),
}
