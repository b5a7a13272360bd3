"""Health check: for every batch the ledger shows applied, re-run its declarative checks read-only.

The reference document's "Daily Health Check" as a function: the checks that only read the catalog
and the data (NOT NULL in the schema, no NULL rows, the foreign key's ON DELETE action, no orphans,
unique / CHECK / type / index in place) run in one READ ONLY transaction, so the check can run from
cron or CI against production. Each check that no longer holds is drift, reported with the batch
that declared it. When a later applied batch declares a check on the same object, only the later
declaration is checked: that batch changed it on purpose. So is an applied batch whose migration.sql
is no longer the file its history recorded (the checksum `runbook status` compares): the folder no longer
says what the database ran.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from runbook_lib import batch as batch_mod
from runbook_lib import config
from runbook_lib.batch import blocks as sqlblocks
from runbook_lib.batch import declared as checks
from runbook_lib.batch.model import Batch, Checks
from runbook_lib.db import connection as database
from runbook_lib.db import history
from runbook_lib.db.connection import ConnectionFacts
from runbook_lib.errors import HealthDrift
from runbook_lib.phases.session import resolve_url
from runbook_lib.report import frames as tables


# The check every applied batch gets: its migration.sql is still the file that was applied.
FILE_CHECK = "migration.sql unchanged since it was applied"


@dataclass(frozen=True)
class HealthCheck:
    """One check re-run (a declared one, or FILE_CHECK): its batch, what it expects, what was found."""

    batch: int
    batch_name: str
    name: str
    expectation: str
    outcome: str
    passed: bool
    sql: str = ""

    @property
    def status(self) -> str:
        return "OK" if self.passed else "DRIFT"

    @property
    def file_changed(self) -> bool:
        """The drift of a changed migration.sql (expectation: the checksum recorded, outcome: the file's)."""
        return self.name == FILE_CHECK and not self.passed

    def sentence(self) -> str:
        """This drift in words, with its batch."""
        where = f"batch {self.batch} ({self.batch_name})"
        if self.file_changed:
            return (f"{where}: migration.sql changed since it was applied (checksum recorded when applied "
                    f"{self.expectation}, the file is now {self.outcome})")
        return f"{where}: '{self.name}' expected {self.expectation}, got {self.outcome}"


@dataclass
class HealthResult:
    connection: ConnectionFacts
    checked_at: str
    duration_s: float
    migrations_dir: str
    applied: list[int] = field(default_factory=list)  # batches the ledger shows applied
    checks: list[HealthCheck] = field(default_factory=list)

    @property
    def drifts(self) -> list[HealthCheck]:
        return [c for c in self.checks if not c.passed]

    @property
    def ok(self) -> bool:
        return not self.drifts

    @property
    def headline(self) -> str:
        if not self.applied:
            return f"No batch is applied on {self.connection.database} according to the ledger; nothing to check"
        batches = ", ".join(str(n) for n in self.applied)
        if self.ok:
            return f"No drift: {len(self.checks)} checks of batches {batches} hold on {self.connection.database}"
        changed = [str(d.batch) for d in self.drifts if d.file_changed]
        files = f"; migration.sql changed since it was applied: batch {', '.join(changed)}" if changed else ""
        return (f"DRIFT: {len(self.drifts)} of {len(self.checks)} checks of batches {batches} "
                f"no longer hold on {self.connection.database}{files}")

    def target_frame(self) -> pd.DataFrame:
        """What was checked: the database (password redacted), the batches folder, the applied batches."""
        c = self.connection
        rows = [
            ("database URL", c.url),
            ("server", f"PostgreSQL {c.server_version}"),
            ("database", c.database),
            ("migrations folder", self.migrations_dir),
            ("applied batches (ledger)", ", ".join(str(n) for n in self.applied) or "none"),
            ("checked at", self.checked_at),
        ]
        return pd.DataFrame(rows, columns=["fact", "value"]).set_index("fact")

    def frame(self) -> pd.DataFrame:
        """One row per check; a checksum as its first 16 characters (the JSON document has them whole)."""
        shown = [replace(c, expectation=_short(c.expectation), outcome=_short(c.outcome)) if c.name == FILE_CHECK
                 else c for c in self.checks]
        return tables.frame(shown, ["batch", "name", "expectation", "outcome", "status"],
                            empty="no applied batch declares checks")

    def drift_frame(self) -> pd.DataFrame:
        return tables.frame(self.drifts, ["batch", "batch_name", "name", "expectation", "outcome", "sql"],
                            empty="no drift")

    def raise_for_drift(self) -> None:
        """Fail the notebook (and the CLI, with a non-zero exit) when anything drifted."""
        if self.ok:
            return
        details = "; ".join(d.sentence() for d in self.drifts)
        fixes = []
        if any(not d.file_changed for d in self.drifts):
            fixes.append("find who changed the database, then restore it (or declare the change in a new batch)")
        if any(d.file_changed for d in self.drifts):
            fixes.append("restore each changed migration.sql to the file that was applied (or write the change as "
                         "a new batch)")
        raise HealthDrift(
            f"{self.connection.database} has drifted from what its applied batches declare: {details}; "
            f"{'; '.join(fixes)}.",
            self.drifts,
        )


def _short(text: str) -> str:
    """A sha256 hex checksum as its first 16 characters, as the ledger's other tables show it."""
    return text[:16] + "..." if len(text) == 64 and all(ch in "0123456789abcdef" for ch in text) else text


def _file_check(found: Batch, state: history.MigrationState) -> HealthCheck:
    """The applied batch's migration.sql against the checksum its history recorded (drift: another file)."""
    changed = bool(state.drift(found))
    recorded = state.checksum or "no checksum"
    if changed and state.runbook_checksum in (None, found.checksum) and state.prisma_checksum:
        recorded = state.prisma_checksum  # runbook's ledger agrees with the file; Prisma's history does not
    return HealthCheck(found.number, found.name, FILE_CHECK, recorded, found.checksum, not changed)


def _key(kind: str, item) -> tuple:
    """What a check is about, so a later batch's declaration on the same object replaces an earlier one."""
    if kind in ("not_null",):
        return (kind, item)
    if kind == "foreign_keys":
        return (kind, item.column)
    if kind == "column_type":
        return (kind, item.column)
    if kind == "check":
        return (kind, item.table, item.name)
    return (kind, item.table, item.columns)  # unique, index


def _current(batches: list[Batch]) -> dict[int, Checks]:
    """Each batch's checks without those a later batch in `batches` declares again."""
    later: set[tuple] = set()
    result: dict[int, Checks] = {}
    for found in reversed(batches):
        kept = {}
        for kind in batch_mod.CHECK_KINDS:
            items = getattr(found.checks, kind)
            kept[kind] = tuple(item for item in items if _key(kind, item) not in later)
            later.update(_key(kind, item) for item in items)
        result[found.number] = replace(found.checks, **kept)
    return result


def run(url: str, migrations_dir: Path | str) -> HealthResult:
    """Re-run, read-only, the declarative checks of every applied batch; drift is in the result, not raised."""
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    folder = Path(migrations_dir)
    known = {b.number: b for b in batch_mod.discover(folder)}
    results: list[HealthCheck] = []
    with database.connect(url, application_name="runbook-health") as conn:
        facts = database.facts(conn, url)
        conn.commit()
        conn.read_only = True
        with conn.transaction(force_rollback=True):
            histories = history.read(conn, known.values())
            applied = histories.applied()
            for number in applied:
                if number not in known:
                    results.append(HealthCheck(number, "?", f"batch {number} is in {folder}", "a batch folder",
                                               "missing: the history shows it applied, the folder has no such batch",
                                               False))
            batches = [known[n] for n in applied if n in known]
            current = _current(batches)
            for found in batches:
                results.append(_file_check(found, histories.state(found.number)))
                for block in checks.read_only_tests(conn, current[found.number]):
                    outcome = sqlblocks.run(conn, block)
                    results.append(HealthCheck(found.number, found.name, outcome.name, outcome.expectation,
                                               outcome.outcome, outcome.passed, outcome.sql))
    return HealthResult(
        connection=facts, checked_at=started.isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - t0, 3), migrations_dir=str(folder),
        applied=applied, checks=results,
    )


def check(migrations_dir: Path | str | None = None, *, database_url: str | None = None) -> HealthResult:
    """`run` on the usual target: --database-url, else DATABASE_URL, else the embedded demo database;
    the example's batches when no migrations folder is given."""
    return run(resolve_url(database_url), config.migrations_dir(migrations_dir))
