"""The example CRM database: the schema of examples/crm/schema.sql and deterministic data.

The data is the state before batch 6 of the reference migration: about one lead in ten has no
customer (batch 6 backfills them, batch 7 then makes customer_id NOT NULL), a few of those share
an email with an existing customer (the backfill must link, not duplicate), and a few jobs have
no customer although their lead has one.

Every row is computed in SQL from generate_series and integer arithmetic, never random(), so the
same `leads` gives the same rows, byte for byte. Measured on 2 cores (embedded PostgreSQL 18.4):
1,000,000 leads (250,000 customers, 400,000 jobs, 315 MB) load in 11-14 s including indexes,
foreign keys and ANALYZE (the Lead insert is 5 s of it); 100,000 leads in about 1 s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pglast
import psycopg
from psycopg import sql

from runbook_lib import config
from runbook_lib.db import ledger
from runbook_lib.errors import ExampleError

EXAMPLE_TABLES = ("Customer", "Lead", "Job")

#: The backup table batch 6 (006_backfill_customers) creates; a reset drops it with the tables.
BACKFILL_BACKUP_TABLE = "_runbook_backfill_006"

#: Dropped by a reset besides the tables: the runbook ledger and Prisma's own history, which
#: would otherwise describe migrations of the data that the reset threw away.
PRISMA_MIGRATIONS_TABLE = "_prisma_migrations"


@dataclass(frozen=True)
class ExampleLoad:
    """What was loaded, measured from the database after loading."""

    customers: int
    leads: int
    jobs: int
    leads_without_customer: int
    jobs_without_customer: int
    seconds: float
    replaced: bool = False  # the example's tables were there, and were dropped first (reset)


# One lead in ten (id divisible by 10) has no customer. Of those, ids divisible by 200 carry the
# email of an existing customer, and ids divisible by 170 carry the email of the orphan lead ten
# before them, so the backfill meets both cases: link to a customer, and one new customer for two
# leads. `email_key` is the lead whose email an orphan lead uses.
_CUSTOMERS = """
INSERT INTO "Customer" (id, name, email, phone, created_at, updated_at)
SELECT 'cus_' || lpad(i::text, %(customer_width)s, '0'),
       first_name || ' ' || last_name,
       lower(first_name) || '.' || lower(last_name) || '.' || i || '@example.com',
       '+1-555-' || lpad((i %% 10000000)::text, 7, '0'),
       created_at,
       created_at + (i %% 90) * interval '1 day'
FROM (
    SELECT i,
           (ARRAY['Ana','Ben','Chloe','Dev','Elena','Farid','Grace','Hiro','Ines','Jonas',
                  'Kemi','Luca','Maya','Nora','Omar','Priya','Quinn','Rosa','Sam','Tariq'])[i %% 20 + 1]
               AS first_name,
           (ARRAY['Adams','Becker','Costa','Dubois','Eriksen','Fischer','Garcia','Haddad',
                  'Ivanova','Jensen','Kowalski','Lopez','Moreau','Nakamura','Okafor','Petrov',
                  'Quispe','Rossi','Silva','Tanaka','Urban','Varga','Weber','Xu','Yilmaz'])[(i / 20) %% 25 + 1]
               AS last_name,
           timestamp '2024-01-01 09:00:00' + i * interval '61 seconds' AS created_at
    FROM generate_series(1, %(customers)s::bigint) AS i
) AS g
"""

_LEADS = """
INSERT INTO "Lead" (id, customer_id, channel, name, email, phone, created_at, updated_at)
SELECT 'lead_' || lpad(g.i::text, %(lead_width)s, '0'),
       c.id,
       (ARRAY['messenger','whatsapp','web','phone','email'])[g.i %% 5 + 1],
       coalesce(c.name, g.own_name),
       coalesce(c.email, shared.email, 'lead.' || g.email_key || '@example.net'),
       coalesce(c.phone, '+1-555-9' || lpad((g.i %% 1000000)::text, 6, '0')),
       g.created_at,
       g.created_at + (g.i %% 30) * interval '1 hour'
FROM (
    SELECT i,
           CASE WHEN i %% 10 <> 0
                THEN 'cus_' || lpad(((i * 2654435761) %% %(customers)s + 1)::text, %(customer_width)s, '0')
           END AS customer_id,
           CASE WHEN i %% 170 = 0 THEN i - 10 ELSE i END AS email_key,
           (ARRAY['Alex','Bea','Cyrus','Dana','Emil','Fatima','Gus','Hana','Ivo','Jade',
                  'Kai','Lena','Milo','Nia','Otto','Pia','Raul','Sofia','Theo'])[i %% 19 + 1]
               || ' ' ||
           (ARRAY['Abbott','Brandt','Chen','Diaz','Evans','Fontaine','Gomez','Horvat','Ito',
                  'Juarez','Klein','Larsen','Mensah','Novak','Olsen','Park','Reyes'])[(i / 19) %% 17 + 1]
               AS own_name,
           timestamp '2024-01-01 09:00:00' + i * interval '17 seconds' AS created_at
    FROM generate_series(1, %(leads)s::bigint) AS i
) AS g
LEFT JOIN "Customer" AS c ON c.id = g.customer_id
LEFT JOIN "Customer" AS shared
       ON g.customer_id IS NULL AND g.email_key %% 200 = 0
      AND shared.id = 'cus_' || lpad(((g.email_key / 200 * 40503) %% %(customers)s + 1)::text, %(customer_width)s, '0')
"""

# A job belongs to a lead (every 8th job is a second job for the lead of the job before it). Its
# customer is its lead's, NULL when the lead has none, except every 50th job, which has no
# customer although its lead may have one: the backfill copies the lead's customer to it.
_JOBS = """
INSERT INTO "Job" (id, customer_id, lead_id, window_start, window_end, status, created_at, updated_at)
SELECT 'job_' || lpad(g.j::text, %(job_width)s, '0'),
       CASE WHEN g.j %% 50 <> 0 THEN l.customer_id END,
       l.id,
       w.window_start,
       w.window_start + (g.j %% 4 + 1) * interval '1 hour',
       (ARRAY['scheduled','scheduled','confirmed','completed','cancelled'])[g.j %% 5 + 1],
       l.created_at + (g.j %% 7 + 1) * interval '1 hour',
       l.created_at + (g.j %% 7 + 1) * interval '1 hour' + (g.j %% 10) * interval '1 day'
FROM (
    SELECT j,
           'lead_' || lpad(((CASE WHEN j %% 8 = 0 THEN j - 1 ELSE j END * 2654435761) %% %(leads)s + 1)::text,
                           %(lead_width)s, '0') AS lead_id
    FROM generate_series(1, %(jobs)s::bigint) AS j
) AS g
JOIN "Lead" AS l ON l.id = g.lead_id
CROSS JOIN LATERAL (
    SELECT date_trunc('day', l.created_at) + (g.j %% 21 + 1) * interval '1 day'
           + (8 + g.j %% 9) * interval '1 hour' AS window_start
) AS w
"""

_MEASURE = """
SELECT (SELECT count(*) FROM "Customer"),
       (SELECT count(*) FROM "Lead"),
       (SELECT count(*) FROM "Job"),
       (SELECT count(*) FROM "Lead" WHERE customer_id IS NULL),
       (SELECT count(*) FROM "Job" WHERE customer_id IS NULL)
"""


def schema_statements() -> tuple[list[str], list[str]]:
    """The statements of schema.sql: (CREATE TABLE ..., everything after: indexes and foreign keys)."""
    path = config.example_dir() / "schema.sql"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fix = "restore it from git" if config.checkout() else "reinstall runbook"
        raise ExampleError(f"Cannot read the example schema {path} ({exc.strerror}); {fix}.") from None
    tables: list[str] = []
    rest: list[str] = []
    for statement in pglast.split(text):
        (tables if statement.upper().startswith("CREATE TABLE") else rest).append(statement)
    return tables, rest


def existing_tables(conn: psycopg.Connection) -> list[str]:
    """The example tables that already exist in the connection's search path."""
    rows = conn.execute(
        "SELECT name FROM unnest(%s::text[]) WITH ORDINALITY AS t(name, n)"
        " WHERE to_regclass(quote_ident(name)) IS NOT NULL ORDER BY n",
        [list(EXAMPLE_TABLES)],
    ).fetchall()
    return [row[0] for row in rows]


def drop(conn: psycopg.Connection) -> None:
    """Drop the example tables, batch 6's backup table, the runbook ledger (and its own `runbook` schema) and
    Prisma's history."""
    for table in (*EXAMPLE_TABLES, BACKFILL_BACKUP_TABLE, PRISMA_MIGRATIONS_TABLE):
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(table)))
    conn.execute(f"DROP TABLE IF EXISTS {ledger.table()}")  # the ledger's schema may be the application's
    if ledger.schema_name() == ledger.DEFAULT_SCHEMA:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(ledger.DEFAULT_SCHEMA)))


def load(conn: psycopg.Connection, *, leads: int = 1000, reset: bool = False) -> ExampleLoad:
    """Create the example CRM and fill it with `leads` leads; runs in the caller's transaction."""
    if isinstance(leads, bool) or not isinstance(leads, int) or leads < 1:
        raise ExampleError(f"The example needs at least 1 lead, not {leads!r}; pass a whole number such as 1000.")
    started = time.perf_counter()
    tables, constraints = schema_statements()
    present = existing_tables(conn)
    if present and not reset:
        names = ", ".join(f'"{name}"' for name in present)
        raise ExampleError(
            f"The database already has the example table{'s' if len(present) > 1 else ''} {names}; "
            "pass --reset to drop and reload them."
        )
    if reset:
        drop(conn)

    customers = max(1, leads // 4)
    jobs = leads * 2 // 5
    params = {
        "leads": leads,
        "customers": customers,
        "jobs": jobs,
        "customer_width": max(6, len(str(customers))),
        "lead_width": max(7, len(str(leads))),
        "job_width": max(7, len(str(jobs))),
    }
    # Loading before the indexes and foreign keys exist, then building them in one pass each,
    # is several times faster than checking every row's foreign keys as it arrives.
    for statement in tables:
        conn.execute(statement)
    conn.execute(_CUSTOMERS, params)
    conn.execute(_LEADS, params)
    if jobs:
        conn.execute(_JOBS, params)
    for statement in constraints:
        conn.execute(statement)
    for table in EXAMPLE_TABLES:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))

    row = conn.execute(_MEASURE).fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    return ExampleLoad(
        customers=row[0],
        leads=row[1],
        jobs=row[2],
        leads_without_customer=row[3],
        jobs_without_customer=row[4],
        seconds=round(time.perf_counter() - started, 3),
        replaced=bool(present) and reset,
    )
