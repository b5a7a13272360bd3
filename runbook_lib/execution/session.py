"""What every phase starts from: the target database (from the environment), the batch, the run folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import psycopg

from runbook_lib import batch as batch_mod
from runbook_lib import config
from runbook_lib.batch import discovery, history
from runbook_lib.batch.model import Batch, BatchInfo
from runbook_lib.config import whole_number
from runbook_lib.db import connection as database
from runbook_lib.db import embedded
from runbook_lib.errors import BatchError, DatabaseError
from runbook_lib.report import records
from runbook_lib.report.records import RunFolder

if TYPE_CHECKING:  # the annotations' DataFrame (start-up time: pandas loads when a table is built)
    import pandas as pd


def resolve_url(explicit: str | None = None) -> str:
    """--database-url, else DATABASE_URL, else the embedded server's demo database if it runs."""
    given = config.environment_url(explicit)
    if given:
        return given
    server = embedded.running()
    if server is not None:
        return server.database_url(embedded.DEMO_DATABASE)
    raise DatabaseError(
        "No database to run against: DATABASE_URL is not set and the embedded server is not running; "
        "set DATABASE_URL, or start the embedded server with `runbook server start` (or `make demo`)."
    )


def _facts_frame(f: database.ConnectionFacts, rest: list[tuple[str, str]]) -> pd.DataFrame:
    """What a phase notebook shows first: the target (its URL redacted), then what it works on."""
    import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

    rows = [
        ("database URL", f.url),
        ("server", f"PostgreSQL {f.server_version}"),
        ("database", f.database),
        ("user", f.user),
        *rest,
    ]
    return pd.DataFrame(rows, columns=["fact", "value"]).set_index("fact")


def _search_path(batch: Batch | None) -> tuple[str, ...]:
    """A Flyway project's `schemas` (runbook.toml): the search_path its scripts run with, as Flyway sets it."""
    settings = batch.settings if batch is not None else None
    return settings.schemas if settings is not None else ()


@dataclass
class Session:
    """One phase's view of the world; its repr never shows the password."""

    batch: Batch
    run: RunFolder
    facts: database.ConnectionFacts
    migrations_dir: Path
    url: str = field(repr=False)
    folder: list[Batch] | None = field(default=None, repr=False)  # the folder's batches, when already read

    def batches(self) -> list[Batch]:
        """Every batch of the migrations folder: the history matches Prisma's rows to them by name."""
        if self.folder is None:
            self.folder = batch_mod.discover(self.migrations_dir)
        return self.folder

    def connect(
        self, *, autocommit: bool = False, application_name: str = database.APPLICATION_NAME
    ) -> psycopg.Connection:
        return database.connect(
            self.url, autocommit=autocommit, application_name=application_name, search_path=_search_path(self.batch)
        )

    def frame(self) -> pd.DataFrame:
        return _facts_frame(
            self.facts,
            [
                ("batch", f"{self.batch.number}: {self.batch.title}"),
                ("batch folder", str(self.batch.path)),
                ("run folder", str(self.run.path)),
            ],
        )

    def _repr_html_(self) -> str:
        return self.frame().to_html()


@dataclass
class Release:
    """Every pending migration, in order, deployed as one release: one run folder, a subfolder each.

    The plan (release.json) is fixed by the release's first phase; each migration's phases see a
    `Session` of their own whose run folder is the migration's subfolder, so every record of a single
    batch has the same shape in a release.
    """

    plan: records.ReleasePlan
    batches: list[Batch]  # the plan's, in order
    folder: list[Batch]  # every batch of the migrations folder, read once for the whole release
    run: RunFolder
    facts: database.ConnectionFacts
    migrations_dir: Path
    url: str = field(repr=False)

    def session(self, batch: Batch) -> Session:
        return Session(
            batch=batch,
            run=self.run.child(batch.number),
            facts=self.facts,
            migrations_dir=self.migrations_dir,
            url=self.url,
            folder=self.folder,
        )

    def connect(
        self, *, autocommit: bool = False, application_name: str = database.APPLICATION_NAME
    ) -> psycopg.Connection:
        return database.connect(
            self.url,
            autocommit=autocommit,
            application_name=application_name,
            search_path=_search_path(self.batches[0] if self.batches else None),
        )

    @property
    def label(self) -> str:
        if not self.batches:
            return (
                f"nothing to deploy: {self.plan.empty_folder} is empty" if self.plan.empty_folder else "nothing pending"
            )
        first, last = self.batches[0], self.batches[-1]
        return f"{len(self.batches)} migration(s): {first.number} ({first.name})" + (
            f" to {last.number} ({last.name})" if len(self.batches) > 1 else ""
        )

    def frame(self) -> pd.DataFrame:
        return _facts_frame(
            self.facts,
            [
                ("release", self.label),
                ("migrations folder", str(self.migrations_dir)),
                ("run folder", str(self.run.path)),
            ],
        )

    def _repr_html_(self) -> str:
        return self.frame().to_html()


PENDING: Final = "pending"  # the batch parameter of a release: every migration not yet applied
Pending = Literal["pending"]  # PENDING's type: a batch parameter is a batch's number, or PENDING


def _pending(url: str, batches: list[Batch], to: int | None) -> tuple[list[Batch], list[str]]:
    """Not applied in either history (runbook's ledger, Prisma's), in order, up to `to`; and the applied
    migrations whose file changed since (drift: the release refuses to go on top of them)."""
    with database.connect(url) as conn:
        known = history.read(conn, batches)
    pending = [b for b in batches if not known.state(b.number).applied and (to is None or b.number <= to)]
    drifted = [
        f"migration {b.number} ({b.name}): {known.state(b.number).drift(b)}"
        for b in batches
        if known.state(b.number).applied and known.state(b.number).drift(b)
    ]
    return pending, drifted


def open_release(folder: Path, run: RunFolder, facts: database.ConnectionFacts, url: str, to: int | None) -> Release:
    """The release whose plan the run folder holds, or a new plan: what is pending now, up to `to`."""
    scanned = discovery.scan(folder)
    found = scanned.batches
    plan = run.read("release", records.ReleasePlan)
    if plan is None:
        pending, drifted = _pending(url, found, to)
        plan = records.ReleasePlan(
            [BatchInfo.of(b) for b in pending],
            to,
            records.now_iso(),
            skipped=[p.name for p in scanned.skipped],
            drift=drifted,
            empty_folder=str(folder) if scanned.empty else "",
        )
        run.write("release", plan)
    by_number = {b.number: b for b in found}
    missing = [n for n in plan.numbers if n not in by_number]
    if missing:
        raise BatchError(
            f"The release in {run.path} deploys migration {missing[0]}, which is no longer in {folder}; "
            "restore it, or start a new release."
        )
    return Release(plan, [by_number[n] for n in plan.numbers], found, run, facts, folder, url)


def open_session(
    batch: int | str,
    *,
    migrations_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    reports_dir: str | Path | None = None,
    database_url: str | None = None,
    from_notebook: bool = False,
    to: int | None = None,
) -> Session | Release:
    """Find the batch, connect once to learn the target's facts, and settle the run folder.

    `batch="pending"` opens a release: every migration not yet applied, in order (up to `to`).
    From a notebook, `database_url` is a papermill parameter, which papermill writes into the executed
    notebook: one with a password is refused (the URL belongs in DATABASE_URL).
    """
    if from_notebook and database_url and database.has_password(database_url):
        raise DatabaseError(
            "The database URL was passed as a notebook parameter with a password, which papermill writes into "
            "the executed notebook; pass it in the DATABASE_URL environment variable instead (or run papermill "
            "with --engine runbook, which moves it there), and delete that output notebook."
        )
    number = None if batch == PENDING else whole_number("batch", batch)  # a bad parameter is named first
    folder = config.migrations_dir(migrations_dir)  # migrations_dir = None: the project's, found from here up
    if number is None:
        to = None if to is None else whole_number("to", to)
        url = resolve_url(database_url)
        with database.connect(url) as conn:
            facts = database.facts(conn, url)
        run = (
            RunFolder.open(run_dir)
            if run_dir
            else RunFolder.create(reports_dir or config.default_reports_dir(), facts.database, "release")
        )
        return open_release(folder, run, facts, url, to)
    found = batch_mod.find(folder, number)
    url = resolve_url(database_url)
    with database.connect(url) as conn:
        facts = database.facts(conn, url)
    run = (
        RunFolder.open(run_dir)
        if run_dir
        else RunFolder.create(reports_dir or config.default_reports_dir(), facts.database, found.number)
    )
    return Session(batch=found, run=run, facts=facts, migrations_dir=folder, url=url)
