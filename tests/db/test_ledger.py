"""The ledger's reading for a release: which batches have an apply or rollback that did not end."""

from __future__ import annotations

import psycopg

from runbook_lib.db import ledger


def _row(url: str, batch: int, phase: str, status: str | None) -> None:
    """A ledger row as a run leaves it: finished with `status`, or still 'running' (None: a killed process)."""
    writer = ledger.LedgerWriter(url, run_id=f"t{batch}{phase}", batch=batch, batch_name=f"b{batch}", phase=phase)
    if status is not None:
        writer.finish(status)
    writer._close()


def test_unsettled_names_the_batches_with_a_run_that_did_not_end(empty_db: str) -> None:
    with psycopg.connect(empty_db) as conn:
        assert ledger.unsettled(conn, [1, 2]) == set()  # no ledger yet: nothing to settle, and nothing created
        assert not ledger.exists(conn)
    _row(empty_db, 1, "apply", ledger.SUCCEEDED)
    _row(empty_db, 2, "apply", None)  # killed mid-apply: still 'running'
    _row(empty_db, 3, "apply", ledger.FAILED)
    _row(empty_db, 4, "rollback", ledger.PAUSED)
    _row(empty_db, 5, "validate", ledger.FAILED)  # not an apply or a rollback: nothing to resume
    _row(empty_db, 6, "apply", ledger.SUCCEEDED)
    with psycopg.connect(empty_db) as conn:
        assert ledger.unsettled(conn, [1, 2, 3, 4, 5, 6, 7]) == {2, 3, 4}
        assert ledger.unsettled(conn, [1, 5, 6]) == set()
        # each batch it leaves out is one close_interrupted and stopped have nothing to do for
        for batch in (1, 5, 6, 7):
            assert ledger.close_interrupted(conn, batch) == 0 and ledger.stopped(conn, batch) is None
        assert ledger.close_interrupted(conn, 2) == 1
