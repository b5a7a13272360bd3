"""Exactly once, whatever is killed when (issue 16): a non-idempotent migration, its applying process
SIGKILLed at each named point and at seeded random moments, then applied again, has changed the data
once, and the ledger, `_prisma_migrations` and the locks say so.

The harness is benchmarks/kill_sweep.py; `python benchmarks/kill_sweep.py --points 60` is the long sweep.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runbook_lib import config

BENCH = str(config.project_root() / "benchmarks")
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)

import kill_sweep  # noqa: E402  (benchmarks/ is not a package: on sys.path just above)


@pytest.mark.parametrize("point", kill_sweep.named_points(), ids=lambda p: p.name)
def test_killed_at_a_named_point_the_migration_still_happens_exactly_once(
        point: kill_sweep.Point, make_database: Callable[..., str], tmp_path: Path) -> None:
    outcome = kill_sweep.kill_at(make_database(), tmp_path, point)
    assert outcome.killed, f"{point.name}: the child finished before the kill, the point was never reached"
    assert (outcome.counter, outcome.log_rows) == (1, 1), outcome
    assert outcome.applied and outcome.prisma_finished == 1 and outcome.prisma_failed == 0, outcome
    assert outcome.advisory_locks == 0 and outcome.running_rows == 0, outcome
    assert outcome.extra == [], outcome


def test_killed_at_random_moments_the_migration_still_happens_exactly_once(
        make_database: Callable[..., str], tmp_path: Path) -> None:
    span = kill_sweep.baseline_s(make_database, tmp_path / "baseline", "direct")
    for n, point in enumerate(kill_sweep.random_points(3, span, seed=16)):
        outcome = kill_sweep.kill_at(make_database(), tmp_path / str(n), point)
        assert outcome.exactly_once, outcome


def test_a_kill_after_the_last_commit_leaves_the_batch_applied_not_running(
        make_database: Callable[..., str], tmp_path: Path) -> None:
    """Before the rerun: the killed run's own commit already says 'succeeded', with Prisma's finished row."""
    import psycopg  # here: only this test reads the database before the rerun

    from runbook_lib.db import ledger

    url = make_database()
    point = kill_sweep.Point("direct", "after_commit", step=1)
    migrations = kill_sweep.prepare(url, tmp_path, "direct")
    kill_sweep.kill_child(url, migrations, tmp_path / "r", point)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT status, steps_done, steps_total FROM runbook.phase_run").fetchall() == [
            ("succeeded", 1, 1)]
        assert ledger.state(conn, 1).applied
        assert conn.execute("SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL").fetchone()[0] == 1
