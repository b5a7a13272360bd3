"""Helpers of the derived-test modules: a schema created as a migration tool would, its derived tests run."""

from __future__ import annotations

import psycopg

from runbook_lib.batch import blocks, derived
from runbook_lib.batch.blocks import BlockResult
from runbook_lib.sql import parse as sql_parse


def execute(url: str, text: str) -> None:
    """Each statement on its own in autocommit, as a migration tool would (CONCURRENTLY included)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in sql_parse.split(text):
            conn.execute(statement.text)


def run_derived(url: str, text: str) -> tuple[dict[str, BlockResult], list[str]]:
    """Derive the tests of `text` and run them, all in one transaction that is rolled back: results by name
    (without the '(derived: ...)' suffix), and the notes."""
    with psycopg.connect(url) as conn, conn.transaction(force_rollback=True):
        derivation = derived.derive(conn, text)
        results = [blocks.run(conn, block) for block in derivation.blocks]
    names = [r.name for r in results]
    assert len(names) == len(set(names)), "two derived tests with the same name"
    return {r.name.split(" (derived:")[0]: r for r in results}, derivation.notes


def unproven(result: BlockResult) -> bool:
    """Not passed: failed, or not run."""
    return not result.passed
