"""What every phase starts from: the target database (from the environment), the batch, the run folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import psycopg

from runbook_lib import batch as batch_mod
from runbook_lib import config
from runbook_lib.batch.model import Batch
from runbook_lib.config import whole_number
from runbook_lib.db import connection as database
from runbook_lib.db import embedded
from runbook_lib.errors import DatabaseError
from runbook_lib.report.records import RunFolder


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


@dataclass
class Session:
    """One phase's view of the world; its repr never shows the password."""

    batch: Batch
    run: RunFolder
    facts: database.ConnectionFacts
    migrations_dir: Path
    url: str = field(repr=False)

    def batches(self) -> list[Batch]:
        """Every batch of the migrations folder: the history matches Prisma's rows to them by name."""
        return batch_mod.discover(self.migrations_dir)

    def connect(self, *, autocommit: bool = False, application_name: str = database.APPLICATION_NAME) -> psycopg.Connection:
        return database.connect(self.url, autocommit=autocommit, application_name=application_name)

    def frame(self) -> pd.DataFrame:
        f = self.facts
        rows = [
            ("database URL", f.url),
            ("server", f"PostgreSQL {f.server_version}"),
            ("database", f.database),
            ("user", f.user),
            ("batch", f"{self.batch.number}: {self.batch.title}"),
            ("batch folder", str(self.batch.path)),
            ("run folder", str(self.run.path)),
        ]
        return pd.DataFrame(rows, columns=["fact", "value"]).set_index("fact")

    def _repr_html_(self) -> str:
        return self.frame().to_html()


def open_session(
    batch: int,
    *,
    migrations_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    reports_dir: str | Path | None = None,
    database_url: str | None = None,
    from_notebook: bool = False,
) -> Session:
    """Find the batch, connect once to learn the target's facts, and settle the run folder.

    From a notebook, `database_url` is a papermill parameter, which papermill writes into the executed
    notebook: one with a password is refused (the URL belongs in DATABASE_URL).
    """
    if from_notebook and database_url and database.has_password(database_url):
        raise DatabaseError(
            "The database URL was passed as a notebook parameter with a password, which papermill writes into "
            "the executed notebook; pass it in the DATABASE_URL environment variable instead (or run papermill "
            "with --engine runbook, which moves it there), and delete that output notebook."
        )
    number = whole_number("batch", batch)
    folder = config.migrations_dir(migrations_dir)  # migrations_dir = None: the project's, found from here up
    found = batch_mod.find(folder, number)
    url = resolve_url(database_url)
    with database.connect(url) as conn:
        facts = database.facts(conn, url)
    run = RunFolder.open(run_dir) if run_dir else RunFolder.create(
        reports_dir or config.default_reports_dir(), facts.database, found.number
    )
    return Session(batch=found, run=run, facts=facts, migrations_dir=folder, url=url)
