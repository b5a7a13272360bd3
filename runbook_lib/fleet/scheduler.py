"""One batch across a fleet of databases: fleet.toml, waves, one Dask task per target.

A thin layer over `runbook run`: each target is one task that runs the same chain of phase notebooks
(`notebook.chain.run_phases`) on a Dask worker, into `reports/<target>/<batch>/<run-id>/`. The task carries
the *name* of the environment variable holding the target's URL, never the URL: the worker reads it.
Waves run in the order of `[fleet].waves`; the next wave starts only when the previous one had no
failure, and `--max-failures K` stops scheduling new targets after K failures. The fleet report
(`fleet_report`) is written to `reports/fleet/<batch>/<fleet-run-id>/`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook_lib import batch as batch_mod
from runbook_lib.config import DEFAULTS, Options
from runbook_lib.db.target import Target
from runbook_lib.notebook import chain
from runbook_lib.db import connection as database
from runbook_lib.db import ledger
from runbook_lib import config as paths
from runbook_lib.report import records
from runbook_lib import names
from runbook_lib.errors import FleetError, RunbookError
from runbook_lib.names import GO, NOGO, WARN  # noqa: F401  (fleet preflight's statuses are the verdicts)

FLEET_FOLDER = "fleet"  # reports/fleet/<batch>/<fleet-run-id>/: reserved, no target may take this name
EVERYONE_ELSE = "*"

# A target's status in the fleet report.
APPLIED = "APPLIED"
DRY_RUN = "DRY RUN"
ALREADY_APPLIED = "ALREADY APPLIED"
SKIPPED = "SKIPPED (NO-GO)"
FAILED = "FAILED"
NOT_RUN = "NOT RUN"
# `fleet preflight`: the verdict is the status (or FAILED, ALREADY APPLIED).

RUN, PREFLIGHT = "run", "preflight"
_OK = {RUN: (APPLIED, DRY_RUN, ALREADY_APPLIED), PREFLIGHT: (GO, WARN, ALREADY_APPLIED)}

_TARGET_KEYS = ("name", "url_env", "group")
_FLEET_KEYS = ("waves",)
_SECRET_KEYS = ("url", "database_url", "dsn", "conninfo", "password", "uri", "connection")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")




# --- fleet.toml ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetTarget:
    """One database of the fleet: its name (the report folder) and the variable holding its URL."""

    name: str
    url_env: str
    group: str | None = None
    line: int = 0  # of its [[target]] header in fleet.toml

    @property
    def wave(self) -> str:
        return self.group or EVERYONE_ELSE


@dataclass(frozen=True)
class Wave:
    name: str
    targets: tuple[FleetTarget, ...]


@dataclass(frozen=True)
class Fleet:
    path: Path
    targets: tuple[FleetTarget, ...]
    waves: tuple[str, ...] = (EVERYONE_ELSE,)

    def plan(self) -> list[Wave]:
        """The waves in order, each with its targets in file order ("*": every target without a group)."""
        return [Wave(w, tuple(t for t in self.targets if t.wave == w)) for w in self.waves]

    def missing_env(self, environ: Any = None) -> list[FleetTarget]:
        env = os.environ if environ is None else environ
        return [t for t in self.targets if not env.get(t.url_env)]

    def require_env(self, environ: Any = None, where: str = "") -> None:
        missing = self.missing_env(environ)
        if not missing:
            return
        names = ", ".join(f"{t.url_env} (target {t.name!r}, line {t.line})" for t in missing)
        plural = "variables" if len(missing) > 1 else "variable"
        raise FleetError(f"{self.path}: the environment {plural} {names} {'are' if len(missing) > 1 else 'is'} "
                         f"not set{where}; export each with its target's database URL.")


def _header_lines(text: str, header: str) -> list[int]:
    pattern = re.compile(rf"^\s*\[\[?\s*{re.escape(header)}\s*\]\]?\s*(#.*)?$")
    return [n for n, line in enumerate(text.splitlines(), start=1) if pattern.match(line)]


def _key_line(text: str, start: int, key: str) -> int:
    """The line of `key = ...` in the table that starts at line `start` (else `start`)."""
    lines = text.splitlines()
    for number in range(start + 1, len(lines) + 1):
        line = lines[number - 1]
        if re.match(r"^\s*\[", line):
            break
        if re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", line):
            return number
    return start


def _looks_like_secret(value: str) -> bool:
    return "://" in value or "@" in value or "=" in value or "/" in value


def load(path: Path | str) -> Fleet:
    """Read and validate fleet.toml; every refusal is one sentence naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FleetError(f"The targets file {path} does not exist; pass --targets with a fleet.toml "
                         "that lists [[target]] tables (name, url_env, group).")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f"{path} is not valid TOML ({exc}); fix the syntax there.") from None
    for key in raw:
        if key not in ("target", "fleet"):
            hint = (" and fleet.toml holds no secrets: put the URL in an environment variable and name it "
                    "with url_env" if key.lower() in _SECRET_KEYS else "")
            raise FleetError(f"{path} line {_key_line(text, 0, key) or 1}: unknown key {key!r} at the top level; "
                             f"the file has [[target]] tables and one [fleet] table{hint}.")
    fleet_table = raw.get("fleet", {})
    fleet_line = (_header_lines(text, "fleet") or [1])[0]
    if not isinstance(fleet_table, dict):
        raise FleetError(f"{path} line {fleet_line}: [fleet] must be a table with waves = [...].")
    for key in fleet_table:
        if key not in _FLEET_KEYS:
            raise FleetError(f"{path} line {_key_line(text, fleet_line, key)}: unknown key {key!r} in [fleet]; "
                             "the only key there is waves.")
    waves_line = _key_line(text, fleet_line, "waves")
    waves = fleet_table.get("waves", [EVERYONE_ELSE])
    if not isinstance(waves, list) or not waves or not all(isinstance(w, str) and w.strip() for w in waves):
        raise FleetError(f"{path} line {waves_line}: [fleet].waves must be a non-empty list of group names "
                         '(and "*" for every target without a group), like ["canary", "*"].')
    repeated = sorted({w for w in waves if waves.count(w) > 1})
    if repeated:
        raise FleetError(f"{path} line {waves_line}: [fleet].waves lists {repeated[0]!r} twice; "
                         "name each wave once.")

    entries = raw.get("target", [])
    starts = _header_lines(text, "target")
    if not isinstance(entries, list) or not entries:
        raise FleetError(f"{path}: no [[target]] table; list each database as [[target]] with name and url_env.")
    targets: list[FleetTarget] = []
    seen_names: dict[str, int] = {}
    seen_env: dict[str, str] = {}
    for index, entry in enumerate(entries):
        start = starts[index] if index < len(starts) else 1
        where = f"{path} line {start}"
        label = f"[[target]] number {index + 1}"
        if isinstance(entry.get("name"), str):
            label = f"target {entry['name']!r}"
        for key in entry:
            if key in _TARGET_KEYS:
                continue
            at = f"{path} line {_key_line(text, start, key)}"
            if key.lower() in _SECRET_KEYS:
                raise FleetError(f"{at}: {label} has {key!r}, but fleet.toml holds no secrets; put the URL in an "
                                 "environment variable and name that variable with url_env.")
            raise FleetError(f"{at}: unknown key {key!r} in {label}; the keys of a target are name, url_env "
                             "and group.")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise FleetError(f"{where}: {label} has no name; add name = \"...\" (letters, digits, '_', '.', '-').")
        if not _TARGET_NAME.match(name):
            raise FleetError(f"{path} line {_key_line(text, start, 'name')}: target name {name!r} is not usable as "
                             "a folder name; use letters, digits, '_', '.' and '-' only.")
        if name == FLEET_FOLDER:
            raise FleetError(f"{path} line {_key_line(text, start, 'name')}: the target name {name!r} is reserved "
                             "for the fleet report folder; choose another name.")
        if name in seen_names:
            raise FleetError(f"{path} line {_key_line(text, start, 'name')}: target name {name!r} is used twice "
                             f"(lines {seen_names[name]} and {_key_line(text, start, 'name')}); "
                             "give each target its own name.")
        seen_names[name] = _key_line(text, start, "name")
        env_line = f"{path} line {_key_line(text, start, 'url_env')}"
        url_env = entry.get("url_env")
        if not isinstance(url_env, str) or not url_env:
            raise FleetError(f"{where}: target {name!r} has no url_env; add url_env = \"NAME_OF_A_VARIABLE\" "
                             "holding its database URL.")
        if not _ENV_NAME.match(url_env):
            if _looks_like_secret(url_env):  # never echo what may be a URL with its password
                raise FleetError(f"{env_line}: url_env of target {name!r} must name an environment variable "
                                 "(like TENANT_A_URL), not hold a URL; fleet.toml holds no secrets.")
            raise FleetError(f"{env_line}: url_env {url_env!r} of target {name!r} is not an environment variable "
                             "name; use letters, digits and '_' (like TENANT_A_URL).")
        if url_env in seen_env:
            raise FleetError(f"{env_line}: targets {seen_env[url_env]!r} and {name!r} both read {url_env}; "
                             "each target is its own database, with its own variable.")
        seen_env[url_env] = name
        group = entry.get("group")
        if group is not None:
            group_line = f"{path} line {_key_line(text, start, 'group')}"
            if not isinstance(group, str) or not group.strip():
                raise FleetError(f"{group_line}: group of target {name!r} must be a non-empty string.")
            if group == EVERYONE_ELSE:
                raise FleetError(f"{group_line}: group \"*\" is reserved for the targets without a group; "
                                 f"leave group out for target {name!r}.")
            if group not in waves:
                raise FleetError(f"{group_line}: target {name!r} is in group {group!r}, which [fleet].waves "
                                 f"({', '.join(waves)}) does not list; add it to waves or fix the group.")
        targets.append(FleetTarget(name, url_env, group, start))
    groups = {t.group for t in targets if t.group}
    for wave in waves:
        if wave != EVERYONE_ELSE and wave not in groups:
            raise FleetError(f"{path} line {waves_line}: [fleet].waves names group {wave!r}, but no target is in it; "
                             "remove it from waves or set group on a target.")
    loose = [t.name for t in targets if t.group is None]
    if loose and EVERYONE_ELSE not in waves:
        raise FleetError(f"{path} line {waves_line}: targets without a group ({', '.join(loose)}) are in no wave; "
                         'add "*" to [fleet].waves or give them a group.')
    return Fleet(path, tuple(targets), tuple(waves))


# --- the task: one target, on a Dask worker -----------------------------------------------------


def _pack(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buffer.getvalue()


def _unpack(data: bytes, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        try:
            tar.extractall(into, filter="data")  # no absolute paths, no links out of the folder
        except TypeError:  # Python without extraction filters
            for member in tar.getmembers():
                if member.name.startswith("/") or ".." in Path(member.name).parts or not (member.isfile() or member.isdir()):
                    raise FleetError(f"A returned run folder holds an unsafe entry {member.name!r}; nothing was written.")
            tar.extractall(into)


def _scrub(text: str, url: str) -> str:
    """Whatever a failure says, without the URL's password (or the URL itself)."""
    text = str(text)
    if url:
        text = text.replace(url, database.redact(url))
        try:
            from psycopg import conninfo

            password = conninfo.conninfo_to_dict(url).get("password")
        except Exception:
            password = None
        if password:
            text = text.replace(password, "***")
    return " ".join(text.split())


_ONE_AT_A_TIME = threading.Lock()  # runner sets DATABASE_URL process-wide: one target per worker process at a time


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except Exception:  # run outside Dask (tests, a sequential loop)
        return f"pid {os.getpid()}"


def _verdict_of(record: dict | None) -> tuple[str, list[str]]:
    if not record:
        return "", []
    verdict = record.get("verdict") or {}
    return verdict.get("status", ""), list(verdict.get("reasons") or [])


def run_target(task: dict) -> dict:
    """One target's phases on this worker; returns plain data (records as JSON-able dicts), never the URL.

    `task`: target, url_env, batch, mode ("run" or "preflight"), options, rollback_on_failure,
    migrations_dir or migrations_archive, reports_dir (shared with the client) or None (return the folder).
    """
    name, number, mode = task["target"], int(task["batch"]), task["mode"]
    out: dict[str, Any] = {"target": name, "status": FAILED, "verdict": "", "reasons": [], "message": "",
                           "database": "", "run_dir": "", "run": None, "records": {}, "archive": None,
                           "worker": _worker_address(), "started_at": records.now_iso(), "finished_at": "", "seconds": 0.0}
    t0 = time.perf_counter()
    url = os.environ.get(task["url_env"], "")
    try:
        with _ONE_AT_A_TIME, tempfile.TemporaryDirectory(prefix="runbook-fleet-") as scratch:
            if not url:
                raise FleetError(f"The environment variable {task['url_env']} is not set on worker "
                                 f"{out['worker']}; set it where the Dask workers start.")
            out["database"] = database.redact(url)
            if task.get("migrations_archive") is not None:
                migrations = Path(scratch) / "migrations"
                _unpack(task["migrations_archive"], migrations)
            else:
                migrations = Path(task["migrations_dir"])
            batch = batch_mod.find(migrations, number)
            if mode == RUN:  # before reading the ledger: whoever holds the lock may be about to change it
                _wait_for_migration_lock(url)
            with database.connect(url) as conn:  # one sentence (redacted) if unreachable
                state = ledger.states(conn).get(number)
            if state and state.applied and state.checksum == batch.checksum:
                out["status"] = ALREADY_APPLIED
                when = state.applied_at.isoformat(timespec="seconds") if state.applied_at else "?"
                out["message"] = f"batch {number} already applied at {when} by {state.applied_by}"
                return out
            shared = task.get("reports_dir")
            reports = Path(shared) if shared else Path(scratch) / "reports"
            phases = names.RUN_PHASES if mode == RUN else (names.PREFLIGHT,)
            outcome = chain.run_phases(
                Target(url, embedded=False), number, phases, migrations_dir=migrations,
                reports_dir=reports, options=task.get("options"),
                rollback_on_failure=bool(task.get("rollback_on_failure")), quiet=True, folder_name=name)
            out["run_dir"] = outcome.run_dir.relative_to(reports.resolve()).as_posix()
            out["run"] = json.loads(records.to_json(outcome.record))
            for phase in names.RECORD_PHASES:
                path = outcome.run_dir / f"{phase}.json"
                if path.exists():
                    out["records"][phase] = json.loads(path.read_text(encoding="utf-8"))
            if not shared:
                out["archive"] = _pack(outcome.run_dir)
            _classify(out, outcome, mode, task.get("options") or DEFAULTS)
    except RunbookError as exc:
        out["status"], out["message"] = FAILED, _scrub(str(exc), url)
    except Exception as exc:  # anything else still comes back as this target's failure, not the fleet's
        out["status"], out["message"] = FAILED, _scrub(f"{type(exc).__name__}: {exc}", url)
    finally:
        out["finished_at"] = records.now_iso()
        out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def _wait_for_migration_lock(url: str, timeout_s: float = 30.0) -> None:
    """Wait (bounded) while another session holds this database's migration lock.

    When Dask retries a task whose worker died, that worker's kernel may still hold the lock for a
    moment (a kernel exits within a second of its parent); the retry waits for it instead of failing.
    Past the timeout, apply itself refuses and names the holder.
    """
    from runbook_lib.db.migration_lock import ADVISORY_KEY

    deadline = time.monotonic() + timeout_s
    with database.connect(url, autocommit=True, application_name="runbook fleet") as conn:
        while True:
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)).fetchone()[0]:
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
                return
            if time.monotonic() > deadline:
                return
            time.sleep(0.25)


def _classify(out: dict, outcome: chain.RunOutcome, mode: str, options: Options) -> None:
    preflight = out["records"].get("preflight")
    out["verdict"], out["reasons"] = _verdict_of(preflight)
    failure = outcome.record.failure
    if mode == PREFLIGHT:
        out["status"] = out["verdict"] or FAILED
        if failure is not None and out["verdict"] != NOGO:
            out["status"] = FAILED
            out["message"] = f"{failure.phase}: {failure.error_name}: {failure.error_message}"
        return
    if failure is None:
        apply = out["records"].get("apply") or {}
        if apply.get("status") == names.ALREADY_APPLIED:
            out["status"] = ALREADY_APPLIED
        else:
            out["status"] = DRY_RUN if options.dry_run else APPLIED
        return
    if failure.phase == "preflight" and out["verdict"] == NOGO:
        out["status"] = SKIPPED
        out["message"] = "preflight says NO-GO: " + "; ".join(out["reasons"])
        return
    out["status"] = FAILED
    out["message"] = f"{failure.phase} failed: {failure.error_name}: {failure.error_message}"
    if outcome.record.rolled_back:
        out["message"] += " (the batch was rolled back)"


# --- the client: waves, the engine, progress ----------------------------------------------------


@dataclass
class TargetResult:
    """One target's line in the fleet report (fleet.json)."""

    name: str
    wave: str
    url_env: str
    status: str = NOT_RUN
    verdict: str = ""
    reasons: list[str] = field(default_factory=list)
    message: str = ""
    database: str = ""  # redacted URL
    run_dir: str = ""  # relative to the reports dir: <target>/<batch>/<run-id>
    summary: str = ""  # relative to the reports dir
    worker: str = ""
    attempts: int = 0  # tasks started for this target (more than 1: a worker died and Dask retried it)
    started_at: str = ""
    finished_at: str = ""
    seconds: float = 0.0
    apply_status: str = ""
    apply_attempts: int = 0  # lock_timeout attempts of the apply
    apply_seconds: float | None = None
    longest_write_block_s: float | None = None
    validation_passed: int | None = None
    validation_total: int | None = None

    @property
    def validation(self) -> str:
        return "" if self.validation_total is None else f"{self.validation_passed}/{self.validation_total}"


@dataclass
class FleetRecord:
    """fleet.json: what the fleet run did, the data fleet.html and fleet.md render."""

    batch: int
    fleet_run_id: str
    mode: str
    targets_file: str
    waves: list[str]
    engine: str
    started_at: str
    finished_at: str = ""
    seconds: float = 0.0
    max_failures: int | None = None
    strategy: str = ""
    stopped: str = ""  # why targets were left NOT RUN
    targets: list[TargetResult] = field(default_factory=list)

    def count(self, *statuses: str) -> int:
        return sum(1 for t in self.targets if t.status in statuses)

    @property
    def ok(self) -> bool:
        return all(t.status in _OK[self.mode] for t in self.targets)


@dataclass
class FleetOutcome:
    record: FleetRecord
    folder: Path
    html: Path
    markdown: Path
    reports_dir: Path

    @property
    def ok(self) -> bool:
        return self.record.ok


def _missing_env(names: list[str]) -> list[str]:  # runs on each worker (client.run)
    return [n for n in names if not os.environ.get(n)]


@contextmanager
def engine(workers: int | None = None, scheduler: str | None = None) -> Iterator[tuple[Any, str, bool]]:
    """A Dask client: on a LocalCluster of processes (one thread each), or on an existing scheduler.

    Yields (client, description, shared): `shared` is True when the workers see the client's files.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise FleetError(f"Cannot reach the Dask scheduler at {scheduler} ({_first_line(exc)}); check the "
                             "address and that the scheduler is running.") from None
        try:
            yield client, f"Dask scheduler {scheduler}", False
        finally:
            client.close()
        return
    n = workers or os.cpu_count() or 1
    if n < 1:
        raise FleetError(f"--workers must be at least 1, not {n}.")
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client, f"Dask LocalCluster, {n} worker process{'es' if n > 1 else ''}, 1 thread each", True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _task_attempts(client: Any, keys: list[str]) -> dict[str, int]:
    """How many times each task was started: 1 + the times its worker died under it (the scheduler's count)."""
    try:
        counts = client.run_on_scheduler(
            lambda keys, dask_scheduler=None: {k: getattr(dask_scheduler.tasks.get(k), "suspicious", 0) for k in keys},
            keys)
        return {k: 1 + int(v or 0) for k, v in counts.items()}
    except Exception:
        return {}


class _Progress:
    """One line per event on the terminal: what happened, then targets done / running / failed."""

    def __init__(self, total: int, say: Callable[[str], None]) -> None:
        self.total, self.say = total, say
        self.done = self.failed = self.running = self.nogo = 0

    def line(self, text: str) -> None:
        nogo = f", {self.nogo} NO-GO" if self.nogo else ""
        self.say(f"fleet: {text:<58} [{self.done}/{self.total} done, {self.running} running, "
                 f"{self.failed} failed{nogo}]")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(
    fleet: Fleet,
    number: int,
    *,
    mode: str = RUN,
    workers: int | None = None,
    scheduler: str | None = None,
    max_failures: int | None = None,
    options: Options | None = None,
    rollback_on_failure: bool = False,
    migrations_dir: Path | None = None,
    reports_dir: Path | None = None,
    shared_reports: bool | None = None,
    say: Callable[[str], None] = _say,
) -> FleetOutcome:
    """Run batch `number` (mode "run": the `runbook run` chain; "preflight": preflight only) on every target."""
    from runbook_lib.fleet import report as fleet_report

    if mode not in (RUN, PREFLIGHT):
        raise FleetError(f"Unknown fleet mode {mode!r}; use run or preflight.")
    if max_failures is not None and max_failures < 1:
        raise FleetError(f"--max-failures must be at least 1, not {max_failures}.")
    migrations = Path(migrations_dir or paths.example_migrations_dir()).resolve()
    batch_mod.find(migrations, number)  # an unknown batch is refused before any cluster starts
    if not scheduler:
        fleet.require_env()  # LocalCluster workers inherit this environment
    reports = Path(reports_dir or paths.default_reports_dir()).resolve()
    options = options or DEFAULTS
    record = FleetRecord(number, records.new_run_id(), mode, str(fleet.path), list(fleet.waves), "", records.now_iso(),
                         max_failures=max_failures, strategy=options.strategy if mode == RUN else "")
    results = {t.name: TargetResult(t.name, t.wave, t.url_env) for t in fleet.targets}
    record.targets = [results[t.name] for t in fleet.targets]
    t0 = time.perf_counter()
    folder = None
    try:
        with engine(workers, scheduler) as (client, description, shared_default):
            record.engine = description
            shared = shared_default if shared_reports is None else shared_reports
            if scheduler:
                missing = {w: m for w, m in client.run(_missing_env, [t.url_env for t in fleet.targets]).items() if m}
                if missing:
                    worker, names = next(iter(missing.items()))
                    raise FleetError(f"The Dask worker {worker} lacks the environment variable"
                                     f"{'s' if len(names) > 1 else ''} {', '.join(names)} that {fleet.path} names; "
                                     "set them where the workers start.")
            base = {"batch": number, "mode": mode, "options": options, "rollback_on_failure": rollback_on_failure,
                    "reports_dir": str(reports) if shared else None,
                    "migrations_dir": str(migrations) if shared else None,
                    "migrations_archive": None if shared else _pack(migrations)}
            # the fleet run folder exists once the engine is up and every check passed
            folder = records.RunFolder.create(reports, FLEET_FOLDER, number, record.fleet_run_id)
            say(f"fleet: batch {number} {'preflight' if mode == PREFLIGHT else 'run'} on {len(fleet.targets)} "
                f"targets in {len(fleet.waves)} wave(s) ({', '.join(fleet.waves)}); {description}")
            _waves(client, fleet, base, results, record, max_failures, reports, say)
    finally:
        record.finished_at = records.now_iso()
        record.seconds = round(time.perf_counter() - t0, 3)
        if folder is not None:
            folder.write(FLEET_FOLDER, record)
    html, md = fleet_report.write(record, folder.path, reports)
    return FleetOutcome(record, folder.path, html, md, reports)


def _waves(client: Any, fleet: Fleet, base: dict, results: dict[str, TargetResult], record: FleetRecord,
           max_failures: int | None, reports: Path, say: Callable[[str], None]) -> None:
    from distributed import as_completed

    progress = _Progress(len(fleet.targets), say)
    failures = 0
    plan = fleet.plan()
    if record.mode == PREFLIGHT:  # read-only: no wave waits for another, all targets share the workers
        plan = [Wave("all", tuple(t for wave in plan for t in wave.targets))]
    for wave in plan:
        if record.stopped:
            for t in wave.targets:
                results[t.name].message = record.stopped
            continue
        queue = list(wave.targets)
        running: dict[Any, FleetTarget] = {}
        pending = as_completed()
        wave_failures = 0
        wave_done = 0  # targets of this wave that ended applied (now or before)

        def submit() -> None:
            capacity = max(1, sum(client.nthreads().values()))
            while queue and len(running) < capacity and not record.stopped:
                target = queue.pop(0)
                task = dict(base, target=target.name, url_env=target.url_env)
                future = client.submit(run_target, task, key=f"runbook-fleet-{record.fleet_run_id}-{target.name}",
                                       pure=False)
                running[future] = target
                pending.add(future)
                progress.running = len(running)
                progress.line(f"[{target.wave}] {target.name} started")

        submit()
        for future in pending:
            target = running.pop(future)
            result = results[target.name]
            try:
                _fill(result, future.result(), reports, record.batch)
            except Exception as exc:  # KilledWorker after Dask's retries, a lost scheduler
                result.status, result.message = FAILED, f"the task did not finish: {type(exc).__name__}: {_first_line(exc)}"
            result.attempts = _task_attempts(client, [future.key]).get(future.key, 1)
            future.release()
            if result.status in (SKIPPED, NOGO):
                progress.nogo += 1  # reported, not a failure: nothing was changed
            elif result.status not in _OK[record.mode]:
                failures += 1
                wave_failures += 1
                progress.failed += 1
            else:
                wave_done += 1
            progress.done += 1
            progress.running = len(running)
            progress.line(f"[{target.wave}] {target.name} {result.status} ({result.seconds:.1f} s)")
            if record.mode == PREFLIGHT:
                pass  # read-only: a failure stops nothing
            elif max_failures is not None and failures >= max_failures and not record.stopped:
                record.stopped = f"not scheduled: {failures} target(s) failed (--max-failures {max_failures})"
                say(f"fleet: {failures} failure(s): no new targets are scheduled (--max-failures {max_failures})")
            submit()
        for target in queue:  # left in this wave's queue by --max-failures
            results[target.name].message = record.stopped
        later = any(w.targets for w in plan[plan.index(wave) + 1:])
        if wave_failures and later and not record.stopped and record.mode == RUN:
            record.stopped = f"not run: wave {wave.name!r} had {wave_failures} failed target(s)"
            say(f"fleet: wave {wave.name!r} had {wave_failures} failure(s): the later waves are not run")
        elif not wave_done and later and not record.stopped and record.mode == RUN:
            # Every target of the wave was skipped (NO-GO): the migration has not been tried anywhere yet.
            record.stopped = f"not run: no target of wave {wave.name!r} was applied (all NO-GO)"
            say(f"fleet: no target of wave {wave.name!r} was applied (NO-GO): the later waves are not run")


def _fill(result: TargetResult, data: dict, reports: Path, number: int) -> None:
    """A task's returned data into its report line; a returned run folder is written under reports/."""
    for key in ("status", "verdict", "reasons", "message", "database", "run_dir", "worker", "started_at",
                "finished_at", "seconds"):
        setattr(result, key, data.get(key) or getattr(result, key))
    if data.get("archive") and result.run_dir:
        _unpack(data["archive"], reports / result.run_dir)
    if result.run_dir and (reports / result.run_dir / "summary.html").exists():
        result.summary = f"{result.run_dir}/summary.html"
    if result.status == ALREADY_APPLIED and not result.summary:
        earlier = records.latest_run_with(reports, result.name, number, "apply")
        if earlier is not None and (earlier.path / "summary.html").exists():
            result.summary = earlier.path.relative_to(reports).as_posix() + "/summary.html"
    recs = data.get("records") or {}
    apply = recs.get("apply")
    if apply:
        result.apply_status = apply.get("status", "")
        result.apply_attempts = int(apply.get("attempts") or 0)
        result.apply_seconds = apply.get("duration_s")
        result.longest_write_block_s = apply.get("longest_write_block_s")
    validate = recs.get("validate")
    if validate:
        tests = validate.get("tests") or []
        result.validation_passed = sum(1 for t in tests if t.get("passed"))
        result.validation_total = len(tests)

