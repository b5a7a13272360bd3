"""The locks a statement takes on tables it does not name: the other end of a foreign key it drops.

Dropping a foreign key (DROP CONSTRAINT, or DROP TABLE / DROP COLUMN taking one with it) removes its
triggers from the table at the other end too, under ACCESS EXCLUSIVE there: reads of that table wait.
The parser sees only the statement; the catalog says which foreign keys it drops and where they lead.
Preflight and apply both add these locks, so the report, the blocker check and the order in which apply
takes its locks all know them before the statement runs.
"""

from __future__ import annotations

import dataclasses

import psycopg

from runbook_lib.db.catalog import regclass_text
from runbook_lib.sql import locks
from runbook_lib.sql.analysis import ACCESS_EXCLUSIVE, StatementAnalysis, TableLock

# The foreign keys a drop takes with it, and the table at their other end (not the dropped table itself).
# %(kind)s: constraint (one named foreign key of the table), table (every foreign key from or to it),
# column (those from or to that column).
_LINKED = """
SELECT c.conname, o.relname
FROM pg_constraint c
JOIN pg_class o ON o.oid = CASE WHEN c.conrelid = to_regclass(%(table)s) THEN c.confrelid ELSE c.conrelid END
WHERE c.contype = 'f' AND c.conrelid <> c.confrelid
  AND to_regclass(%(table)s) IN (c.conrelid, c.confrelid)
  AND CASE %(kind)s
        WHEN 'constraint' THEN c.conrelid = to_regclass(%(table)s) AND c.conname = %(name)s
        WHEN 'table' THEN true
        ELSE (SELECT a.attnum FROM pg_attribute a WHERE a.attrelid = to_regclass(%(table)s)
                AND a.attname = %(name)s AND NOT a.attisdropped)
             = ANY (CASE WHEN c.conrelid = to_regclass(%(table)s) THEN c.conkey ELSE c.confkey END)
      END
ORDER BY 1
"""


def refine(conn: psycopg.Connection, statements: list[StatementAnalysis]) -> list[StatementAnalysis]:
    """`statements` with the ACCESS EXCLUSIVE each drop takes at the other end of its foreign keys (read-only).

    A table or constraint the file creates before dropping it is not in the catalog yet: its statement
    keeps the parser's note instead."""
    refined = []
    for stmt in statements:
        linked: dict[str, list[str]] = {}
        for kind, table, name in stmt.drops:
            for constraint, other in conn.execute(
                _LINKED, {"kind": kind, "table": regclass_text(table), "name": name}
            ).fetchall():
                linked.setdefault(other, []).append(constraint)
        if not linked:
            refined.append(stmt)
            continue
        modes = {lock.table: lock.mode for lock in stmt.locks}
        for other in linked:
            modes[other] = locks.strongest((modes[other], ACCESS_EXCLUSIVE)) if other in modes else ACCESS_EXCLUSIVE
        notes = tuple(n for n in stmt.notes if "ACCESS EXCLUSIVE too" not in n) + tuple(
            f'locks "{other}" ACCESS EXCLUSIVE too (reads wait)'
            f": the foreign key{'s' if len(names) > 1 else ''} "
            f"{', '.join(names)} it drops link{'' if len(names) > 1 else 's'} to it (pg_constraint)"
            for other, names in linked.items()
        )
        refined.append(
            dataclasses.replace(stmt, locks=tuple(TableLock(table, mode) for table, mode in modes.items()), notes=notes)
        )
    return refined
