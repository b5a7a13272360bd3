"""What a fleet is and what a fleet run records: the types every other fleet module shares.

Kept free of Dask, notebooks and TOML parsing so that the report (and a caller reading fleet.json)
can use them without starting anything; the parser, the worker task and the scheduler import this
module, never each other's internals.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runbook_lib.errors import FleetError
from runbook_lib.names import GO, NOGO, WARN

__all__ = [
    "ALREADY_APPLIED",
    "APPLIED",
    "DRY_RUN",
    "EVERYONE_ELSE",
    "FAILED",
    "FLEET_FOLDER",
    "GO",
    "NOGO",
    "NOT_RUN",
    "OK_STATUSES",
    "PREFLIGHT",
    "RUN",
    "SKIPPED",
    "WARN",
    "Fleet",
    "FleetOutcome",
    "FleetRecord",
    "FleetTarget",
    "TargetResult",
    "Wave",
]

FLEET_FOLDER = "fleet"  # reports/fleet/<batch>/<fleet-run-id>/: reserved, no target may take this name
EVERYONE_ELSE = "*"  # the wave of every target without a group

# A target's status in the fleet report. Upper case, unlike names.APPLIED etc. (an apply record's
# status): these are what fleet.json has always said. `fleet preflight` uses the verdict itself
# (names.GO, WARN, NOGO) as the status, or FAILED / ALREADY_APPLIED.
APPLIED = "APPLIED"
DRY_RUN = "DRY RUN"
ALREADY_APPLIED = "ALREADY APPLIED"
SKIPPED = "SKIPPED (NO-GO)"
FAILED = "FAILED"
NOT_RUN = "NOT RUN"

# The two kinds of fleet run.
RUN, PREFLIGHT = "run", "preflight"

# The statuses that count as success in each mode (anything else makes the fleet run not ok).
OK_STATUSES: Mapping[str, tuple[str, ...]] = {
    RUN: (APPLIED, DRY_RUN, ALREADY_APPLIED),
    PREFLIGHT: (GO, WARN, ALREADY_APPLIED),
}


# --- the fleet, as fleet.toml describes it --------------------------------------------------------


@dataclass(frozen=True)
class FleetTarget:
    """One database of the fleet: its name (the report folder) and the variable holding its URL."""

    name: str
    url_env: str
    group: str | None = None
    line: int = 0  # of its [[target]] header in fleet.toml, for messages

    @property
    def wave(self) -> str:
        return self.group or EVERYONE_ELSE


@dataclass(frozen=True)
class Wave:
    """Targets that may run at the same time; the next wave waits for this one."""

    name: str
    targets: tuple[FleetTarget, ...]


@dataclass(frozen=True)
class Fleet:
    """A validated fleet.toml: the targets in file order and the order of the waves."""

    path: Path
    targets: tuple[FleetTarget, ...]
    waves: tuple[str, ...] = (EVERYONE_ELSE,)

    def plan(self) -> list[Wave]:
        """The waves in order, each with its targets in file order ("*": every target without a group)."""
        return [Wave(w, tuple(t for t in self.targets if t.wave == w)) for w in self.waves]

    def missing_env(self, environ: Mapping[str, str] | None = None) -> list[FleetTarget]:
        env = os.environ if environ is None else environ
        return [t for t in self.targets if not env.get(t.url_env)]

    def require_env(self, environ: Mapping[str, str] | None = None, where: str = "") -> None:
        """Refuse (one sentence naming each variable, target and line) unless every URL variable is set."""
        missing = self.missing_env(environ)
        if not missing:
            return
        names = ", ".join(f"{t.url_env} (target {t.name!r}, line {t.line})" for t in missing)
        plural = "variables" if len(missing) > 1 else "variable"
        raise FleetError(
            f"{self.path}: the environment {plural} {names} {'are' if len(missing) > 1 else 'is'} "
            f"not set{where}; export each with its target's database URL."
        )


# --- what a fleet run records: fleet.json -------------------------------------------------------


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

    batch: int | str  # or "pending": a release
    fleet_run_id: str
    mode: str
    targets_file: str
    waves: list[str]
    engine: str  # the Dask cluster's description; the field keeps its name for fleet.json readers
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
        return all(t.status in OK_STATUSES[self.mode] for t in self.targets)


@dataclass
class FleetOutcome:
    """What `fleet run` / `fleet preflight` returns: the record and where its reports are."""

    record: FleetRecord
    folder: Path
    html: Path
    markdown: Path
    reports_dir: Path

    @property
    def ok(self) -> bool:
        return self.record.ok
