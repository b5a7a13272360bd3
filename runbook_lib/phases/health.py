"""Health check: for every batch the ledger shows applied, re-run its declarative checks read-only.

The reference document's "Daily Health Check" as a function: the checks that only read the catalog
and the data (NOT NULL in the schema, no NULL rows, the foreign key's ON DELETE action, no orphans,
unique / CHECK / type / index in place) run in one READ ONLY transaction, so the check can run from
cron or CI against production. Each check that no longer holds is drift, reported with the batch
that declared it; a check that could not be run (something other than what it checks stopped it) is reported as
not run, with why, and is not drift. When a later applied batch declares a check on the same object, only the later
declaration is checked: that batch changed it on purpose; and a check whose object a later applied migration
changes again (sql.expect.superseded, the rule validate applies to what a migration expects) is left to that
migration and listed with it. An applied batch whose migration.sql is no longer the file its history recorded
(the checksum `runbook status` compares) is drift too: the folder no longer says what the database ran.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook_lib import batch as batch_mod
from runbook_lib import config, names
from runbook_lib.batch import blocks as sqlblocks
from runbook_lib.batch import declared as checks
from runbook_lib.batch import derived, history
from runbook_lib.batch.model import Batch, Checks, ColumnRef, TableRef
from runbook_lib.db import connection as database
from runbook_lib.db.connection import ConnectionFacts
from runbook_lib.display import frames as tables
from runbook_lib.errors import HealthDrift, NotRun
from runbook_lib.execution.session import resolve_url
from runbook_lib.sql import expect

if TYPE_CHECKING:  # the annotations' DataFrame (start-up time: pandas loads when a table is built)
    import pandas as pd

# The check every applied batch gets: its migration.sql is still the file that was applied.
FILE_CHECK = "migration.sql unchanged since it was applied"


# A check's status as the table and the terminal show it, by its outcome (runbook_lib.names).
CHECK_STATUS = {names.PASSED: "OK", names.TEST_FAILED: "DRIFT", names.NOT_RUN: names.TEST_STATUS[names.NOT_RUN]}


@dataclass(frozen=True)
class HealthCheck(sqlblocks.Judged):
    """One check re-run (a declared one, or FILE_CHECK): its batch, what it expects, what was found.

    `outcome` is passed, failed (drift) or not_run (runbook_lib.names): a check not run proved nothing, so it
    is not drift; `reason` says why it was not run.
    """

    batch: int
    batch_name: str
    name: str
    expectation: str
    observed: str  # what the database showed, in words ("nullable", "1", the file's checksum)
    outcome: str  # names.PASSED | names.TEST_FAILED | names.NOT_RUN
    sql: str = ""
    reason: str = ""  # why it was not run ("" when it ran)

    @property
    def status(self) -> str:
        return CHECK_STATUS[self.outcome]

    @property
    def file_changed(self) -> bool:
        """The drift of a changed migration.sql (expectation: the checksum recorded, observed: the file's)."""
        return self.name == FILE_CHECK and self.failed

    def sentence(self) -> str:
        """This drift (or check not run) in words, with its batch."""
        where = f"batch {self.batch} ({self.batch_name})"
        if not self.ran:
            return f"{where}: '{self.name}' was not run: {self.reason}"
        if self.file_changed:
            return (
                f"{where}: migration.sql changed since it was applied (checksum recorded when applied "
                f"{self.expectation}, the file is now {self.observed})"
            )
        return f"{where}: '{self.name}' expected {self.expectation}, got {self.observed}"


@dataclass
class HealthResult:
    connection: ConnectionFacts
    checked_at: str
    duration_s: float
    migrations_dir: str
    applied: list[int] = field(default_factory=list)  # batches the ledger shows applied
    checks: list[HealthCheck] = field(default_factory=list)
    fail_on_not_run: bool = False  # whether a check that was not run fails the health check (--fail-on-not-run)
    # declared checks not re-run because a later applied migration changes their object again, with where
    superseded: list[str] = field(default_factory=list)

    @property
    def drifts(self) -> list[HealthCheck]:
        return [c for c in self.checks if c.failed]

    @property
    def not_run(self) -> list[HealthCheck]:
        """The checks that could not be run: not drift, and no proof that nothing drifted either."""
        return [c for c in self.checks if not c.ran]

    @property
    def ok(self) -> bool:
        return not self.drifts and not (self.fail_on_not_run and self.not_run)

    @property
    def headline(self) -> str:
        if not self.applied:
            return f"No batch is applied on {self.connection.database} according to the ledger; nothing to check"
        batches = ", ".join(str(n) for n in self.applied)
        ran = sum(1 for c in self.checks if c.ran)
        skipped = (
            (
                "; "
                + f"{len(self.not_run)} not run: "
                + "; ".join(f"'{c.name}' of batch {c.batch} ({c.reason})" for c in self.not_run)
            )
            if self.not_run
            else ""
        )
        if not self.drifts:
            if self.not_run:
                return (
                    f"No drift: {ran} of {ran} checks of batches {batches} that ran hold on "
                    f"{self.connection.database}{skipped}"
                )
            return f"No drift: {len(self.checks)} checks of batches {batches} hold on {self.connection.database}"
        changed = [str(d.batch) for d in self.drifts if d.file_changed]
        files = f"; migration.sql changed since it was applied: batch {', '.join(changed)}" if changed else ""
        return (
            f"DRIFT: {len(self.drifts)} of {ran} checks of batches {batches} "
            f"no longer hold on {self.connection.database}{files}{skipped}"
        )

    def target_frame(self) -> pd.DataFrame:
        """What was checked: the database (password redacted), the batches folder, the applied batches."""
        import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

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
        """One row per check, OK, DRIFT or NOT RUN; a checksum as its first 16 characters (the JSON has them whole)."""
        shown = [
            replace(c, expectation=_short(c.expectation), observed=_short(c.observed)) if c.name == FILE_CHECK else c
            for c in self.checks
        ]
        return tables.frame(
            shown, ["batch", "name", "expectation", "observed", "status"], empty="no applied batch declares checks"
        )

    def drift_frame(self) -> pd.DataFrame:
        return tables.frame(
            self.drifts, ["batch", "batch_name", "name", "expectation", "observed", "sql"], empty="no drift"
        )

    def raise_for_drift(self) -> None:
        """Fail the notebook (and the CLI, with a non-zero exit) when anything drifted, or, with
        `fail_on_not_run`, when a check could not be run (NotRun)."""
        if self.ok:
            return
        if not self.drifts:
            raise NotRun(
                f"{len(self.not_run)} check(s) of {self.connection.database} could not be run, which "
                f"--fail-on-not-run makes a failure: {'; '.join(c.sentence() for c in self.not_run)}; remove what "
                "stopped each one (its reason says what), or run without --fail-on-not-run."
            )
        details = "; ".join(d.sentence() for d in self.drifts)
        fixes = []
        if self.fail_on_not_run and self.not_run:
            details += "; and not run, which --fail-on-not-run makes a failure: " + "; ".join(
                c.sentence() for c in self.not_run
            )
            fixes.append("remove what stopped each check not run (its reason says what)")
        if any(not d.file_changed for d in self.drifts):
            fixes.append("find who changed the database, then restore it (or declare the change in a new batch)")
        if any(d.file_changed for d in self.drifts):
            fixes.append(
                "restore each changed migration.sql to the file that was applied (or write the change as a new batch)"
            )
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
    return HealthCheck(
        found.number, found.name, FILE_CHECK, recorded, found.checksum, names.TEST_FAILED if changed else names.PASSED
    )


def _key(kind: str, item: Any) -> tuple[Any, ...]:  # item: one of `kind`'s checks (batch.model)
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


def _as_expected(kind: str, item: Any) -> expect.Expected:  # item: one of `kind`'s checks (batch.model)
    """A declared check as what a migration expects (sql.expect), so that validate's rules say what a later
    migration supersedes: a column it dropped or changed, a table it dropped, a key on a column it dropped."""
    found = expect.Expected("batch.toml")

    def key(ref: TableRef | ColumnRef) -> expect.Table:
        return expect.table_key(ref.schema, ref.table)  # "public.Lead" and "Lead" are one table, as in the SQL

    if kind in ("not_null", "column_type"):
        ref = item if kind == "not_null" else item.column
        found.table(key(ref), 0).column(ref.column, 0)
    elif kind == "foreign_keys":
        found.constraints.append(
            expect.Constraint(
                key(item.column),
                "f",
                0,
                columns=(item.column.column,),
                references=key(item.references),
                ref_columns=(item.references.column,),
            )
        )
    elif kind == "check":
        found.constraints.append(expect.Constraint(key(item.table), "c", 0, name=item.name))
    elif kind == "unique":
        found.constraints.append(expect.Constraint(key(item.table), "u", 0, columns=tuple(item.columns)))
    else:  # index: its name is not declared, only its table and columns
        unnamed = (key(item.table)[0], "")
        found.indexes[unnamed] = expect.Index(unnamed, 0, key(item.table), tuple(item.columns))
    return found


def _left_to_later(checks_of: Checks, later: expect.Touched) -> tuple[Checks, list[str]]:
    """The checks a later applied migration does not change again, and the others, named with where it does."""
    if not later:
        return checks_of, []
    kept, left = {}, []
    for kind in batch_mod.CHECK_KINDS:
        items = []
        for item in getattr(checks_of, kind):
            _, gone = expect.superseded(_as_expected(kind, item), later)
            if gone:
                left.append(f"{kind.replace('_', ' ')} {item}: changed again by {gone[0].by}")
            else:
                items.append(item)
        kept[kind] = tuple(items)
    return replace(checks_of, **kept), left


def run(url: str, migrations_dir: Path | str, *, fail_on_not_run: bool = False) -> HealthResult:
    """Re-run, read-only, the declarative checks of every applied batch; drift is in the result, not raised.

    `fail_on_not_run`: a check that could not be run makes the result not ok (raise_for_drift raises)."""
    fail_on_not_run = config.flag("fail_on_not_run", fail_on_not_run)
    started = datetime.now(UTC)
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
                    results.append(
                        HealthCheck(
                            number,
                            "?",
                            f"batch {number} is in {folder}",
                            "a batch folder",
                            "missing: the history shows it applied, the folder has no such batch",
                            names.TEST_FAILED,
                        )
                    )
            batches = [known[n] for n in applied if n in known]
            current = _current(batches)
            superseded: list[str] = []
            after = derived.touched_after(batches)  # what the applied migrations after each one change again
            for found in batches:
                current[found.number], left = _left_to_later(current[found.number], after[found.number])
                superseded += [f"batch {found.number} ({found.name}): {x}" for x in left]
            for found in batches:
                results.append(_file_check(found, histories.state(found.number)))
                for block in checks.read_only_tests(conn, current[found.number]):
                    ran = sqlblocks.run(conn, block)
                    results.append(
                        HealthCheck(
                            found.number,
                            found.name,
                            ran.name,
                            ran.expectation,
                            ran.observed,
                            ran.outcome,
                            ran.sql,
                            ran.reason,
                        )
                    )
    return HealthResult(
        connection=facts,
        checked_at=started.isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - t0, 3),
        migrations_dir=str(folder),
        applied=applied,
        checks=results,
        fail_on_not_run=fail_on_not_run,
        superseded=superseded,
    )


def check(
    migrations_dir: Path | str | None = None, *, database_url: str | None = None, fail_on_not_run: bool = False
) -> HealthResult:
    """`run` on the usual target: --database-url, else DATABASE_URL, else the embedded demo database;
    the example's batches when no migrations folder is given."""
    return run(resolve_url(database_url), config.migrations_dir(migrations_dir), fail_on_not_run=fail_on_not_run)
