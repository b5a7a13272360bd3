"""The `runbook` command: argparse and printing only; every subcommand is one call into runbook_lib.commands."""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, NoReturn

from runbook_lib import commands, config, names
from runbook_lib.config import BACKFILL_OPTIONS, DEFAULTS, STRATEGIES, Options, environment_variable
from runbook_lib.db import connection, ledger
from runbook_lib.errors import PhaseFailed, RunbookError
from runbook_lib.fleet import report as fleet_report
from runbook_lib.orm import prisma_generate
from runbook_lib.report import machine, records, terminal

MIGRATIONS_HELP = (
    "folder of batches (default: the migrations_dir of a runbook.toml, else prisma/migrations or "
    "migrations/, found from the current directory up)"
)


# The URLs this invocation was given (argv): no password of theirs, nor of these variables', is ever printed.
_GIVEN_URLS: ContextVar[tuple[str, ...]] = ContextVar("runbook_given_urls", default=())
_URL_VARIABLES = ("DATABASE_URL", "RUNBOOK_TEST_DATABASE_URL")


def _given_urls(argv: list[str]) -> tuple[str, ...]:
    """--database-url's value and every URL-looking item (--opt=VALUE as VALUE), wherever argparse puts them."""
    items = [a.split("=", 1)[1] if a.startswith("--") and "=" in a else a for a in argv]
    after = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--database") and "=" not in a]
    return tuple(a for a in items if "://" in a or "password" in a.lower()) + tuple(after)


def _masked(text: str) -> str:
    """The last line of defence: whatever an error says, without a password the user gave."""
    return connection.mask(text, *(os.environ.get(v) for v in _URL_VARIABLES), *_GIVEN_URLS.get())


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one sentence and exit 2, like every other refusal
        hint = "pass a database URL as --database-url URL or in DATABASE_URL; " if "://" in message else ""
        self.exit(2, _masked(f"runbook: {message}; {hint}see `runbook --help`.\n"))


FORMATS = ("text", "json")


def _format_parent(*extra: str) -> _Parser:
    """--format on every command: text for people, json for scripts (one document on stdout)."""
    parent = _Parser(add_help=False)  # the subparsers' class, as their parents must be (it parses nothing itself)
    parent.add_argument(
        "--format",
        choices=(*FORMATS, *extra),
        default="text",
        help="text (default), json: one JSON document on stdout (fields in docs/json.md)"
        + (", markdown: a pull-request comment" if extra else ""),
    )
    return parent


def _common(p: argparse.ArgumentParser, *, migrations_help: str = MIGRATIONS_HELP) -> None:
    p.add_argument("--database-url", help="target database (default: DATABASE_URL, else the embedded server)")
    p.add_argument("--migrations-dir", type=Path, help=migrations_help)
    p.add_argument("--reports-dir", type=Path, help="where run folders go (default: reports/)")
    _identity_options(p)


def _identity_options(p: argparse.ArgumentParser) -> None:
    """Who runbook acts as, and where its ledger lives (docs/non-superuser.md)."""
    p.add_argument(
        "--role",
        help="act as this role on every connection (log in as yourself, migrate as the schema's "
        "owner); the login role must be a member of it",
    )
    p.add_argument(
        "--ledger-schema",
        metavar="SCHEMA",
        help="the schema of runbook's ledger (default: runbook.toml's ledger_schema, else runbook): for a "
        "role that may not create the runbook schema",
    )


def _not_run_option(p: argparse.ArgumentParser, what: str = "validation test") -> None:
    """--fail-on-not-run: a test (or check) whose precondition could not be established fails, instead of being
    reported as not run (docs/validation.md: Not run)."""
    p.add_argument(
        "--fail-on-not-run",
        action="store_true",
        help=f"a {what} that could not be run (its row could not be built, or something other than what "
        "it tests refused it) makes the command fail (default: reported as not run, neither a pass "
        "nor a failure)",
    )


BATCH_HELP = "the batch's number: `batch` in its batch.toml; in Prisma's layout, the folder's place (1, 2, ...)"


def _apply_options(p: argparse.ArgumentParser, *, force: bool = True) -> None:
    p.add_argument("--dry-run", action="store_true", help="execute, measure, then roll back")
    if force:
        p.add_argument("--force", action="store_true", help="apply even if preflight says NO-GO")
        p.add_argument(
            "--strategy",
            choices=STRATEGIES,
            default=DEFAULTS.strategy,
            help="direct: one transaction; online: SET NOT NULL, FOREIGN KEY and CHECK validated "
            "without long write locks, data statements in batches, each step a short transaction "
            "(default: %(default)s)",
        )
        _backfill_options(p)
        _out_of_order_option(p)
    p.add_argument(
        "--lock-timeout",
        type=int,
        default=DEFAULTS.lock_timeout_ms,
        metavar="MS",
        help="lock_timeout per attempt (ms) (default: %(default)s)",
    )
    p.add_argument(
        "--statement-timeout",
        type=int,
        default=DEFAULTS.statement_timeout_ms,
        metavar="MS",
        help="statement_timeout (ms, 0 = none) (default: %(default)s)",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=DEFAULTS.max_attempts,
        help="attempts when a lock is not granted in time (backoff 200 ms doubling, at most 2 s) "
        "(default: %(default)s)",
    )
    _blocker_options(p)


def _out_of_order_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out-of-order",
        action="store_true",
        help="apply a pending migration older than the last applied one (refused otherwise; "
        "out_of_order = true in runbook.toml's tool table says the same)",
    )


def _blocker_options(p: argparse.ArgumentParser) -> None:
    """A session that would make the migration's locks queue (docs/online.md: Never queue behind a blocker)."""
    p.add_argument(
        "--wait-for-blockers",
        type=float,
        default=DEFAULTS.wait_for_blockers_s,
        metavar="SECONDS",
        help="wait this long in all, without queuing, for sessions holding a conflicting lock (idle in "
        "transaction or in an older transaction), then fail naming them (default: %(default)s)",
    )
    p.add_argument(
        "--terminate-blockers-after",
        type=float,
        default=DEFAULTS.terminate_blockers_after_s,
        metavar="SECONDS",
        help="opt-in: terminate an idle-in-transaction session holding a conflicting "
        "lock after waiting this long for it (recorded; default: never)",
    )
    p.add_argument(
        "--blocker-threshold",
        type=int,
        default=DEFAULTS.blocker_threshold_ms,
        metavar="MS",
        help="a transaction younger than this (not idle in it) is not a blocker (default: %(default)s)",
    )


def _prisma_generate_option(p: argparse.ArgumentParser) -> None:
    """--prisma-generate: run, apply and deploy only; never a fleet's (docs/prisma-generate.md)."""
    p.add_argument(
        "--prisma-generate",
        action="store_true",
        help="after a successful apply (not a dry run), run the project's `prisma generate` "
        "(node_modules/.bin/prisma, found from the migrations folder up) and record it in "
        "prisma_generate.json; its failure is a WARN, not a failed migration",
    )


def _backfill_options(p: argparse.ArgumentParser) -> None:
    """How --strategy online paces the data statements it runs in batches (execution.backfill)."""
    p.add_argument(
        "--batch-ms",
        type=int,
        default=DEFAULTS.backfill_batch_ms,
        metavar="MS",
        dest="backfill_batch_ms",
        help="online: the transaction time each batch's size adapts toward (its rows stay locked that long)"
        " (default: %(default)s)",
    )
    p.add_argument(
        "--batch-rows-per-s",
        type=int,
        default=DEFAULTS.backfill_rows_per_s,
        metavar="N",
        dest="backfill_rows_per_s",
        help="online: at most N rows changed per second (0: no limit) (default: %(default)s)",
    )
    p.add_argument(
        "--batch-pause-ms",
        type=int,
        default=DEFAULTS.backfill_pause_ms,
        metavar="MS",
        dest="backfill_pause_ms",
        help="online: a pause after every batch (default: %(default)s)",
    )
    p.add_argument(
        "--max-replica-lag",
        type=int,
        default=DEFAULTS.max_replica_lag_ms,
        metavar="MS",
        dest="max_replica_lag_ms",
        help="online: pause batches while a replica's replay lag is over MS (0: off) (default: %(default)s)",
    )
    p.add_argument(
        "--batch-wal-mb-per-s",
        type=float,
        default=DEFAULTS.backfill_wal_mb_per_s,
        metavar="MB",
        dest="backfill_wal_mb_per_s",
        help="online: at most MB of WAL per second while batches run, the server's WAL (0: no limit)"
        " (default: %(default)s)",
    )
    p.add_argument(
        "--batch-flush-from-mb",
        type=float,
        default=DEFAULTS.backfill_flush_from_mb,
        metavar="MB",
        dest="backfill_flush_from_mb",
        help="online: from MB of WAL on, the session writes back the pages it dirties as it goes "
        "(default: the server's checkpoint distance; 0: never)",
    )


class _Version(argparse.Action):
    """--version: the installed distribution's version (pyproject.toml's), read only when asked."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        from importlib import metadata  # here: only --version needs it, not every command's start

        try:
            version = metadata.version("runbook")
        except metadata.PackageNotFoundError:
            version = "unknown (not installed)"
        print(f"runbook {version}")
        parser.exit()


def _batch_or_pending(text: str) -> int | str:
    if text == "pending":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a batch number or 'pending'") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="runbook", description="PostgreSQL migrations as executable, auditable notebooks.")
    parser.add_argument("--version", action=_Version, nargs=0, help="which runbook this is, and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    fmt = [_format_parent()]
    for name, text in (
        ("preflight", "is it safe? read-only checks ending in GO / WARN / NO-GO"),
        ("validate", "prove what the database now enforces"),
    ):
        p = sub.add_parser(name, help=text, parents=[_format_parent("markdown")] if name == "preflight" else fmt)
        p.add_argument("batch", type=int, help=BATCH_HELP)
        _common(p)
        if name == "validate":
            _not_run_option(p)
    p = sub.add_parser("apply", parents=fmt, help="apply a batch (one transaction, lock_timeout with retries)")
    p.add_argument("batch", type=int, help=BATCH_HELP)
    _common(p)
    _apply_options(p)
    _prisma_generate_option(p)
    p = sub.add_parser("rollback", parents=fmt, help="run rollback.sql of an applied (or part-applied) batch")
    p.add_argument("batch", type=int, help=BATCH_HELP)
    _common(p)
    _apply_options(p, force=False)
    p = sub.add_parser(
        "notebook",
        parents=fmt,
        help="write a runbook notebook for a batch (or a release): a cell per "
        "step of the apply plan, each guarded, recorded and safe to run again",
    )
    p.add_argument(
        "batch",
        type=_batch_or_pending,
        metavar="BATCH|pending",
        help='a batch number, or "pending": every migration not yet applied, a section each',
    )
    _common(p)
    _apply_options(p)
    _not_run_option(p)
    p = sub.add_parser("run", parents=fmt, help="preflight, apply, validate and summary in one run folder")
    p.add_argument("batch", type=int, help=BATCH_HELP)
    _common(p)
    _apply_options(p)
    p.add_argument(
        "--rollback-on-failure",
        action="store_true",
        help="when validation fails, roll the batch back (rollback.sql) before the summary",
    )
    _not_run_option(p)
    _prisma_generate_option(p)
    p = sub.add_parser(
        "deploy", parents=fmt, help="every pending migration, in order, as one release (one run folder, one summary)"
    )
    p.add_argument("--to", type=int, metavar="N", help="stop after migration N")
    _common(p)
    _apply_options(p)
    _not_run_option(p)
    _prisma_generate_option(p)
    p = sub.add_parser("status", parents=fmt, help="batches found and whether each is applied")
    _common(p)
    p = sub.add_parser(
        "check", parents=fmt, help="re-check every applied batch read-only; exit 1 on drift (for cron or CI)"
    )
    p.add_argument("--database-url", help="target database (default: DATABASE_URL, else the embedded server)")
    p.add_argument("--migrations-dir", type=Path, help=MIGRATIONS_HELP)
    _not_run_option(p, "check")
    _identity_options(p)
    p = sub.add_parser("report", parents=fmt, help="re-render a run folder's summary from its records")
    p.add_argument("run_dir", type=Path)
    p = sub.add_parser("example", help="the example CRM database")
    ex = p.add_subparsers(dest="example_command", required=True, parser_class=_Parser)
    load = ex.add_parser("load", parents=fmt, help="load the example at its starting state")
    load.add_argument("--database-url")
    _identity_options(load)
    load.add_argument("--leads", type=int, default=1000)
    load.add_argument("--reset", action="store_true", help="drop the example's tables and the ledger first")
    p = sub.add_parser(
        "baseline",
        parents=fmt,
        help="record batches up to N as applied without running them (a database whose schema is already there)",
    )
    p.add_argument("batch", type=int, help="the last migration the database already has")
    p.add_argument("--yes", action="store_true", help="record without asking (needed without a terminal)")
    _common(p)
    p = sub.add_parser("demo", parents=fmt, help="load the example and run batches 6 and 7 end to end")
    _common(p, migrations_help="folder of batches (default: the example's)")
    p.add_argument("--reset", action="store_true", help="with DATABASE_URL: drop the example's tables first")
    p = sub.add_parser("server", parents=fmt, help="the embedded PostgreSQL")
    p.add_argument("action", choices=("start", "stop", "url"))
    p = sub.add_parser(
        "publish", parents=fmt, help="a static copy of reports/index.html and the pages it links, for any static host"
    )
    p.add_argument("directory", type=Path, metavar="DIR", help="an empty folder outside the reports dir")
    p.add_argument("--reports-dir", type=Path, help="where run folders are (default: reports/)")
    p.add_argument("--with-notebooks", action="store_true", help="copy the executed .ipynb notebooks too")
    p.add_argument("--force", action="store_true", help="write into DIR even if it is not empty")
    _fleet_parser(sub, fmt)
    return parser


def _fleet_parser(sub: argparse._SubParsersAction[_Parser], fmt: list[_Parser]) -> None:
    p = sub.add_parser("fleet", help="one batch across the databases of a fleet.toml, on Dask (waves, canary first)")
    fl = p.add_subparsers(dest="fleet_command", required=True, parser_class=_Parser)
    for name, text in (
        ("preflight", "preflight on every target (read-only); exit 1 if any says NO-GO"),
        ("run", "preflight, apply, validate and summary on every target, wave by wave"),
    ):
        f = fl.add_parser(name, parents=fmt, help=text)
        f.add_argument(
            "batch",
            type=_batch_or_pending,
            metavar="BATCH|pending",
            help='a batch number, or "pending": every migration not yet applied, as one release',
        )
        f.add_argument(
            "--targets",
            type=Path,
            required=True,
            metavar="FLEET.TOML",
            help="the targets: [[target]] name, url_env (the variable holding its URL), group",
        )
        f.add_argument("--workers", type=int, help="LocalCluster worker processes (default: the core count)")
        f.add_argument(
            "--scheduler", metavar="tcp://HOST:PORT", help="an existing Dask scheduler instead of a LocalCluster"
        )
        f.add_argument(
            "--shared-reports",
            action="store_true",
            help="with --scheduler: the workers see --reports-dir (shared storage) and write there",
        )
        f.add_argument("--migrations-dir", type=Path, help=MIGRATIONS_HELP)
        f.add_argument("--reports-dir", type=Path, help="where run folders go (default: reports/)")
        _identity_options(f)  # LocalCluster workers inherit them; with --scheduler, set RUNBOOK_ROLE on the workers
        if name == "run":
            _apply_options(f, force=False)
            f.add_argument("--strategy", choices=STRATEGIES, default=DEFAULTS.strategy, help="as for `runbook run`")
            f.add_argument("--max-failures", type=int, metavar="K", help="schedule no new target after K failures")
            f.add_argument(
                "--rollback-on-failure",
                action="store_true",
                help="on a target whose validation fails, roll the batch back",
            )
            _not_run_option(f)


def _fleet(args: argparse.Namespace) -> int:
    run = args.fleet_command == "run"
    outcome = commands.fleet(
        args.fleet_command,
        args.batch,
        targets=args.targets,
        workers=args.workers,
        scheduler=args.scheduler,
        max_failures=getattr(args, "max_failures", None),
        options=_options(args) if run else None,
        rollback_on_failure=getattr(args, "rollback_on_failure", False),
        migrations_dir=args.migrations_dir,
        reports_dir=args.reports_dir,
        shared_reports=True if args.shared_reports else None,
    )
    record = outcome.record
    if args.format == "json":
        print(
            machine.document(
                f"fleet {args.fleet_command}",
                outcome.ok,
                headline=fleet_report.headline(record),
                totals=dict((k, n) for k, n in fleet_report.totals(record)),
                report_html=str(outcome.html),
                report_md=str(outcome.markdown),
                fleet=machine.plain(record),
            )
        )
        return 0 if outcome.ok else 1
    width = max(len(t.name) for t in record.targets)
    print(fleet_report.headline(record) + ": " + ", ".join(f"{n} {k}" for k, n in fleet_report.totals(record)))
    for t in record.targets:
        detail = "; ".join(t.reasons) if not run and t.reasons else t.message
        if run and t.validation:
            detail = f"validation {t.validation}" + (f"; {detail}" if detail else "")
        print(f"  {t.wave:<10} {t.name:<{width}}  {t.status:<16} {t.seconds:6.1f} s  {detail}".rstrip())
    if record.stopped:
        print(f"stopped: {record.stopped}")
    print(f"fleet report: {outcome.html}")
    print(f"              {outcome.markdown}")
    return 0 if outcome.ok else 1


def _options(args: argparse.Namespace) -> Options:
    return Options(
        dry_run=getattr(args, "dry_run", DEFAULTS.dry_run),
        force=getattr(args, "force", DEFAULTS.force),
        strategy=getattr(args, "strategy", DEFAULTS.strategy),
        lock_timeout_ms=args.lock_timeout,
        statement_timeout_ms=args.statement_timeout,
        max_attempts=args.max_attempts,
        wait_for_blockers_s=args.wait_for_blockers,
        terminate_blockers_after_s=args.terminate_blockers_after,
        blocker_threshold_ms=args.blocker_threshold,
        **{name: getattr(args, name, getattr(DEFAULTS, name)) for name in BACKFILL_OPTIONS},
        fail_on_not_run=getattr(args, "fail_on_not_run", DEFAULTS.fail_on_not_run),
        prisma_generate=getattr(args, "prisma_generate", DEFAULTS.prisma_generate),  # not on fleet's parser
        out_of_order=getattr(args, "out_of_order", DEFAULTS.out_of_order),
    )


def _print_outcome(outcome: commands.RunOutcome, fmt: str = "text", command: str = "run") -> int:
    """The headline from the run folder's records, then the summary's path; or the JSON / Markdown of it."""
    failure = outcome.failure
    if fmt == "json":
        # a failed phase carries `error` and `error_type` too, as a refusal before any phase does
        said = {} if failure is None else {"error": _masked(failure.evalue), "error_type": failure.ename}
        print(
            machine.document(
                command,
                failure is None,
                **machine.run_fields(outcome.run_dir, outcome.summary_html, outcome.summary_md),
                **said,
            )
        )
    elif fmt == "markdown":
        result = records.RunFolder.open(outcome.run_dir).read(names.PREFLIGHT, records.PreflightResult)
        if result is not None:
            print(machine.preflight_markdown(result), end="")
    else:
        tty = terminal.colour_wanted(sys.stdout)
        # on one screen the progress (stderr) has shown each phase's line already: not twice
        same_screen = sys.stdout.isatty() and sys.stderr.isatty()
        for line in terminal.outcome_lines(outcome.run_dir, tty, phases=not same_screen):
            print(line)
        for line in prisma_generate.terminal_lines(
            records.RunFolder.open(outcome.run_dir).read(prisma_generate.RECORD, prisma_generate.PrismaGenerate)
        ):
            print(line)  # its WARN: a failed `prisma generate` fails no migration
        if outcome.summary_html:
            print(f"summary: {outcome.summary_html}")
            print(f"         {outcome.summary_md}")
    if failure is not None:
        if outcome.record.rolled_back:
            print("runbook: validation failed; the batch was rolled back (--rollback-on-failure)", file=sys.stderr)
        where = f"cell {failure.cell_index}" if failure.cell_index is not None else "the kernel"
        print(f"\nrunbook: {failure.phase} failed", file=sys.stderr)
        print(f"  notebook: {failure.notebook} ({where})", file=sys.stderr)
        print(_masked(f"  {failure.ename}: {failure.evalue}"), file=sys.stderr)
        return 1
    if fmt == "text":
        print(f"run folder: {outcome.run_dir} (index.html)")
    return 0


def _command_name(args: argparse.Namespace) -> str:
    sub = getattr(args, "example_command", None) or getattr(args, "fleet_command", None)
    return f"{args.command} {sub}" if sub else args.command


def main(argv: list[str] | None = None) -> int:
    given = _GIVEN_URLS.set(_given_urls(sys.argv[1:] if argv is None else list(argv)))
    try:
        return _main(argv)
    finally:
        _GIVEN_URLS.reset(given)


# At exit, Python's last collections walk every object of every module imported (psycopg, papermill, nbconvert...):
# a tenth of a second or more of a command's time, spent on memory the process is about to give back. Frozen, it is
# left alone (objects are still released as at any exit; only cycles wait for the operating system).
atexit.register(gc.freeze)


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors and --help: the code argparse chose, also when called in-process
        return int(exc.code or 0)
    try:
        with _identity(args):
            return _dispatch(args)
    except PhaseFailed as exc:
        _refused(args, exc)
        return 1
    except RunbookError as exc:
        _refused(args, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        print("runbook: interrupted", file=sys.stderr)
        return 130


@contextmanager
def _identity(args: argparse.Namespace) -> Iterator[None]:
    """--role and the ledger's schema in the environment for this command: its connections, and the kernels it
    starts (in the run folder, far from runbook.toml), act as that role and find that ledger. The schema is
    --ledger-schema, else the ledger_schema of the project's runbook.toml (from --migrations-dir, or from
    the current directory, up)."""
    with ExitStack() as stack:
        if getattr(args, "role", None):
            stack.enter_context(environment_variable(connection.ROLE_VARIABLE, args.role))
        folder = getattr(args, "migrations_dir", None)
        schema = (
            args.ledger_schema or config.project_ledger_schema(Path(folder) if folder else None)
            if hasattr(args, "ledger_schema")
            else None
        )  # a command that reaches no ledger reads no runbook.toml
        if schema:
            stack.enter_context(environment_variable(ledger.SCHEMA_VARIABLE, schema))
        yield


def _refused(args: argparse.Namespace, exc: Exception) -> None:
    """The sentence on stderr; with --format json, also the one document on stdout, saying why."""
    said = _masked(str(exc))
    print(f"runbook: {said}", file=sys.stderr)
    if getattr(args, "format", "text") == "json":
        print(machine.document(_command_name(args), False, error=said, error_type=type(exc).__name__))


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "server":
        said = commands.server(args.action)
        if args.format == "json":
            print(
                machine.document(
                    "server",
                    True,
                    action=args.action,
                    **({"url": said} if args.action != "stop" else {"message": said}),
                )
            )
        else:
            print(said)
        return 0
    if cmd == "report":
        return _print_outcome(commands.report(args.run_dir), args.format, "report")
    if cmd == "fleet":
        return _fleet(args)
    if cmd == "publish":
        done = commands.publish(
            args.directory, reports_dir=args.reports_dir, with_notebooks=args.with_notebooks, force=args.force
        )
        if args.format == "json":
            print(machine.document("publish", True, published=machine.plain(done)))
            return 0
        print(
            f"published {done.runs} run(s): {done.summaries} summary file(s), {done.audit_copies} audit "
            f"page(s), {done.notebooks} notebook(s)\nindex: {done.index}"
        )
        return 0
    tgt = commands.target(args.database_url)
    if cmd == "example":
        loaded = commands.example_load(tgt, leads=args.leads, reset=args.reset)
        if args.format == "json":
            project = commands.example_project()
            print(
                machine.document(
                    "example load",
                    True,
                    database=tgt.shown,
                    loaded=machine.plain(loaded),
                    project_file=str(project) if project else None,
                )
            )
            return 0
        print(
            f"example loaded into {tgt.shown}: {loaded.customers} customers, {loaded.leads} leads "
            f"({loaded.leads_without_customer} without customer), {loaded.jobs} jobs in {loaded.seconds:.1f} s"
        )
        project = commands.example_project()
        if project is not None:
            print(f"{project} written: runbook commands run here find the example's batches 6 and 7")
        return 0
    if cmd == "check":
        return _check(tgt, args)
    if cmd == "status":
        report = commands.status(tgt, args.migrations_dir)
        if args.format == "json":
            print(
                machine.document(
                    "status",
                    not report.prisma_failed and not report.broken,
                    database=tgt.shown,
                    migrations=machine.plain(report.rows),
                    note=report.skipped_note,
                    prisma_failed=report.prisma_failed,
                    broken=[{"folder": folder, "error": why} for folder, why in report.broken],
                )
            )
        else:
            _print_status(tgt, report)
        return 1 if report.broken else 0  # a folder that cannot run: as check's drift, for a script to see
    if cmd == "demo":
        return _demo(tgt, args)
    if cmd == "baseline":
        return _baseline(tgt, args)
    where = {"migrations_dir": args.migrations_dir, "reports_dir": args.reports_dir}
    if cmd == "notebook":
        written = commands.notebook(tgt, args.batch, options=_options(args), **where)
        if args.format == "json":
            print(
                machine.document(
                    cmd,
                    True,
                    notebook=str(written.notebook) if written.notebook else None,
                    run_dir=str(written.run_dir) if written.run_dir else None,
                    batch=written.batch,
                    strategy=written.strategy,
                    steps=written.steps,
                    pauses=written.pauses,
                    migrations=written.migrations,
                )
            )
        else:
            print("\n".join(written.lines()))
        return 0
    if cmd == "deploy":
        return _print_outcome(commands.deploy(tgt, to=args.to, options=_options(args), **where), args.format, cmd)
    if cmd == "run":
        outcome = commands.run(
            tgt, args.batch, options=_options(args), rollback_on_failure=args.rollback_on_failure, **where
        )
        if isinstance(outcome, commands.AlreadyApplied):
            if args.format == "json":
                print(machine.document(cmd, True, run_dir=None, already_applied=outcome.message))
            else:
                print(f"{tgt.shown}: {outcome.message}")
            return 0
    elif cmd in ("apply", "rollback"):
        outcome = getattr(commands, cmd)(tgt, args.batch, options=_options(args), **where)
    elif cmd == "validate":
        outcome = commands.validate(tgt, args.batch, options=Options(fail_on_not_run=args.fail_on_not_run), **where)
    else:
        outcome = getattr(commands, cmd)(tgt, args.batch, **where)
    return _print_outcome(outcome, args.format, cmd)


def _print_status(tgt: commands.Target, report: commands.StatusReport) -> None:
    print(f"{tgt.shown}")
    if report.prisma_failed:
        print(f"  FAILED PRISMA MIGRATION: {report.prisma_failed}")
    for row in report.rows:
        state = (
            f"IN PROGRESS: {row.in_progress}"
            if row.in_progress
            else f"PAUSED: {row.paused}"
            if row.paused
            else f"PART ROLLED BACK: {row.part_rolled_back}"
            if row.part_rolled_back
            else f"applied {row.applied_at} by {row.applied_by} [{row.source}]"
            if row.applied
            else f"PART APPLIED: {row.part_applied}"
            if row.part_applied
            else "not applied"
        )
        if row.drift:
            state += f"  (DRIFT: migration.sql changed since: {row.drift})"
        print(f"  {row.number:>4}  {row.name:<32} {state}")
        for note in row.notes:
            print(f"        DISAGREE: {note}")
    for folder, why in report.broken:
        print(f"  BROKEN {folder}: {why}")
    if report.skipped_note:
        print(f"  note: {report.skipped_note}")


def _baseline(tgt: commands.Target, args: argparse.Namespace) -> int:
    json_out = args.format == "json"
    say = sys.stderr if json_out else sys.stdout  # with --format json, stdout holds the document only

    def confirm(plan: commands.BaselinePlan) -> bool:
        print(f"{tgt.shown}: baseline records as applied, without running them:", file=say)
        for line in plan.lines():
            print(f"  {line}", file=say)
        if args.yes:
            return True
        if not sys.stdin.isatty():
            raise RunbookError(
                "baseline asks before recording and there is no terminal to ask on; "
                "pass --yes to record the batches listed above."
            )
        answer = input("Record these as applied? [y/N] ")
        return answer.strip().lower() in ("y", "yes")

    outcome = commands.baseline(tgt, args.batch, migrations_dir=args.migrations_dir, confirm=confirm)
    if json_out:
        print(
            machine.document(
                "baseline",
                outcome.recorded or outcome.plan.empty,
                database=tgt.shown,
                upto=args.batch,
                recorded=outcome.recorded,
                batches=[b.number for b in outcome.plan.batches],
                plan=outcome.plan.lines(),
            )
        )
        if not outcome.recorded and not outcome.plan.empty:
            print("runbook: baseline cancelled; nothing was recorded.", file=sys.stderr)
            return 1
        return 0
    if outcome.plan.empty:
        print(f"{tgt.shown}: batches up to {args.batch} are already recorded as applied; nothing to record")
        return 0
    if not outcome.recorded:
        print("runbook: baseline cancelled; nothing was recorded.", file=sys.stderr)
        return 1
    print(f"recorded {len(outcome.plan.batches)} batch(es) up to {args.batch} as applied (without running them)")
    return 0


def _check(tgt: commands.Target, args: argparse.Namespace) -> int:
    result = commands.check(tgt, args.migrations_dir, fail_on_not_run=args.fail_on_not_run)
    if args.format == "json":
        print(
            machine.document(
                "check", result.ok, database=tgt.shown, headline=result.headline, health=machine.plain(result)
            )
        )
        if not result.ok:
            try:
                result.raise_for_drift()
            except RunbookError as exc:
                print(_masked(f"runbook: {exc}"), file=sys.stderr)
                return exc.exit_code
        return 0
    print(f"{tgt.shown}: {result.headline}")
    for line in result.frame().to_string(index=False).splitlines():
        print(f"  {line}")
    if result.superseded:
        print(
            f"  {len(result.superseded)} declared check(s) left to later applied migrations, which change the same "
            "objects again:"
        )
        for line in result.superseded:
            print(f"    {line}")
    result.raise_for_drift()
    return 0


def _demo(tgt: commands.Target, args: argparse.Namespace) -> int:
    if args.format == "json":  # one document at the end; the runs' progress stays on stderr
        done = commands.demo(tgt, migrations_dir=args.migrations_dir, reports_dir=args.reports_dir, reset=args.reset)
        print(
            machine.document(
                "demo",
                done.ok,
                database=tgt.shown,
                reset=done.reset,
                loaded=machine.plain(done.loaded),
                runs=[machine.run_fields(r.run_dir, r.summary_html, r.summary_md) for r in done.runs],
            )
        )
        return 0 if done.ok else 1

    def loaded(outcome: commands.DemoOutcome) -> None:
        what = "reset and reloaded" if outcome.loaded.replaced else "loaded"  # a fresh server had nothing to reset
        print(
            f"demo: example {what} in {tgt.shown} ({outcome.loaded.leads} leads, "
            f"{outcome.loaded.leads_without_customer} without customer)",
            flush=True,
        )

    outcome = commands.demo(
        tgt,
        migrations_dir=args.migrations_dir,
        reports_dir=args.reports_dir,
        reset=args.reset,
        on_loaded=loaded,
        on_run=_print_outcome,
    )
    if not outcome.ok:
        return 1
    print(f"\ndemo done: the batch {outcome.runs[-1].batch} summary is {outcome.runs[-1].summary_html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
