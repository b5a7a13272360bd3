"""Health check: for every batch the ledger shows applied, re-run its declarative checks read-only.

The reference document's "Daily Health Check" as a function: the checks that only read the catalog
and the data (NOT NULL in the schema, no NULL rows, the foreign key's ON DELETE action, no orphans,
unique / CHECK / type / index in place) run in one READ ONLY transaction, so the check can run from
cron or CI against production. Each check that no longer holds is drift, reported with the batch
that declared it. When a later applied batch declares a check on the same object, only the later
declaration is checked: that batch changed it on purpose.
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


@dataclass(frozen=True)
class HealthCheck:
    """One declared check re-run: which batch declared it, what it expects, what the database shows."""

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
        return (f"DRIFT: {len(self.drifts)} of {len(self.checks)} checks of batches {batches} "
                f"no longer hold on {self.connection.database}")

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
        return tables.frame(self.checks, ["batch", "name", "expectation", "outcome", "status"],
                            empty="no applied batch declares checks")

    def drift_frame(self) -> pd.DataFrame:
        return tables.frame(self.drifts, ["batch", "batch_name", "name", "expectation", "outcome", "sql"],
                            empty="no drift")

    def raise_for_drift(self) -> None:
        """Fail the notebook (and the CLI, with a non-zero exit) when anything drifted."""
        if self.ok:
            return
        details = "; ".join(f"batch {d.batch} ({d.batch_name}): '{d.name}' expected {d.expectation}, got {d.outcome}"
                            for d in self.drifts)
        raise HealthDrift(
            f"{self.connection.database} has drifted from what its applied batches declare: {details}; "
            "find who changed it, then restore it (or declare the change in a new batch).",
            self.drifts,
        )


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
            applied = history.read(conn, known.values()).applied()
            for number in applied:
                if number not in known:
                    results.append(HealthCheck(number, "?", f"batch {number} is in {folder}", "a batch folder",
                                               "missing: the history shows it applied, the folder has no such batch",
                                               False))
            batches = [known[n] for n in applied if n in known]
            current = _current(batches)
            for found in batches:
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
