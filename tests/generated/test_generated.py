"""Validation generalises: random valid histories deploy from empty with no failing test, and defects are caught.

Each seed is a history of eight migrations (tests/generated/histories.py) that psycopg applies cleanly file by
file; runbook deploys it from empty and validates it in-process (tests/generated/history_run.py). A failing test on
that correct deploy is a false failure; then defects are injected by hand into objects that passing tests
vouched for (NOT NULL dropped, foreign key dropped, index or unique index dropped, extension dropped) and
`runbook validate N` must fail on each. `make test` runs a seeded few dozen on each server; `make
sweep-generated` runs several hundred and records the result in benchmarks/results/generated_histories.json.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from generated import history_run
from generated.histories import generate

SEEDS = range(
    int(os.environ.get("RUNBOOK_GENERATED_FROM", "1")),
    int(os.environ.get("RUNBOOK_GENERATED_FROM", "1")) + int(os.environ.get("RUNBOOK_GENERATED_SEEDS", "24")),
)


@pytest.fixture(scope="module")
def extensions(server_url: str) -> tuple[str, ...]:
    return history_run.available_extensions(server_url)


def test_the_generator_writes_what_postgresql_accepts(make_database, extensions) -> None:
    """The premise: every generated file applies, in order, in a transaction of its own (as psql -1 -f)."""
    for seed in SEEDS:
        history_run.psql_like_apply(make_database(), generate(seed, 8, extensions))


def test_the_generator_writes_the_patterns_that_broke_validation() -> None:
    """Across the seeds the histories hold what real ones do: several unique keys, a unique foreign key column,
    a column dropped under an index, a rename, CASCADE, a type dropped with its columns, rows."""
    text = "\n".join(sql for seed in SEEDS for _, sql in generate(seed, 8, ("citext", "vector")).migrations)
    for pattern in (
        "CREATE UNIQUE INDEX",
        "GENERATED ALWAYS AS IDENTITY",
        "GENERATED ALWAYS AS (",
        "CHECK (",
        "DROP COLUMN",
        "RENAME COLUMN",
        "ALTER INDEX",
        "DROP TABLE",
        " CASCADE;",
        "CREATE TYPE",
        "DROP EXTENSION",
        "INSERT INTO",
        "REFERENCES",
    ):
        assert pattern in text, pattern


@pytest.mark.parametrize("seed", SEEDS)
def test_a_generated_history_deploys_with_no_false_failure_and_defects_are_caught(
    seed: int, make_database, extensions, tmp_path: Path
) -> None:
    outcome = history_run.run(make_database(), seed, tmp_path, extensions=extensions)
    assert outcome.ok, outcome.describe()
    assert outcome.ran > 0
