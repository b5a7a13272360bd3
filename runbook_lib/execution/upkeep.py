"""What a backfill owes the planner: statistics before its first batch, clean indexes after its last.

Both come from what the application's queries are planned on. Before: a table the migration filled but
never analyzed looks empty, and every batch gets planned as if it were (`fresh_statistics`). After: an
UPDATE or DELETE of a large share of a table leaves as many dead row versions in each of its indexes, and
makes the table due for autovacuum's ANALYZE. New statistics can move an application's query onto an index
whose entries are all dead (`vacuum_after`): at 5M leads, once "Lead" was analyzed after batch 6 (null_frac
of customer_id 10% -> 0), `UPDATE "Lead" ... WHERE id = $1 AND customer_id IS NULL` was planned on the
customer_id index and walked its 500k dead NULL entries: 355 ms for one row, where the key took 0.2 ms.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import psycopg
import psycopg.errors

from runbook_lib.db import catalog
from runbook_lib.execution import live

# The role may VACUUM / ANALYZE a table it owns (or, on PG17+, one it has MAINTAIN on); PostgreSQL answers
# others with a warning and does nothing, so runbook does not ask, and says so.
_MAY_MAINTAIN = """CASE WHEN current_setting('server_version_num')::int >= 170000
                        THEN has_table_privilege(c.oid, 'MAINTAIN') ELSE pg_has_role(c.relowner, 'USAGE') END"""

# A table's own autovacuum settings (storage parameters), NULL where it has none and the server's apply.
_RELOPTIONS = """
CROSS JOIN LATERAL (
    SELECT max(option_value) FILTER (WHERE option_name = 'autovacuum_analyze_scale_factor')::float8 AS scale,
           max(option_value) FILTER (WHERE option_name = 'autovacuum_analyze_threshold')::float8 AS threshold,
           max(option_value) FILTER (WHERE option_name = 'autovacuum_vacuum_scale_factor')::float8 AS vacuum_scale,
           max(option_value) FILTER (WHERE option_name = 'autovacuum_vacuum_threshold')::float8 AS vacuum_threshold,
           max(option_value) FILTER (WHERE option_name = 'autovacuum_vacuum_cost_delay') AS delay,
           max(option_value) FILTER (WHERE option_name = 'autovacuum_vacuum_cost_limit') AS cost_limit
    FROM pg_options_to_table(c.reloptions)) AS o
"""

# The changes at which autovacuum analyzes the table (threshold + scale factor x rows), and vacuums it.
_ANALYZE_DUE_AT = """greatest(c.reltuples, 0)
           * coalesce(o.scale, current_setting('autovacuum_analyze_scale_factor')::float8)
         + coalesce(o.threshold, current_setting('autovacuum_analyze_threshold')::float8)"""
_VACUUM_DUE_AT = """greatest(c.reltuples, 0)
           * coalesce(o.vacuum_scale, current_setting('autovacuum_vacuum_scale_factor')::float8)
         + coalesce(o.vacuum_threshold, current_setting('autovacuum_vacuum_threshold')::float8)"""

# Of the tables named (as the SQL wrote them), the ones whose statistics misdescribe them, in one query:
# never analyzed but with rows, or due for autovacuum's ANALYZE with too few dead row versions for a VACUUM.
_STALE_SQL = f"""
SELECT t.name, t.regclass, c.reltuples < 0, coalesce(s.n_mod_since_analyze, 0), round({_ANALYZE_DUE_AT}),
       {_MAY_MAINTAIN}
FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(name, regclass, i)
JOIN pg_class AS c ON c.oid = to_regclass(t.regclass)
{_RELOPTIONS}
LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'p', 'm') AND pg_relation_size(c.oid) > 0
  AND (c.reltuples < 0 OR (s.n_mod_since_analyze >= {_ANALYZE_DUE_AT} AND s.n_dead_tup < {_VACUUM_DUE_AT}))
ORDER BY t.i
"""

# When autovacuum will analyze the table, the changes it counts towards it, and how hard autovacuum may
# work on it (its cost delay and limit; -1 means vacuum_cost_*).
_DUE_SQL = f"""
SELECT coalesce(s.n_mod_since_analyze, 0),
       {_ANALYZE_DUE_AT},
       coalesce(o.delay || 'ms', nullif(current_setting('autovacuum_vacuum_cost_delay'), '-1'),
                current_setting('vacuum_cost_delay')),
       coalesce(o.cost_limit, nullif(current_setting('autovacuum_vacuum_cost_limit'), '-1'),
                current_setting('vacuum_cost_limit')),
       {_MAY_MAINTAIN},
       ARRAY[current_setting('vacuum_cost_delay'), current_setting('vacuum_cost_limit'),
             current_setting('lock_timeout')]
FROM pg_class AS c
{_RELOPTIONS}
LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid
WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'm')
"""

# How long the VACUUM may wait for its lock. An autovacuum worker on the table (its ANALYZE, the very thing
# to be ahead of) is cancelled by PostgreSQL once a request waits on it for deadlock_timeout (1 s by default);
# a waiting VACUUM blocks no reader or writer, only other maintenance and DDL of that table.
VACUUM_LOCK_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class Vacuumed:
    """The VACUUM (ANALYZE) after a batched step, or why there was none (`skipped`)."""

    table: str
    dead_rows: int  # row versions the step left behind (the rows it updated or deleted)
    changes: int  # since the table's last ANALYZE, the step's and others' (pg_stat_user_tables.n_mod_since_analyze)
    due_at: int  # changes at which autovacuum analyzes the table
    seconds: float = 0.0
    throttle: str = ""  # the cost delay and limit it ran under (autovacuum's)
    skipped: str = ""

    @property
    def text(self) -> str:
        """What was done and why, for the record and the summary."""
        due = (
            f"autovacuum analyzes it at {self.due_at:,} changes, it has {self.changes:,}; this statement left "
            f"{self.dead_rows:,} dead row versions"
        )
        if self.skipped:
            return (
                f"did not vacuum {self.table} ({self.skipped}); until autovacuum does ({due}), new statistics may "
                "plan queries on indexes full of dead entries"
            )
        return (
            f"vacuumed and analyzed {self.table} in {self.seconds:.1f} s ({due}), so that the plans new statistics "
            f"bring find no dead entries in its indexes; throttled as autovacuum is ({self.throttle})"
        )


def fresh_statistics(conn: psycopg.Connection, tables: list[str]) -> list[str]:
    """ANALYZE the tables whose statistics misdescribe them; the ones analyzed, each with why (or why not: a
    table the role may not maintain is left to autovacuum).

    A table never analyzed (reltuples -1: one this migration created and filled) looks nearly empty to the
    planner, which then drove every batch of batch 6's UPDATE from all of its backup table. One analyzed
    before an earlier step added rows of a new kind is as bad: on PostgreSQL 15 the backup table's
    statistics, taken when it held only 'lead' rows, planned each batch of the job UPDATE to walk all of its
    'job' rows per job (1M leads: 3,292 batches of 5 rows, 41 s; analyzed first, 5.1 s). So a table due for
    autovacuum's ANALYZE is analyzed too, unless it holds enough dead row versions to be due for a VACUUM:
    new statistics could then plan the application's queries on index entries that are all dead, and such a
    table keeps its statistics until `vacuum_after`. ANALYZE blocks no reader or writer; one that cannot have its lock
    within lock_timeout, or runs out of statement_timeout, is left to autovacuum.
    """
    unique = list(dict.fromkeys(tables))
    if not unique:
        return []
    count_own_changes(conn)
    found = conn.execute(_STALE_SQL, (unique, [catalog.regclass_text(t) for t in unique])).fetchall()
    conn.commit()
    done = []
    for table, name, never, changes, due_at, allowed in found:
        if not allowed:
            done.append(f"{table} not analyzed: this role may not (it does not own it), autovacuum will")
            continue
        try:
            conn.execute(f"ANALYZE {name}")
            conn.commit()
        except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled):
            conn.rollback()
            continue
        done.append(
            f"{table} (never analyzed)"
            if never
            else f"{table} ({changes:,} changes since its last ANALYZE; autovacuum analyzes it at {int(due_at):,})"
        )
    return done


def count_own_changes(conn: psycopg.Connection) -> None:
    """Make this session's last changes visible in pg_stat_user_tables (PG15+ sends them up to 1 s late)."""
    if conn.info.server_version >= 150000:
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.commit()


def vacuum_after(conn: psycopg.Connection, table: str, dead_rows: int, what: str) -> Vacuumed | None:
    """VACUUM (ANALYZE) `table` when the step's dead row versions make it due for autovacuum's ANALYZE.

    Due is autovacuum's own rule: the changes since the table's last ANALYZE (the step's and the
    application's) reach threshold + scale factor x rows. And they must be mostly the step's (at least half
    the threshold): a table the application alone keeps changing is autovacuum's business, not the migration's.
    Run now, before autovacuum gets there, the VACUUM removes the dead index entries and only then does its
    ANALYZE replan the application's queries; while it runs, autovacuum leaves the table alone. It is
    throttled as autovacuum would be: it does the work autovacuum was about to do, no harder. The step is
    recorded done before: a VACUUM that is stopped or killed loses nothing, and autovacuum does it later.
    None: not due (or not a table).
    """
    name = catalog.regclass_text(table)
    count_own_changes(conn)
    row = conn.execute(_DUE_SQL, (name,)).fetchone()
    conn.commit()
    if row is None:
        return None
    changes, due_at, delay, cost_limit, allowed, session = row
    changes = max(int(changes), dead_rows)  # older servers may not have counted the last batches yet
    if changes < due_at or 2 * dead_rows < due_at:
        return None
    found = Vacuumed(
        table, dead_rows, changes, round(due_at), throttle=f"vacuum_cost_delay {delay}, vacuum_cost_limit {cost_limit}"
    )
    if not allowed:
        return _skipped(found, "this role may not vacuum it")
    live.emit(
        live.BACKFILL, f"{what}: vacuuming {table} ({dead_rows:,} dead row versions) before autovacuum analyzes it"
    )
    autocommit, began = conn.autocommit, time.perf_counter()
    settings = (
        "SELECT set_config('vacuum_cost_delay', %s, false), set_config('vacuum_cost_limit', %s, false), "
        "set_config('lock_timeout', %s, false)"
    )
    try:
        conn.autocommit = True
        conn.execute(settings, (delay, cost_limit, f"{VACUUM_LOCK_TIMEOUT_MS}ms"))
        conn.execute(f"VACUUM (ANALYZE) {name}")
    except psycopg.errors.LockNotAvailable:
        return _skipped(found, f"its lock was not free within {VACUUM_LOCK_TIMEOUT_MS:,} ms")
    except psycopg.Error as exc:  # statement_timeout, a cancel (runbook's guard, a DBA): the step stays done
        if conn.broken:
            raise
        return _skipped(found, exc.diag.message_primary or str(exc))
    finally:
        if not conn.broken:
            conn.execute(settings, session)  # as they were
        conn.autocommit = autocommit
    return dataclasses.replace(found, seconds=round(time.perf_counter() - began, 3))


def _skipped(found: Vacuumed, why: str) -> Vacuumed:
    return dataclasses.replace(found, skipped=why)
