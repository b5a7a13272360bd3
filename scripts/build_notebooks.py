"""Write notebooks/*.ipynb from this one readable source: thin cells, one call and one display each.

    python scripts/build_notebooks.py            # rewrites notebooks/
    python scripts/build_notebooks.py OUT_DIR    # writes them elsewhere (tests/notebook/test_notebook_sources.py)

Cells get stable ids and no outputs or execution counts, so a rebuild changes only what changed here.
This file is the notebooks' only source: tests/notebook/test_notebook_sources.py fails when notebooks/ differs
from what it writes, so a notebook edited in Jupyter must be carried back into this file.
"""

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's runbook_lib, installed or not
from runbook_lib.config import DEFAULTS  # the one set of defaults; the parameter cells show them


def option_lines(*options):
    """Parameter lines for runbook_lib.config.Options fields, each with its default from DEFAULTS."""
    lines = []
    for name, comment in options:
        value = getattr(DEFAULTS, name)
        text = f'{name} = "{value}"' if isinstance(value, str) else f"{name} = {value!r}"
        lines.append(f"{text:<24} # {comment}" if comment else text)
    return "\n".join(lines)


# Blockers (runbook_lib.execution.blockers): the same three parameters and arguments for apply and rollback.
BLOCKER_PARAMETERS = (
    ("wait_for_blockers_s", "wait this long in all, without queuing, for a session holding a conflicting lock"),
    ("terminate_blockers_after_s", "None: never; else terminate an idle-in-transaction blocker after this long"),
    ("blocker_threshold_ms", "a transaction younger than this (not idle in it) is not a blocker"),
)


def blocker_arguments(indent):
    return (
        f"wait_for_blockers_s=wait_for_blockers_s, terminate_blockers_after_s=terminate_blockers_after_s,\n"
        f"{' ' * indent}blocker_threshold_ms=blocker_threshold_ms"
    )


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def nb(cells):
    n = new_notebook()
    n.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    n.metadata["language_info"] = {"name": "python"}
    out = []
    for kind, src, *tags in cells:
        c = new_markdown_cell(src) if kind == "md" else new_code_cell(src)
        if tags:
            c.metadata["tags"] = tags[0]
        c.pop("id", None)
        out.append(c)
    n.cells = out
    return n


COMMON = """batch = 7                # the batch number (batch.toml's `batch`), or "pending": every migration not yet
                         # applied, in order, as one release (`runbook deploy`)
to = None                # a release (batch "pending") stops after this migration
migrations_dir = None    # folder of batches; None: the project's (runbook.toml, prisma/migrations, migrations/)
run_dir = None           # run folder for the records; None: a new one under reports/
reports_dir = None       # where new run folders go; None: reports/ in the project
database_url = None      # leave None: the database comes from the DATABASE_URL environment variable, so no
                         # password lands in the executed notebook (one given here with a password is refused,
                         # unless papermill runs with --engine runbook, which moves it to DATABASE_URL);
                         # without either, the running embedded server's demo database."""

SESSION = (
    "code",
    "from runbook_lib.execution.session import open_session\n\n"
    "session = open_session(batch, migrations_dir=migrations_dir, run_dir=run_dir, reports_dir=reports_dir,\n"
    "                       database_url=database_url, from_notebook=True, to=to)\nsession",
)

pre = nb(
    [
        (
            "md",
            "# Preflight\n\nEverything worth knowing before the migration touches anything, read-only, ending in a "
            "verdict:\n**GO**, **WARN** (go, but read the reasons) or **NO-GO** (this notebook fails).",
        ),
        (
            "code",
            COMMON + "\nlong_transaction_s = 60.0  # transactions open longer than this are reported as blockers\n"
            "lock_threshold_ms = 1000.0  # WARN when the migration would block writes longer than this\n"
            "terminate_blockers_after_s = None  # apply's --terminate-blockers-after: NO-GO when the role may not "
            "signal other sessions\n"
            "fail_on_nogo = True        # False: report NO-GO without failing (runbook run --force)",
            ["parameters"],
        ),
        (
            "md",
            "## Target and batch\n"
            "The database (URL with the password redacted), the server, and the run folder this notebook writes its "
            "record to.",
        ),
        SESSION,
        (
            "md",
            "## Evaluate\nRuns every check in one READ ONLY transaction and records the result in the ledger and "
            "`preflight.json`.",
        ),
        (
            "code",
            "from runbook_lib.phases import preflight\n\n"
            "result = preflight.run(session, long_transaction_s=long_transaction_s, "
            "lock_threshold_ms=lock_threshold_ms,\n"
            "                       terminate_blockers_after_s=terminate_blockers_after_s)\nresult.verdict_frame()",
        ),
        (
            "md",
            "## The role and its privileges\n"
            "Who the migration acts as, and each thing it may not do: a statement it could not run is a NO-GO naming "
            "the object and its owner; what only narrows what runbook sees (other roles' sessions) is a WARN; each "
            "with the GRANT that fixes it.",
        ),
        ("code", "result.privileges_frame()"),
        (
            "md",
            "## Ledger and dependencies\n"
            "Is this batch already applied (and with the same migration.sql)? Are the batches it depends on applied?",
        ),
        ("code", "result.ledger_frame()"),
        (
            "md",
            "## Gates\nThe data must already satisfy what the batch will enforce: declared checks from batch.toml and "
            "the blocks of preflight.sql.",
        ),
        ("code", "result.gates_frame()"),
        (
            "md",
            "## Statements and their locks\n"
            "Each statement of migration.sql, as PostgreSQL's parser reads it: the lock it takes, whether it scans or "
            "rewrites the table, whether it can run in a transaction.",
        ),
        ("code", "result.statements_frame()"),
        ("md", "## Lint (squawk)"),
        ("code", "result.lint_frame()"),
        (
            "md",
            "## Tables touched\nSizes from the planner's statistics: a lock that scans a big table holds writers for "
            "longer.",
        ),
        ("code", "result.tables_frame()"),
        (
            "md",
            "## Cost of the locks\n"
            "For each statement that blocks writes while it scans or rewrites a table: a measured read of that table "
            "(a sample, extrapolated, on large tables) estimates how long writers would wait, against "
            "`lock_threshold_ms`; above it, the online alternative.",
        ),
        ("code", "result.lock_costs_frame()"),
        (
            "md",
            "## Data statements in batches\n"
            "With `--strategy online`, which INSERT / UPDATE / DELETE run in batches by keyset on a primary key (each "
            "batch a short transaction), and for the others why they run in one transaction.",
        ),
        ("code", "result.backfills_frame()"),
        (
            "md",
            "## Blockers now\nSessions holding locks on these tables, or transactions open too long: the DDL would "
            "queue behind them and every writer behind the DDL.",
        ),
        ("code", "result.blockers_frame()"),
        ("md", "## Verdict\nNO-GO fails here, so papermill and `runbook` stop with the reasons."),
        ("code", "result.raise_for_verdict(fail_on_nogo)\nresult.verdict"),
    ]
)

app = nb(
    [
        (
            "md",
            "# Apply\n\nThe forward change (migration.sql), once: under the per-database migration lock, refused after "
            "a NO-GO preflight,\nin one transaction with `lock_timeout` and bounded retries, with a timeline, the "
            "locks held and catalog snapshots.",
        ),
        (
            "code",
            COMMON
            + """
"""
            + option_lines(
                ("dry_run", "True: execute, measure, then roll back"),
                ("force", "True: apply even when preflight says NO-GO"),
                (
                    "strategy",
                    '"direct": one transaction; "online": SET NOT NULL / FOREIGN KEY / CHECK without long write locks',
                ),
                ("lock_timeout_ms", "how long one attempt may wait for a lock before it is retried"),
                ("statement_timeout_ms", "0: no limit"),
                (
                    "max_attempts",
                    "attempts when a lock is not granted in time (exponential backoff, at most 2 s apart)",
                ),
                *BLOCKER_PARAMETERS,
                (
                    "backfill_batch_ms",
                    "online: each data batch's transaction time target (its rows stay locked that long)",
                ),
                ("backfill_rows_per_s", "online: at most this many rows changed per second (0: no limit)"),
                ("backfill_pause_ms", "online: a pause after every batch"),
                (
                    "max_replica_lag_ms",
                    "online: pause batches while a replica's replay lag is over this (0: do not watch)",
                ),
                ("backfill_wal_mb_per_s", "online: at most this many MB of WAL per second (0: no limit)"),
                (
                    "backfill_flush_from_mb",
                    "online: from this much WAL (MB) on, write back dirtied pages as they go (None: the server's "
                    "checkpoint distance; 0: never)",
                ),
            )
            + "\nvalidate_each = False    # a release: each migration's tests run as it commits, on the state it left "
            "(deploy)",
            ["parameters"],
        ),
        ("md", "## Target and batch"),
        SESSION,
        (
            "md",
            "## Apply\nWrites `apply.json` and a ledger row whatever happens; a failure rolls everything back and "
            "fails this cell with the server's message.",
        ),
        (
            "code",
            "from runbook_lib.phases import apply\n\n"
            "result = apply.run(session, dry_run=dry_run, force=force, strategy=strategy, "
            "lock_timeout_ms=lock_timeout_ms,\n"
            "                   statement_timeout_ms=statement_timeout_ms, max_attempts=max_attempts,\n"
            "                   "
            + blocker_arguments(19)
            + ",\n                   backfill_batch_ms=backfill_batch_ms, backfill_rows_per_s=backfill_rows_per_s,\n"
            "                   backfill_pause_ms=backfill_pause_ms, max_replica_lag_ms=max_replica_lag_ms,\n"
            "                   backfill_wal_mb_per_s=backfill_wal_mb_per_s, "
            "backfill_flush_from_mb=backfill_flush_from_mb,\n                   validate_each=validate_each)\n"
            "result.summary_frame()",
        ),
        (
            "md",
            "## Blocking sessions\n"
            "Sessions that held a lock the migration needed (idle in transaction, or in an older transaction): apply "
            "waited for them without queuing, so the application did not stall; and whom it terminated, only with "
            "`terminate_blockers_after_s`.",
        ),
        ("code", "result.blockers_frame()"),
        (
            "md",
            "## Plan\nThe steps, each one transaction (or one statement that cannot run in one), with its attempts and "
            "the longest time it blocked writes.",
        ),
        ("code", "result.steps_frame()"),
        (
            "md",
            "## Batched data statements\n"
            "With the online strategy, each INSERT / UPDATE / DELETE whose shape allows it ran in batches by keyset on "
            "a primary key, each batch a transaction that committed its position with it: rows per batch, and how long "
            "each batch held its rows' locks.",
        ),
        ("code", "result.backfills_frame()"),
        (
            "md",
            "## Timeline\nEvery attempt at every statement, with its offset from the start and its measured duration.",
        ),
        ("code", "result.timeline_frame()"),
        (
            "md",
            "## Locks held just before commit\n"
            "From `pg_locks`; `held_s` is how long writers to that table would have waited.",
        ),
        ("code", "result.locks_frame()"),
        ("md", "## What changed in the catalog\nBefore and after, read from pg_catalog, not from the SQL."),
        ("code", "result.changes_frame()"),
    ]
)

chk = nb(
    [
        (
            "md",
            "# Health check\n\nThe daily check of the reference document, for every batch at once: for each batch the "
            "ledger shows\napplied, its declarative checks (batch.toml's `[checks]`) re-run in a READ ONLY "
            "transaction. Anything\n"
            "that no longer holds (a NOT NULL dropped by hand, a foreign key re-created with another action) is\n"
            "drift, reported with the batch that declared it. Safe to run against production, from cron or CI.",
        ),
        (
            "code",
            "migrations_dir = None    # folder of batches; None: the project's (runbook.toml, prisma/migrations, "
            "migrations/)\n"
            + option_lines(
                ("fail_on_not_run", "True: a check that could not be run fails the check (False: reported as NOT RUN)")
            )
            + "\n# The database comes from the DATABASE_URL environment variable (never a parameter, so no\n"
            "# password lands in the executed notebook); without it, the running embedded server's demo database.",
            ["parameters"],
        ),
        ("md", "## Run the checks\nEvery applied batch's read-only checks, one transaction, nothing written."),
        (
            "code",
            "from runbook_lib.phases import health\n\n"
            "result = health.check(migrations_dir, fail_on_not_run=fail_on_not_run)\nresult.headline",
        ),
        ("md", "## Target\nThe database checked (password redacted) and the batches the ledger shows applied."),
        ("code", "result.target_frame()"),
        (
            "md",
            "## Checks\nEach check with the batch that declared it: what it expects, what the database shows, OK, "
            "DRIFT or NOT RUN\n(it could not be run, and why: not drift, and no proof of its absence either).",
        ),
        ("code", "result.frame()"),
        ("md", "## Drift\nOnly what no longer holds, with the SQL that showed it, to paste into psql."),
        ("code", "result.drift_frame()"),
        (
            "md",
            "## Outcome\nAny drift fails this notebook (and `runbook check` exits non-zero), naming each drift and its "
            "batch; so does a\ncheck not run, with `fail_on_not_run`.",
        ),
        ("code", "result.raise_for_drift()\nresult.headline"),
    ]
)

val = nb(
    [
        (
            "md",
            "# Validate\n\nProves what the database now enforces: the checks declared in batch.toml and the blocks of "
            "validation.sql,\neach in its own savepoint, all in one transaction that is rolled back: no test leaves a "
            "row behind.",
        ),
        (
            "code",
            COMMON
            + """
prisma_schema = None     # schema.prisma to compare with the database; None: the batch's, else the project's
orm_strict = False       # True: a schema.prisma that disagrees with the database fails the validation
"""
            + option_lines(
                (
                    "fail_on_not_run",
                    "True: a test that could not be run fails the validation (False: reported as NOT RUN)",
                )
            ),
            ["parameters"],
        ),
        ("md", "## Target and batch"),
        SESSION,
        ("md", "## Run the tests"),
        (
            "code",
            "from runbook_lib.phases import validate\n\n"
            "result = validate.run(session, orm_strict=orm_strict, prisma_schema_path=prisma_schema,\n"
            "                      fail_on_not_run=fail_on_not_run)\nresult.headline",
        ),
        (
            "md",
            "## Results\nEach test: what it expected, what the server did, and PASS, FAIL or NOT RUN. A test is NOT "
            "RUN when its\nprecondition could not be established (its row could not be built, or something other than "
            "what it tests\nrefused it), with why and the server's message: it proved nothing either way, so X/Y "
            "counts only the tests that ran,\nand it fails the validation only with `fail_on_not_run`.",
        ),
        ("code", "result.tests_frame()"),
        (
            "md",
            "## ORM alignment\nEach schema.prisma field mapped to a column the checks touch: optional or required, and "
            "the relation's onDelete, against the catalog.",
        ),
        ("code", "result.orm_frame()"),
        (
            "md",
            "## Outcome\nAny failure fails this notebook, naming each failing test (and each test not run, with "
            "`fail_on_not_run`).",
        ),
        ("code", "result.raise_for_failures()\nresult.headline"),
    ]
)

rb = nb(
    [
        (
            "md",
            "# Rollback\n\nrollback.sql of an applied batch, under the same protections as apply; then checks that "
            "what the batch declared no longer holds.",
        ),
        (
            "code",
            COMMON
            + """
"""
            + option_lines(
                ("dry_run", ""),
                ("lock_timeout_ms", ""),
                ("statement_timeout_ms", ""),
                (
                    "max_attempts",
                    "attempts when a lock is not granted in time (exponential backoff, at most 2 s apart)",
                ),
                *BLOCKER_PARAMETERS,
            ),
            ["parameters"],
        ),
        ("md", "## Target and batch"),
        SESSION,
        ("md", "## Roll back"),
        (
            "code",
            "from runbook_lib.phases import rollback\n\n"
            "result = rollback.run(session, dry_run=dry_run, lock_timeout_ms=lock_timeout_ms,\n"
            "                      statement_timeout_ms=statement_timeout_ms, max_attempts=max_attempts,\n"
            "                      " + blocker_arguments(22) + ")\nresult.summary_frame()",
        ),
        ("md", "## Verification\nThe batch's declared checks, in reverse."),
        (
            "code",
            "from runbook_lib.display.frames import frame\n\n"
            "frame(result.verification, ['name', 'expectation', 'observed', 'status'])",
        ),
        ("md", "## Timeline"),
        ("code", "result.timeline_frame()"),
        ("md", "## What changed in the catalog"),
        ("code", "result.changes_frame()"),
    ]
)

summ = nb(
    [
        (
            "md",
            "Migration summary: rendered from the run's records (`preflight.json`, `apply.json`, `validate.json`). "
            "Every figure was measured in that run.",
            ["remove"],
        ),
        (
            "code",
            """batch = 7          # used with database to find the latest run when run_dir is None
run_dir = None     # the run folder to summarise
reports_dir = None
database = None    # database name; None: from DATABASE_URL, else the demo database""",
            ["parameters"],
        ),
        (
            "code",
            "from runbook_lib.report import summary as summary_mod\n\n"
            "summary = summary_mod.load_for_notebook(run_dir, batch=batch, database=database, reports_dir=reports_dir)",
        ),
        ("code", "summary.header()"),
        ("code", "summary.what_was_done()"),
        ("code", "summary.changes()"),
        ("code", "summary.preflight_checks()"),
        ("code", "summary.validation_results()"),
        ("code", "summary.test_summary()"),
        ("code", "summary.prisma_schema()"),
        ("code", "summary.application_impact()"),
        ("code", "summary.database_state()"),
        ("code", "summary.performance()"),
        ("code", "summary.timeline()"),
        ("code", "summary.timeline_chart()"),
        ("code", "summary.constraint_behaviour()"),
        ("code", "summary.rollback_procedure()"),
        ("code", "summary.files()"),
        ("code", "summary.monitoring()"),
        ("code", "summary.authors_notes()"),
        ("code", "summary.closing()"),
    ]
)

NAMED = (("preflight", pre), ("apply", app), ("validate", val), ("rollback", rb), ("summary", summ), ("check", chk))
for _name, _n in NAMED:
    for i, c in enumerate(_n.cells):
        c["id"] = f"{_name}-{i:02d}"


def build(out_dir: Path = NOTEBOOKS) -> list[Path]:
    """Write every notebook into `out_dir` (created if missing); the paths written, in order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, n in NAMED:
        path = out_dir / f"{name}.ipynb"
        nbformat.write(n, str(path))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        print("usage: python scripts/build_notebooks.py [OUT_DIR]", file=sys.stderr)
        return 2
    for path in build(Path(args[0]) if args else NOTEBOOKS):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
