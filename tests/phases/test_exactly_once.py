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
    point: kill_sweep.Point, make_database: Callable[..., str], tmp_path: Path
) -> None:
    outcome = kill_sweep.kill_at(make_database(), tmp_path, point)
    assert outcome.killed, f"{point.name}: the child finished before the kill, the point was never reached"
    assert (outcome.counter, outcome.log_rows) == (1, 1), outcome
    assert outcome.applied and outcome.prisma_finished == 1 and outcome.prisma_failed == 0, outcome
    assert outcome.advisory_locks == 0 and outcome.running_rows == 0, outcome
    assert outcome.extra == [], outcome


OWNER_POINTS = [
    kill_sweep.Point("direct", "before_commit", step=1),
    kill_sweep.Point("direct", "terminate"),
    kill_sweep.Point("online", "after_commit", step=3),
    kill_sweep.Point("concurrent", "before_commit", step=1),
]


@pytest.mark.parametrize("point", OWNER_POINTS, ids=lambda p: p.name)
def test_as_the_owner_role_a_kill_still_leaves_the_migration_done_exactly_once(
    point: kill_sweep.Point, owned, tmp_path: Path
) -> None:
    """No superuser: the database's owner applies, is killed, and applies again (its own ledger, its own locks)."""
    roles = owned(load=False)
    outcome = kill_sweep.kill_at(roles.owner, tmp_path, point)
    assert outcome.killed and outcome.exactly_once, outcome


def test_killed_at_random_moments_the_migration_still_happens_exactly_once(
    make_database: Callable[..., str], tmp_path: Path
) -> None:
    span = kill_sweep.baseline_s(make_database, tmp_path / "baseline", "direct")
    for n, point in enumerate(kill_sweep.random_points(3, span, seed=16)):
        outcome = kill_sweep.kill_at(make_database(), tmp_path / str(n), point)
        assert outcome.exactly_once, outcome


def test_a_kill_after_the_last_commit_leaves_the_batch_applied_not_running(
    make_database: Callable[..., str], tmp_path: Path
) -> None:
    """Before the rerun: the killed run's own commit already says 'succeeded', with Prisma's finished row."""
    import psycopg  # here: only this test reads the database before the rerun

    from runbook_lib.db import ledger

    url = make_database()
    point = kill_sweep.Point("direct", "after_commit", step=1)
    migrations = kill_sweep.prepare(url, tmp_path, "direct")
    kill_sweep.kill_child(url, migrations, tmp_path / "r", point)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT status, steps_done, steps_total FROM runbook.phase_run").fetchall() == [
            ("succeeded", 1, 1)
        ]
        assert ledger.state(conn, 1).applied
        assert conn.execute("SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL").fetchone()[0] == 1


def test_a_ledger_killed_half_created_does_not_stop_the_next_apply(
    make_database: Callable[..., str], tmp_path: Path
) -> None:
    """Found by the sweep: killed between the ledger's CREATE TABLE and its later ADD COLUMNs (then two
    transactions, now one), the table lacked steps_done and every later apply failed reading it."""
    import psycopg  # here: only this test writes the ledger by hand

    from runbook_lib.db import ledger
    from runbook_lib.execution.session import open_session
    from runbook_lib.phases import apply

    url = make_database()
    migrations = kill_sweep.prepare(url, tmp_path, "direct")
    with psycopg.connect(url) as conn:
        conn.execute("CREATE SCHEMA runbook")
        conn.execute(ledger._sql(ledger._DDL))  # the first release's columns only: what the kill left
    result = apply.run(open_session(1, database_url=url, migrations_dir=migrations, reports_dir=tmp_path / "r"))
    assert result.status == "applied"
    assert kill_sweep.observe(url, kill_sweep.Point("direct", "none"), killed=False).exactly_once


@pytest.mark.parametrize("point", kill_sweep.release_points(), ids=lambda p: p.name)
def test_a_release_killed_at_a_named_point_applies_each_migration_exactly_once(
    point: kill_sweep.Point, make_database: Callable[..., str], tmp_path: Path
) -> None:
    """Three non-idempotent migrations applied as a release (`open_session("pending")`), the child killed
    between or inside them; a new release (a new run folder) finishes it: counter 3, log rows 1, 2, 3."""
    outcome = kill_sweep.kill_at(make_database(), tmp_path, point)
    assert outcome.killed, f"{point.name}: the child finished before the kill, the point was never reached"
    assert (outcome.counter, outcome.log_rows, outcome.prisma_finished) == (3, 3, 3), outcome
    assert outcome.applied and outcome.prisma_failed == 0, outcome
    assert outcome.advisory_locks == 0 and outcome.running_rows == 0, outcome
    assert outcome.extra == [], outcome


def test_a_release_killed_at_random_moments_applies_each_migration_exactly_once(
    make_database: Callable[..., str], tmp_path: Path
) -> None:
    span = kill_sweep.baseline_s(make_database, tmp_path / "baseline", kill_sweep.RELEASE)
    for n, point in enumerate(kill_sweep.random_points(3, span, seed=16, scenarios=(kill_sweep.RELEASE,))):
        outcome = kill_sweep.kill_at(make_database(), tmp_path / str(n), point)
        assert outcome.exactly_once, outcome


def test_the_server_restarted_at_random_moments_the_migration_still_happens_exactly_once(tmp_path: Path) -> None:
    """The apply on a server of its own, stopped by another thread at a seeded moment and started again;
    the next apply finishes it, once. A couple of points here; the sweep runs more (--restart-points)."""
    outcomes: list[kill_sweep.Outcome] = []

    def record(point: kill_sweep.Point, measure: Callable[[], kill_sweep.Outcome]) -> None:
        outcomes.append(measure())

    kill_sweep.restart_sweep(tmp_path, 2, seed=16, record=record)
    assert len(outcomes) == 2
    assert all(o.exactly_once for o in outcomes), outcomes
