"""Batched backfills (issue 19): data statements run by keyset in short transactions under --strategy online,
each committing its position with it; resumable after a SIGKILL, the same end state as one transaction."""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import random
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from runbook_lib import cli, commands, config
from runbook_lib.config import Options
from runbook_lib.db import connection as database
from runbook_lib.db import example, migration_lock
from runbook_lib.errors import MigrationFailed, NotApplied, RunbookError
from runbook_lib.execution import backfill, live, replica, upkeep
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, preflight, rollback
from runbook_lib.report import summary, terminal
from runbook_lib.sql import analysis, batching, plan

BATCH_6 = config.example_migrations_dir() / "006_backfill_customers"


def _batch(root: Path, sql: str, number: int = 1) -> Path:
    folder = root / "migrations" / f"{number:03d}_backfill"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "migration.sql").write_text(sql)
    return root / "migrations"


def _apply(url: str, migrations: Path, reports: Path, number: int = 1, **options):
    return apply.run(open_session(number, database_url=url, migrations_dir=migrations, reports_dir=reports), **options)


def _items(url: str, rows: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO item (id) SELECT g FROM generate_series(1, %s) g", (rows,))


def _counts(url: str) -> dict[int, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT n, count(*) FROM item GROUP BY n").fetchall())


# --- which statements are batched, and preflight's reasons ----------------------------------------

SHAPES = """\
UPDATE item SET n = n + 1 WHERE n >= 0;
DELETE FROM item WHERE n < 0;
INSERT INTO copy (id, n) SELECT id, n FROM item WHERE n > 100;
UPDATE item SET n = 1;
UPDATE nokey SET n = 1 WHERE n = 0;
UPDATE item SET n = (SELECT max(n) FROM item) WHERE n = 0;
INSERT INTO copy (id, n) VALUES (1, 1);
INSERT INTO copy (id, n) SELECT DISTINCT id, n FROM item;
INSERT INTO copy (id, n) SELECT i.id, i.n FROM item i JOIN nokey k ON k.n = i.n;
UPDATE item SET n = 2 WHERE n = 1 RETURNING id;
WITH x AS (SELECT 1) UPDATE item SET n = 3 WHERE n = 2;
BEGIN;
UPDATE item SET n = 4 WHERE n = 3;
COMMIT;
"""


def test_preflight_says_which_data_statements_are_batched_and_why_not(empty_db: str, tmp_path: Path) -> None:
    with psycopg.connect(empty_db) as conn:
        conn.execute(
            "CREATE TABLE item (id int PRIMARY KEY, n int); CREATE TABLE copy (id int PRIMARY KEY, n int);"
            " CREATE TABLE nokey (n int)"
        )
    result = preflight.evaluate(
        open_session(1, database_url=empty_db, migrations_dir=_batch(tmp_path, SHAPES), reports_dir=tmp_path / "r"),
        lint=False,
    )
    said = {c.statement_index: (c.batched, c.reason) for c in result.backfills}
    assert said[1] == (True, "in batches by keyset on item (id) with --strategy online")
    assert said[2][0] and said[3] == (True, "in batches by keyset on item (id) with --strategy online")
    refused = {i: reason for i, (batched, reason) in said.items() if not batched}
    assert "without WHERE" in refused[4]
    assert refused[5] == "nokey has no primary key: there is no key to walk in batches"
    assert "reads item, the table it changes" in refused[6]
    assert "VALUES" in refused[7] and "DISTINCT" in refused[8] and "exactly one table" in refused[9]
    assert "RETURNING" in refused[10] and "WITH" in refused[11]
    assert "BEGIN … COMMIT" in refused[13]
    assert set(said) == {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13}
    assert "batched" in result.backfills_frame().columns


def test_batches_walk_the_primary_key_in_ranges_never_offset(empty_db: str) -> None:
    [stmt] = analysis.analyze("UPDATE item AS i SET n = n + 1 WHERE i.n >= 0")
    [step] = plan.build([stmt], "online")
    key = batching.Key("item", ("id",), ("integer",))
    text = batching.batch_sql(step.backfill, key)
    bounds, params = batching.bounds_sql(key, after=True, limit=100)
    assert (
        text == "UPDATE item AS i SET n = n + 1 WHERE i.n >= 0"
        " AND (i.id >= CAST($1 AS integer) AND i.id <= CAST($2 AS integer))"
    )
    assert "OFFSET" not in (text + bounds).upper() and "LIMIT 100" in bounds and params == 1
    _items(empty_db, 3000)
    with psycopg.connect(empty_db) as conn:
        conn.execute("ANALYZE item")
        plan_text = "\n".join(r[0] for r in conn.execute("EXPLAIN " + bounds, ("1500",)))
        assert "Index Only Scan using item_pkey" in plan_text or "Index Scan using item_pkey" in plan_text, plan_text
        assert conn.execute(bounds, ("2990",)).fetchone() == (["2991"], ["3000"], 10)
    [shaped] = plan.build(analysis.analyze("CREATE TABLE t (id int); UPDATE item SET n = 1 WHERE n = 0"), "direct")
    assert shaped.backfill is None  # direct: one transaction, as written


def test_batch_size_adapts_toward_the_target_time(empty_db: str, tmp_path: Path) -> None:
    _items(empty_db, 1200)
    # about half a millisecond per row: the first 500 keys take a quarter of a second, the target is 20 ms
    sql = "UPDATE item SET n = n + 1 + (SELECT 0 FROM pg_sleep(0.0005 + 0 * item.id)) WHERE n >= 0;\n"
    with live.to_file(tmp_path / "live.jsonl") as path:
        result = _apply(empty_db, _batch(tmp_path, sql), tmp_path / "r", strategy="online", backfill_batch_ms=20)
        events = [e for e in live.Tail(path).read() if e.kind == live.BACKFILL]
    assert events and events[-1].final and events[-1].done == 1200 and events[-1].unit == "rows"
    assert any("rows/s" in e.text and "left" in e.text for e in events[:-1]), [e.text for e in events]
    [run] = result.backfills
    assert run.status == "completed" and run.rows == 1200 and run.keys_scanned == 1200
    assert run.batch_size_first == backfill.FIRST_SIZE and backfill.MIN_SIZE <= run.batch_size_last <= 100, run
    assert run.batches >= 5 and run.batch_median_s < run.batch_longest_s
    assert _counts(empty_db) == {1: 1200}
    assert backfill.next_size(1000, 0.010, 0.050) == 2000 and backfill.next_size(1000, 0.200, 0.050) == 500
    assert backfill.next_size(1000, 0.100, 0.050) == 500 and backfill.next_size(100, 0.040, 0.050) == 125


def test_options_refuse_a_batch_target_of_zero() -> None:
    with pytest.raises(RunbookError, match="backfill_batch_ms must be at least 1"):
        Options(backfill_batch_ms=0).checked()


# --- batch 6: the same end state, rollback from a stop midway -------------------------------------

END_STATE = (
    'SELECT (SELECT array_agg((id, name, email, phone)::text ORDER BY id) FROM "Customer"),'
    ' (SELECT array_agg((id, customer_id)::text ORDER BY id) FROM "Lead"),'
    ' (SELECT array_agg((id, customer_id)::text ORDER BY id) FROM "Job")'
)
EVERYTHING = (
    'SELECT (SELECT array_agg(c::text ORDER BY id) FROM "Customer" c), (SELECT array_agg(l::text ORDER BY id)'
    ' FROM "Lead" l), (SELECT array_agg(j::text ORDER BY id) FROM "Job" j)'
)


def _one(url: str, query: str):
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchone()


def test_batch_6_in_batches_ends_as_the_one_transaction_apply(
    make_database: Callable[..., str], crm_template: str, tmp_path: Path
) -> None:
    direct_url, online_url = make_database(crm_template), make_database(crm_template)
    migrations = config.example_migrations_dir()
    direct = _apply(direct_url, migrations, tmp_path / "d", 6)
    online = _apply(online_url, migrations, tmp_path / "o", 6, strategy="online", backfill_batch_ms=1)
    assert direct.status == online.status == "applied"
    assert _one(online_url, END_STATE) == _one(direct_url, END_STATE)
    assert _one(online_url, 'SELECT count(*) FROM "Lead" WHERE customer_id IS NULL')[0] == 0
    # the record: every data statement batched, rows per batch and batch times, row locks counted
    assert [b.kind for b in online.backfills] == [
        "INSERT … SELECT",
        "INSERT … SELECT",
        "INSERT … SELECT",
        "UPDATE",
        "UPDATE",
    ]
    lead = online.backfills[3]
    assert lead.table == "Lead" and lead.key == "id" and lead.rows == 100 and lead.batches > 1
    assert 0 < lead.rows_per_batch_median <= lead.rows_per_batch_max < 100
    assert 0 < lead.batch_median_s <= lead.batch_longest_s and lead.row_lock_longest_s > 0
    assert online.longest_write_block_s >= lead.row_lock_longest_s
    held = {h.relation: h for h in direct.locks_before_commit if h.mode == backfill.ROW_LOCKS}
    assert (
        held["Lead"].rows == 100 and held["Lead"].blocks_writes and direct.longest_write_block_s >= held["Lead"].held_s
    )
    text = summary.load(next((tmp_path / "o").rglob("apply.json")).parent).markdown
    assert "Batched data statements" in text and "rows per batch" in text and "longest batch" in text
    # the backup table step 1 created and step 2 filled had no statistics when step 3 planned; "Customer" had
    # its rows of step 4 to be analyzed for when step 5 planned (no dead row versions: the application's plans
    # get what autovacuum's ANALYZE was about to give them)
    analyzed = {b.statement_index: b.analyzed for b in online.backfills if b.analyzed}
    assert list(analyzed.values()) == [
        "_runbook_backfill_006 (never analyzed)",
        "Customer (90 changes since its last ANALYZE; autovacuum analyzes it at 75)",
    ]
    for index, what in analyzed.items():
        assert f"Statement {index}: analyzed first, so that each batch is planned for its rows: {what}." in text


def _terminate_in(url: str, step: int, batch: int) -> Callable[[int, int], None]:
    """A hook that ends the apply's own backend before the COMMIT of `batch` of `step`: a stop midway."""

    def hook(s: int, b: int) -> None:
        if (s, b) == (step, batch):
            with psycopg.connect(url, autocommit=True) as other:
                other.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name LIKE 'runbook apply%%' AND datname = current_database()"
                )

    return hook


def test_rollback_sql_restores_batch_6_from_a_backfill_stopped_midway(
    crm_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _one(crm_url, EVERYTHING)
    monkeypatch.setattr(backfill, "BEFORE_BATCH_COMMIT_HOOKS", [_terminate_in(crm_url, 5, 3)])
    with pytest.raises(MigrationFailed, match="committed batch"):
        _apply(crm_url, config.example_migrations_dir(), tmp_path / "r", 6, strategy="online", backfill_batch_ms=1)
    linked = _one(crm_url, 'SELECT count(*) FROM "Lead" WHERE customer_id IS NULL')[0]
    assert 0 < linked < 100  # midway through the leads
    with database.connect(crm_url) as conn:
        for stmt in analysis.analyze((BATCH_6 / "rollback.sql").read_text()):
            conn.execute(stmt.sql)
        conn.commit()
    assert _one(crm_url, EVERYTHING) == before


def test_runbook_rolls_back_a_backfill_stopped_midway_and_the_next_apply_starts_over(
    make_database: Callable[..., str], crm_template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, direct_url = make_database(crm_template), make_database(crm_template)
    migrations = config.example_migrations_dir()
    before = _one(url, EVERYTHING)
    monkeypatch.setattr(backfill, "BEFORE_BATCH_COMMIT_HOOKS", [_terminate_in(url, 5, 3)])
    with pytest.raises(MigrationFailed, match="committed batch"):
        _apply(url, migrations, tmp_path / "a", 6, strategy="online", backfill_batch_ms=1)
    monkeypatch.setattr(backfill, "BEFORE_BATCH_COMMIT_HOOKS", [])
    assert 0 < _one(url, 'SELECT count(*) FROM "Lead" WHERE customer_id IS NULL')[0] < 100
    [row] = [r for r in commands.status(commands.target(url), migrations) if r.number == 6]
    assert not row.applied and row.part_applied.startswith("its apply stopped after step 4 of ")
    assert row.part_applied.endswith(
        "rows of step 5's backfill committed in 2 batches: `runbook apply 6 --strategy "
        "online` resumes it, `runbook rollback 6` undoes it"
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["status", "--database-url", url, "--migrations-dir", str(migrations)]) == 0
    assert re.search(
        r"^\s+6\s+006_backfill_customers\s+PART APPLIED: its apply stopped after step 4 of ", out.getvalue(), re.M
    )
    # not applied, yet not untouched: rollback undoes what the stopped apply committed, and says so
    undone = rollback.run(open_session(6, database_url=url, migrations_dir=migrations, reports_dir=tmp_path / "b"))
    assert undone.status == "rolled back" and _one(url, EVERYTHING) == before
    assert (
        "stopped after step 4 of " in undone.partly_applied
        and "of step 5's backfill committed" in undone.partly_applied
    )
    lines = terminal.execution_lines(undone)
    assert f"  undoing a partly applied batch: {undone.partly_applied}" in lines
    assert '    _runbook_backfill_006: removed table "_runbook_backfill_006"' in lines  # the backup step 1 made
    # the next apply starts over (resuming after the stopped run's position would skip the leads before it)
    again = _apply(url, migrations, tmp_path / "c", 6, strategy="online", backfill_batch_ms=1)
    assert again.status == "applied" and "resum" not in again.message
    _apply(direct_url, migrations, tmp_path / "d", 6)
    assert _one(url, END_STATE) == _one(direct_url, END_STATE)
    # and a batch that was never applied at all is still refused, the database untouched
    again_undone = rollback.run(
        open_session(6, database_url=url, migrations_dir=migrations, reports_dir=tmp_path / "e")
    )
    assert again_undone.status == "rolled back" and _one(url, EVERYTHING) == before
    with pytest.raises(NotApplied, match="Batch 6 is not applied"):
        rollback.run(open_session(6, database_url=url, migrations_dir=migrations, reports_dir=tmp_path / "f"))
    assert _one(url, EVERYTHING) == before


# --- exactly once: SIGKILL midway, then resume ------------------------------------------------------


def _child(url: str, migrations: Path, reports: Path, kill_at: int, tell) -> None:
    def pause(step: int, batch: int) -> None:
        if batch == kill_at:
            tell.send("pause")
            time.sleep(60)

    backfill.BEFORE_BATCH_COMMIT_HOOKS.append(pause)
    _apply(url, migrations, reports, strategy="online", backfill_batch_ms=1, lock_timeout_ms=1000)
    tell.send("done")


def _part_applied(url: str, migrations: Path) -> str:
    [row] = commands.status(commands.target(url), migrations)
    return row.part_applied


def test_a_backfill_sigkilled_midway_resumes_with_no_row_twice_or_skipped(empty_db: str, tmp_path: Path) -> None:
    _items(empty_db, 3000)
    migrations = _batch(tmp_path, "UPDATE item SET n = n + 1 WHERE n >= 0;\nINSERT INTO item VALUES (0, 0);\n")
    ctx = multiprocessing.get_context("fork")
    for run, kill_at in enumerate((4, 9)):  # killed holding batch 4 uncommitted; then, resumed, at its batch 9
        parent, child_end = ctx.Pipe()
        child = ctx.Process(target=_child, args=(empty_db, migrations, tmp_path / f"k{run}", kill_at, child_end))
        child.start()
        assert parent.poll(60) and parent.recv() == "pause"
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        half = _counts(empty_db)
        assert set(half) == {0, 1} and 0 < half[1] < 3000, half  # the committed batches only
        # status says so while no runbook holds the migration lock: a row left 'running' is then a dead apply
        said = _part_applied(empty_db, migrations)
        assert said.startswith(
            f"its apply stopped after 0 of 2 steps, with {half[1]:,} rows of step 1's backfill committed in "
        ) and said.endswith(" batches: `runbook apply 1 --strategy online` resumes it, `runbook rollback 1` undoes it")
        with psycopg.connect(empty_db, autocommit=True) as holder:  # an apply at work: it may be this one
            holder.execute("SELECT pg_advisory_lock(%s)", (migration_lock.ADVISORY_KEY,))
            assert _part_applied(empty_db, migrations) == ""
            # nor is the killed apply's row the one at work: it began before the lock's holder connected
            [row] = commands.status(commands.target(empty_db), migrations)
            assert row.in_progress == ""
    result = _apply(empty_db, migrations, tmp_path / "r", strategy="online", lock_timeout_ms=1000)
    assert result.status == "applied" and "resumes after key" in result.message
    assert result.resumed.startswith("an earlier apply (run ") and "of step 1's backfill committed" in result.resumed
    assert _counts(empty_db) == {1: 3000, 0: 1}  # every row once (the INSERT's row is new, n = 0)
    [run] = result.backfills
    assert run.rows_before == half[1] and run.rows + run.rows_before == 3000


# --- each batch planned for its few rows ----------------------------------------------------------

JOIN_LOOKUP = "UPDATE item SET n = l.v FROM lookup AS l WHERE l.id = item.id % 2000 + 1;\n"


def _scans(url: str, table: str) -> tuple[int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT coalesce(seq_scan, 0), coalesce(idx_scan, 0) FROM pg_stat_user_tables"
            " WHERE relid = to_regclass(%s)",
            (table,),
        ).fetchone()
        return (row[0], row[1]) if row else (0, 0)


def test_batches_reach_a_joined_table_through_its_index_after_analyzing_it(empty_db: str, tmp_path: Path) -> None:
    """A table just filled (a backup an earlier step wrote) has no statistics, and a small one is cheapest to
    hash whole: either way each batch would scan all of it, its rows locked meanwhile. runbook analyzes it
    first (and records that), and each batch probes its index instead."""
    _items(empty_db, 20_000)  # some 60 batches of 2 ms here: enough that a pass per batch would show
    with psycopg.connect(empty_db) as conn:
        conn.execute("CREATE TABLE lookup (id int PRIMARY KEY, v int NOT NULL)")
        conn.execute("INSERT INTO lookup (id, v) SELECT g, g * 10 FROM generate_series(1, 2000) AS g")
    seq_before, index_before = _scans(empty_db, "lookup")
    result = _apply(empty_db, _batch(tmp_path, JOIN_LOOKUP), tmp_path / "r", strategy="online", backfill_batch_ms=2)
    [run] = result.backfills
    assert run.batches >= 20 and "lookup (never analyzed)" in run.analyzed.split("; ")
    seq_after, index_after = _scans(empty_db, "lookup")
    # one index probe per item row, not a pass over the whole table per batch (runbook's own reads of a table
    # a step touches account for the couple of scans there are)
    assert seq_after - seq_before < run.batches / 4 and index_after - index_before >= 20_000
    with psycopg.connect(empty_db) as conn:
        assert conn.execute(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relid = 'lookup'::regclass"
        ).fetchone()[0]
        assert conn.execute("SELECT count(*) FROM item WHERE n <> (id % 2000 + 1) * 10").fetchone()[0] == 0


def test_fresh_statistics_analyzes_tables_never_analyzed_or_grown_but_not_ones_full_of_dead_rows(empty_db: str) -> None:
    _items(empty_db, 1000)
    with database.connect(empty_db) as conn:
        conn.execute("ANALYZE item")
        conn.execute("UPDATE item SET n = n + 1")  # every row changed since, each leaving a dead version: kept
        conn.execute("CREATE TABLE fresh (id int PRIMARY KEY)")
        conn.execute("INSERT INTO fresh SELECT generate_series(1, 50)")
        conn.execute("CREATE TABLE empty (id int PRIMARY KEY)")
        # a backup table analyzed when it held only leads, then given jobs (as batch 6's steps 2 and 3 do)
        conn.execute("CREATE TABLE backup (kind text, row_id int, PRIMARY KEY (kind, row_id))")
        conn.execute("INSERT INTO backup SELECT 'lead', g FROM generate_series(1, 1000) AS g")
        upkeep.count_own_changes(conn)  # counted now: the ANALYZE below then resets them
        conn.execute("ANALYZE backup")
        conn.execute("INSERT INTO backup SELECT 'job', g FROM generate_series(1, 500) AS g")
        conn.execute("CREATE TABLE settled (id int PRIMARY KEY)")  # a few changes since its ANALYZE: kept
        conn.execute("INSERT INTO settled SELECT generate_series(1, 1000)")
        upkeep.count_own_changes(conn)  # counted now: the ANALYZE below then resets them
        conn.execute("ANALYZE settled")
        conn.execute("INSERT INTO settled SELECT generate_series(1001, 1100)")
        conn.commit()
        assert upkeep.fresh_statistics(conn, ["item", "fresh", "empty", "missing", "backup", "settled"]) == [
            "fresh (never analyzed)",
            "backup (500 changes since its last ANALYZE; autovacuum analyzes it at 150)",
        ]
        # new statistics would replan the application's queries on item's dead index entries: it keeps its own
        assert (
            conn.execute(
                "SELECT s.n_mod_since_analyze FROM pg_stat_user_tables AS s WHERE relid = 'item'::regclass"
            ).fetchone()[0]
            == 1000
        )
        # the planner now knows the backup holds jobs (what drove PG15 to walk them all per job)
        assert conn.execute(
            "SELECT most_common_vals::text::text[] FROM pg_stats WHERE tablename = 'backup' AND attname = 'kind'"
        ).fetchone()[0] == ["lead", "job"]
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL"
                " AND relname IN ('fresh', 'backup')"
            ).fetchone()[0]
            == 2
        )


# --- after the last batch: dead index entries gone before new statistics replan ---------------------

LEADS = """
CREATE TABLE lead (id int PRIMARY KEY, customer int);
INSERT INTO lead SELECT g, CASE WHEN g % 4 <> 0 THEN g END FROM generate_series(1, 8000) AS g;
CREATE INDEX lead_customer ON lead (customer);
"""


def _leads(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(LEADS)
    with psycopg.connect(url, autocommit=True) as conn:  # after the inserts were counted (at that session's end)
        conn.execute("VACUUM (ANALYZE) lead")  # statistics: a quarter of the leads without a customer


def _null_range_buffers(url: str) -> int:
    """Buffers an index scan for `customer IS NULL` touches: the page or two of an empty range, or every
    dead entry a backfill left there and the heap pages they point to."""
    with psycopg.connect(url) as conn:
        conn.execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        [[[explained]]] = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT id FROM lead WHERE customer IS NULL"
        )
        node = explained["Plan"]
        assert node["Index Name"] == "lead_customer" and node["Actual Rows"] == 0, node
        return node["Shared Hit Blocks"] + node["Shared Read Blocks"]


def test_a_backfill_that_makes_its_table_due_for_analyze_vacuums_it_first(empty_db: str, tmp_path: Path) -> None:
    """2,000 of 8,000 leads updated: autovacuum analyzes a table at 50 + 10% of its rows changed, and the new
    statistics (no NULL customer left) send `customer IS NULL` to an index whose 2,000 NULL entries are dead
    row versions. runbook vacuums first: the index holds none of them when the new plans arrive."""
    _leads(empty_db)
    result = _apply(
        empty_db,
        _batch(tmp_path, "UPDATE lead SET customer = -id WHERE customer IS NULL;\n"),
        tmp_path / "r",
        strategy="online",
        backfill_batch_ms=2,
    )
    [run] = result.backfills
    assert run.rows == 2000 and run.batches > 1 and run.vacuum_s > 0
    assert run.vacuumed.startswith("vacuumed and analyzed lead in "), run.vacuumed
    assert "analyzes it at 850 changes, it has 2,000; this statement left 2,000 dead row versions" in run.vacuumed
    assert (
        "vacuum_cost_delay 2ms, vacuum_cost_limit 200" in run.vacuumed
    )  # autovacuum's throttle, not a manual VACUUM's
    assert _null_range_buffers(empty_db) <= 3
    with psycopg.connect(empty_db) as conn:
        assert (
            conn.execute("SELECT null_frac FROM pg_stats WHERE tablename = 'lead' AND attname = 'customer'").fetchone()[
                0
            ]
            == 0
        )  # analyzed after the vacuum: the statistics the new plans use
    text = summary.load(next((tmp_path / "r").rglob("apply.json")).parent).markdown
    assert f"Statement 1, after its last batch: {run.vacuumed}." in text
    assert any(
        line.strip().startswith("then vacuumed and analyzed lead in ") for line in terminal.execution_lines(result)
    )


@pytest.mark.parametrize(
    ("others", "through", "vacuumed"),
    [
        (0, 3000, False),  # 750 rows: under autovacuum's 850
        (200, 2800, True),  # 700 rows, and the application's 200 make it due (at 5M leads, batch 6 alone was 50 short)
        (2000, 1200, False),  # due, but by the application's changes: 300 rows are autovacuum's business
    ],
)
def test_whether_a_backfill_vacuums_follows_autovacuums_rule_for_its_own_changes(
    empty_db: str, tmp_path: Path, others: int, through: int, vacuumed: bool
) -> None:
    _leads(empty_db)
    with psycopg.connect(empty_db) as conn:
        conn.execute("UPDATE lead SET customer = customer WHERE customer IS NOT NULL AND id <= %s", (others * 4 // 3,))
    sql = f"UPDATE lead SET customer = -id WHERE customer IS NULL AND id <= {through};\n"
    [run] = _apply(empty_db, _batch(tmp_path, sql), tmp_path / "r", strategy="online").backfills
    assert run.rows == through // 4
    assert run.vacuumed.startswith("vacuumed and analyzed lead") == vacuumed and (run.vacuum_s > 0) == vacuumed
    if vacuumed:
        assert f"it has {others + through // 4:,}; this statement left {through // 4:,}" in run.vacuumed
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'lead'").fetchone()[0] == (
            2 if vacuumed else 1
        )


def test_a_vacuum_that_cannot_have_its_lock_is_left_to_autovacuum(empty_db: str, monkeypatch) -> None:
    _leads(empty_db)
    monkeypatch.setattr(upkeep, "VACUUM_LOCK_TIMEOUT_MS", 300)
    with psycopg.connect(empty_db) as holder, database.connect(empty_db) as conn:
        holder.execute("LOCK TABLE lead IN SHARE UPDATE EXCLUSIVE MODE")  # what an autovacuum worker holds
        conn.execute("SET lock_timeout = '150ms'")
        conn.commit()
        done = upkeep.vacuum_after(conn, "lead", 2000, "step 1")
        assert done is not None and done.skipped == "its lock was not free within 300 ms" and done.seconds == 0
        assert done.text.startswith("did not vacuum lead (its lock was not free within 300 ms); until autovacuum")
        assert conn.execute(
            "SELECT current_setting('lock_timeout'), current_setting('vacuum_cost_delay')"
        ).fetchone() == ("150ms", "0")
        assert not conn.autocommit


def test_a_table_owner_that_is_not_a_superuser_backfills_and_vacuums(
    make_database: Callable[..., str], server_url: str, tmp_path: Path
) -> None:
    """VACUUM needs the table's owner (or MAINTAIN), pg_stat_force_next_flush nothing more: no superuser."""
    url, role = make_database(), f"rb_owner_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(conninfo.conninfo_to_dict(url)["dbname"]), sql.Identifier(role)
            )
        )
    owner_url = conninfo.make_conninfo(url, user=role)
    try:
        _leads(owner_url)
        result = _apply(
            owner_url,
            _batch(tmp_path, "UPDATE lead SET customer = -id WHERE customer IS NULL;\n"),
            tmp_path / "r",
            strategy="online",
        )
        [run] = result.backfills
        assert result.status == "applied" and run.rows == 2000
        assert run.vacuumed.startswith("vacuumed and analyzed lead")  # its owner may
        with psycopg.connect(owner_url) as conn:
            assert conn.execute("SELECT count(*) FROM lead WHERE customer IS NULL").fetchone()[0] == 0
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                    sql.Identifier(conninfo.conninfo_to_dict(url)["dbname"])
                )
            )
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# --- the application keeps going; health between batches -----------------------------------------


def test_an_application_updating_rows_not_yet_backfilled_is_not_stalled(empty_db: str, tmp_path: Path) -> None:
    with database.connect(empty_db) as conn:
        example.load(conn, leads=20_000)
        conn.commit()
        waiting = [r[0] for r in conn.execute('SELECT id FROM "Lead" WHERE customer_id IS NULL')]
    stop, waits = threading.Event(), []

    def application() -> None:
        with psycopg.connect(empty_db, autocommit=True) as conn:
            while not stop.is_set():
                started = time.perf_counter()
                conn.execute('UPDATE "Lead" SET phone = phone WHERE id = %s', (random.choice(waiting),))
                waits.append(time.perf_counter() - started)
                time.sleep(0.002)

    writer = threading.Thread(target=application)
    writer.start()
    try:
        result = _apply(empty_db, config.example_migrations_dir(), tmp_path / "r", 6, strategy="online")
    finally:
        stop.set()
        writer.join()
    assert result.status == "applied" and len(waits) > 20
    assert max(waits) < 0.5, f"the application waited {max(waits) * 1000:.0f} ms"


def test_a_batch_that_waits_on_a_row_lock_backs_off_and_retries_smaller(empty_db: str, tmp_path: Path) -> None:
    _items(empty_db, 300)
    holder = psycopg.connect(empty_db)
    holder.execute("UPDATE item SET n = n WHERE id = 7")  # a row lock the first batch needs, released later
    threading.Timer(0.6, holder.commit).start()
    try:
        result = _apply(
            empty_db,
            _batch(tmp_path, "UPDATE item SET n = n + 1 WHERE n >= 0;\n"),
            tmp_path / "r",
            strategy="online",
            lock_timeout_ms=100,
        )
    finally:
        time.sleep(0.7)
        holder.close()
    [run] = result.backfills
    assert run.lock_timeouts >= 1 and run.batch_size_first <= backfill.FIRST_SIZE // 2  # halved per timeout
    assert _counts(empty_db) == {1: 300}


def test_replica_lag_is_read_from_pg_stat_replication(empty_db: str) -> None:
    with psycopg.connect(empty_db) as conn:
        assert replica.standbys(conn) == []  # this server has no standby: the view is there, and empty
        assert replica.LagWatch(1000).measure(conn) is None
    watch = replica.LagWatch(1000)
    assert watch.over(1500.0) and not watch.over(900.0) and not watch.over(None)
    assert not replica.LagWatch(0).over(10**9)  # 0: replicas not watched
    # a real standby that falls behind, and batches pausing for it: tests/execution/test_replica.py
