"""The Dask side of a fleet run: the cluster, the waves, progress on the terminal, fleet.json.

Each target is one task (`task.run_target`) that runs the chain of phase notebooks on a Dask worker,
into `reports/<target>/<batch>/<run-id>/`. Waves run in the order of `[fleet].waves`; the next wave
starts only when the previous one had no failure, and `--max-failures K` stops scheduling new targets
after K failures. The fleet report (`fleet.report`) is written to `reports/fleet/<batch>/<fleet-run-id>/`.

Importing this module imports distributed (about a second): `commands.fleet` imports it only for a fleet.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from distributed import Client, LocalCluster, as_completed
from tqdm import tqdm

from runbook_lib import batch as batch_mod
from runbook_lib import config
from runbook_lib.config import DEFAULTS, Options
from runbook_lib.errors import FleetError
from runbook_lib.execution.session import PENDING, Pending
from runbook_lib.fleet import archive, report
from runbook_lib.fleet.task import TargetTask, TaskOutcome, run_target
from runbook_lib.report import records, site
from runbook_lib.report.fleet_record import (
    ALREADY_APPLIED,
    FAILED,
    FLEET_FOLDER,
    NOGO,
    OK_STATUSES,
    PREFLIGHT,
    RUN,
    SKIPPED,
    Fleet,
    FleetOutcome,
    FleetRecord,
    FleetTarget,
    TargetResult,
    Wave,
)


@contextmanager
def cluster(workers: int | None = None, scheduler: str | None = None) -> Iterator[tuple[Client, str, bool]]:
    """A Dask client: on a LocalCluster of processes (one thread each), or on an existing scheduler.

    Yields (client, description, shared): `shared` is True when the workers see the client's files.
    """
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise FleetError(
                f"Cannot reach the Dask scheduler at {scheduler} ({_first_line(exc)}); check the "
                "address and that the scheduler is running."
            ) from None
        try:
            yield client, f"Dask scheduler {scheduler}", False
        finally:
            client.close()
        return
    n = workers or os.cpu_count() or 1
    if n < 1:
        raise FleetError(f"--workers must be at least 1, not {n}.")
    with (
        LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
        ) as local,
        Client(local) as client,
    ):
        yield client, f"Dask LocalCluster, {n} worker process{'es' if n > 1 else ''}, 1 thread each", True


def _missing_env(names: list[str]) -> list[str]:  # runs on each worker (client.run)
    return [n for n in names if not os.environ.get(n)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _task_attempts(client: Client, keys: list[str]) -> dict[str, int]:
    """How many times each task was started: 1 + the times its worker died under it (the scheduler's count)."""
    try:
        counts = client.run_on_scheduler(
            lambda keys, dask_scheduler=None: {k: getattr(dask_scheduler.tasks.get(k), "suspicious", 0) for k in keys},
            keys,
        )
        return {k: 1 + int(v or 0) for k, v in counts.items()}
    except Exception:
        return {}


class _Progress:
    """One line per event: what happened, then targets done / running / failed; on a terminal, a bar below them.

    `stream`: where a bar may go (stderr when the fleet prints its own progress); a bar only on a terminal, so
    logs and pipes keep the plain lines alone.
    """

    def __init__(self, total: int, say: Callable[[str], None], stream: TextIO | None = None) -> None:
        self.total, self.say = total, say
        self.done = self.failed = self.running = self.nogo = 0
        self.bar = (
            tqdm(
                total=total,
                unit="target",
                file=stream,
                leave=False,
                bar_format="fleet {bar} {n_fmt}/{total_fmt} targets [{elapsed}] {postfix}",
            )
            if stream is not None and stream.isatty()
            else None
        )

    def line(self, text: str) -> None:
        nogo = f", {self.nogo} NO-GO" if self.nogo else ""
        message = (
            f"fleet: {text:<58} [{self.done}/{self.total} done, {self.running} running, {self.failed} failed{nogo}]"
        )
        if self.bar is None:
            self.say(message)
            return
        self.bar.write(message, file=self.bar.fp)
        self.bar.n = self.done
        self.bar.set_postfix_str(f"{self.running} running, {self.failed} failed{nogo}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(
    fleet: Fleet,
    number: int | Pending,
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
    if mode not in (RUN, PREFLIGHT):
        raise FleetError(f"Unknown fleet mode {mode!r}; use run or preflight.")
    if max_failures is not None and max_failures < 1:
        raise FleetError(f"--max-failures must be at least 1, not {max_failures}.")
    migrations = config.migrations_dir(migrations_dir).resolve()
    if number == PENDING:  # a release: every target deploys what it has pending
        batch_mod.discover(migrations)  # a malformed folder is refused before any cluster starts
    else:
        batch_mod.find(migrations, number)  # an unknown batch is refused before any cluster starts
    if not scheduler:
        fleet.require_env()  # LocalCluster workers inherit this environment
    reports = Path(reports_dir or config.default_reports_dir()).resolve()
    options = options or DEFAULTS
    record = FleetRecord(
        number,
        records.new_run_id(),
        mode,
        str(fleet.path),
        list(fleet.waves),
        "",
        records.now_iso(),
        max_failures=max_failures,
        strategy=options.strategy if mode == RUN else "",
    )
    results = {t.name: TargetResult(t.name, t.wave, t.url_env) for t in fleet.targets}
    record.targets = [results[t.name] for t in fleet.targets]
    t0 = time.perf_counter()
    folder = None
    try:
        with cluster(workers, scheduler) as (client, description, shared_default):
            record.engine = description
            shared = shared_default if shared_reports is None else shared_reports
            if scheduler:
                missing = {w: m for w, m in client.run(_missing_env, [t.url_env for t in fleet.targets]).items() if m}
                if missing:
                    worker, names = next(iter(missing.items()))
                    raise FleetError(
                        f"The Dask worker {worker} lacks the environment variable"
                        f"{'s' if len(names) > 1 else ''} {', '.join(names)} that {fleet.path} names; "
                        "set them where the workers start."
                    )
            # What every target's task shares; each gets its name and url_env in _waves.
            base = TargetTask(
                name="",
                url_env="",
                batch=number,
                mode=mode,
                options=options,
                rollback_on_failure=rollback_on_failure,
                migrations_dir=migrations if shared else None,
                migrations_archive=None if shared else archive.pack(migrations),
                reports_dir=reports if shared else None,
            )
            # the fleet run folder exists once the cluster is up and every check passed
            folder = records.RunFolder.create(
                reports, FLEET_FOLDER, "release" if number == PENDING else number, record.fleet_run_id
            )
            what = "a release" if number == PENDING else f"batch {number}"
            say(
                f"fleet: {what} {'preflight' if mode == PREFLIGHT else 'run'} on {len(fleet.targets)} "
                f"targets in {len(fleet.waves)} wave(s) ({', '.join(fleet.waves)}); {description}"
            )
            _waves(client, fleet, base, results, record, max_failures, reports, say)
    finally:
        record.finished_at = records.now_iso()
        record.seconds = round(time.perf_counter() - t0, 3)
        if folder is not None:
            folder.write(FLEET_FOLDER, record)
    html, md = report.write(record, folder.path, reports)
    site.refresh(reports)  # reports/index.html lists the fleet run
    return FleetOutcome(record, folder.path, html, md, reports)


def _waves(
    client: Client,
    fleet: Fleet,
    base: TargetTask,
    results: dict[str, TargetResult],
    record: FleetRecord,
    max_failures: int | None,
    reports: Path,
    say: Callable[[str], None],
) -> None:
    progress = _Progress(len(fleet.targets), say, stream=sys.stderr if say is _say else None)
    try:
        _run_waves(client, fleet, base, results, record, max_failures, reports, say, progress)
    finally:
        progress.close()


def _run_waves(
    client: Client,
    fleet: Fleet,
    base: TargetTask,
    results: dict[str, TargetResult],
    record: FleetRecord,
    max_failures: int | None,
    reports: Path,
    say: Callable[[str], None],
    progress: _Progress,
) -> None:
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

        def submit(
            queue: list[FleetTarget] = queue,
            running: dict[Any, FleetTarget] = running,
            pending: as_completed = pending,
        ) -> None:
            capacity = max(1, sum(client.nthreads().values()))
            while queue and len(running) < capacity and not record.stopped:
                target = queue.pop(0)
                task = replace(base, name=target.name, url_env=target.url_env)
                future = client.submit(
                    run_target, task, key=f"runbook-fleet-{record.fleet_run_id}-{target.name}", pure=False
                )
                running[future] = target
                pending.add(future)
                progress.running = len(running)
                progress.line(f"[{target.wave}] {target.name} started")

        submit()
        for future in pending:
            target = running.pop(future)
            result = results[target.name]
            try:
                _fill(result, future.result(), reports, base.batch)
            except Exception as exc:  # KilledWorker after Dask's retries, a lost scheduler
                result.status, result.message = (
                    FAILED,
                    f"the task did not finish: {type(exc).__name__}: {_first_line(exc)}",
                )
            result.attempts = _task_attempts(client, [future.key]).get(future.key, 1)
            future.release()
            if result.status in (SKIPPED, NOGO):
                progress.nogo += 1  # reported, not a failure: nothing was changed
            elif result.status not in OK_STATUSES[record.mode]:
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
        later = any(w.targets for w in plan[plan.index(wave) + 1 :])
        if wave_failures and later and not record.stopped and record.mode == RUN:
            record.stopped = f"not run: wave {wave.name!r} had {wave_failures} failed target(s)"
            say(f"fleet: wave {wave.name!r} had {wave_failures} failure(s): the later waves are not run")
        elif not wave_done and later and not record.stopped and record.mode == RUN:
            # Every target of the wave was skipped (NO-GO): the migration has not been tried anywhere yet.
            record.stopped = f"not run: no target of wave {wave.name!r} was applied (all NO-GO)"
            say(f"fleet: no target of wave {wave.name!r} was applied (NO-GO): the later waves are not run")


def _fill(result: TargetResult, done: TaskOutcome, reports: Path, number: int | Pending) -> None:
    """A task's outcome into its report line; a returned run folder is written under reports/."""
    for key in (
        "status",
        "verdict",
        "message",
        "database",
        "run_dir",
        "worker",
        "started_at",
        "finished_at",
        "seconds",
    ):
        setattr(result, key, getattr(done, key) or getattr(result, key))
    result.reasons = list(done.reasons) or result.reasons
    if done.archive and result.run_dir:
        archive.unpack(done.archive, reports / result.run_dir)
    if result.run_dir and (reports / result.run_dir / "summary.html").exists():
        result.summary = f"{result.run_dir}/summary.html"
    if result.status == ALREADY_APPLIED and not result.summary and number != PENDING:
        earlier = records.latest_run_with(reports, result.name, number, "apply")
        if earlier is not None and (earlier.path / "summary.html").exists():
            result.summary = earlier.path.relative_to(reports).as_posix() + "/summary.html"
    apply = done.records.get("apply")
    if apply:
        result.apply_status = apply.get("status", "")
        result.apply_attempts = int(apply.get("attempts") or 0)
        result.apply_seconds = apply.get("duration_s")
        result.longest_write_block_s = apply.get("longest_write_block_s")
    validate = done.records.get("validate")
    if validate:
        counted = records.tally(validate.get("tests") or [])
        assert counted is not None  # validate.json's tests are a list (tally is None only for a missing one)
        result.validation_passed, result.validation_total = counted
