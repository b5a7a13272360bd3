"""The example CRM: its loader, and batches 6 and 7 run against it for real."""

from __future__ import annotations

import re
from pathlib import Path

import pglast
import psycopg
import pytest
from psycopg import errors, sql

from runbook_lib import batch as batch_mod
from runbook_lib import config
from runbook_lib.batch import blocks as sqlblocks
from runbook_lib.batch import declared as checks
from runbook_lib.db import connection as database
from runbook_lib.db import example
from runbook_lib.errors import ExampleError

BATCH_6 = config.example_migrations_dir() / "006_backfill_customers"
BATCH_7 = config.example_migrations_dir() / "007_tighten_constraints"
BACKUP = example.BACKFILL_BACKUP_TABLE


def run_script(conn: psycopg.Connection, path: Path) -> None:
    """Run a migration or rollback file statement by statement, as the apply phase splits it."""
    for statement in pglast.split(path.read_text(encoding="utf-8")):
        conn.execute(statement)


def table_digest(conn: psycopg.Connection, table: str) -> tuple[int, str]:
    """Row count and an md5 of every row, all columns, in id order."""
    row = conn.execute(
        sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.id), '')) FROM {} AS t").format(
            sql.Identifier(table)
        )
    ).fetchone()
    return row[0], row[1]


def digests(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    return {table: table_digest(conn, table) for table in example.EXAMPLE_TABLES}


def catalog(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """Columns, constraints and indexes of the example tables: what a schema change changes."""
    columns = conn.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = ANY(%s) ORDER BY table_name, ordinal_position",
        [list(example.EXAMPLE_TABLES)],
    ).fetchall()
    constraints = conn.execute(
        "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid), convalidated"
        " FROM pg_constraint WHERE connamespace = current_schema()::regnamespace"
        " AND conrelid::regclass::text = ANY(%s) ORDER BY 1, 2",
        [[f'"{t}"' for t in example.EXAMPLE_TABLES]],
    ).fetchall()
    indexes = conn.execute(
        "SELECT tablename, indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = current_schema() AND tablename = ANY(%s) ORDER BY 1, 2",
        [list(example.EXAMPLE_TABLES)],
    ).fetchall()
    return {"columns": columns, "constraints": constraints, "indexes": indexes}


def customer_fk(conn: psycopg.Connection, table: str) -> tuple[str, str, bool]:
    """(confdeltype, confupdtype, attnotnull) of <table>.customer_id and its foreign key."""
    return conn.execute(
        "SELECT c.confdeltype::text, c.confupdtype::text, a.attnotnull"
        " FROM pg_constraint AS c JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attname = 'customer_id'"
        " WHERE c.conname = %s AND c.contype = 'f'",
        [f"{table}_customer_id_fkey"],
    ).fetchone()


_BLOCK = re.compile(
    r"--\s*name:\s*(?P<name>[^\n]+)\n--\s*expect:\s*(?P<expect>[^\n]+)\n(?P<sql>.+?)(?=\n\s*\n--\s*name:|\Z)", re.S
)


def run_blocks(conn: psycopg.Connection, path: Path) -> dict[str, tuple[bool, str]]:
    """A minimal reader of the example's blocks with expectations, to check the files themselves.

    Each block runs in its own savepoint inside one transaction that is rolled back, like the
    validate phase; the result maps each name to (passed, what happened).
    """
    text = path.read_text(encoding="utf-8")
    blocks = list(_BLOCK.finditer(text))
    assert blocks and len(blocks) == text.count("-- name:"), f"unreadable blocks in {path}"
    results: dict[str, tuple[bool, str]] = {}
    with conn.transaction(force_rollback=True):
        for block in blocks:
            name, expect, statement = block["name"].strip(), block["expect"].strip(), block["sql"].strip()
            assert len(pglast.split(statement)) == 1, f"{name}: a block holds one statement"
            try:
                with conn.transaction():
                    cur = conn.execute(statement)
                    value = cur.fetchone()[0] if cur.description else None
                outcome = "ok" if expect == "ok" or expect.startswith("error") else str(value)
            except psycopg.Error as exc:
                outcome = f"error {exc.sqlstate}"
            results[name] = (outcome == expect, outcome)
    return results


def failed(results: dict[str, tuple[bool, str]]) -> dict[str, str]:
    return {name: outcome for name, (passed, outcome) in results.items() if not passed}


# --- loading -----------------------------------------------------------------------------------


def test_load_measures_what_it_loaded(empty_db: str) -> None:
    with database.connect(empty_db) as conn:
        loaded = example.load(conn, leads=2000)
        conn.commit()
        assert (loaded.customers, loaded.leads, loaded.jobs) == (500, 2000, 800)
        assert loaded.leads_without_customer == 200  # one lead in ten
        assert loaded.seconds > 0
        measured = conn.execute(
            'SELECT (SELECT count(*) FROM "Customer"), (SELECT count(*) FROM "Lead"), (SELECT count(*) FROM "Job"),'
            ' (SELECT count(*) FROM "Lead" WHERE customer_id IS NULL),'
            ' (SELECT count(*) FROM "Job" WHERE customer_id IS NULL)'
        ).fetchone()
        assert measured == (
            loaded.customers,
            loaded.leads,
            loaded.jobs,
            loaded.leads_without_customer,
            loaded.jobs_without_customer,
        )


def test_example_data_has_the_cases_the_batches_need(crm_url: str) -> None:
    with database.connect(crm_url) as conn:
        one = lambda query: conn.execute(query).fetchone()[0]  # noqa: E731
        assert one('SELECT count(*) FROM "Lead"') == 1000
        assert 200 <= one('SELECT count(*) FROM "Customer"') <= 300
        assert 350 <= one('SELECT count(*) FROM "Job"') <= 450
        assert one('SELECT count(*) FROM "Lead" WHERE customer_id IS NULL') == 100
        # Leads without customer can be backfilled: name, email and phone are there.
        assert (
            one(
                'SELECT count(*) FROM "Lead" WHERE customer_id IS NULL'
                " AND (email IS NULL OR phone IS NULL OR name IS NULL)"
            )
            == 0
        )
        # Some of them share an email with an existing customer (link, don't duplicate) ...
        assert (
            one(
                'SELECT count(*) FROM "Lead" AS l JOIN "Customer" AS c ON c.email = l.email WHERE l.customer_id IS NULL'
            )
            > 0
        )
        # ... and some share one with each other (one new customer for both).
        assert (
            one(
                'SELECT count(*) FROM (SELECT email FROM "Lead" WHERE customer_id IS NULL'
                ' AND email NOT IN (SELECT email FROM "Customer" WHERE email IS NOT NULL)'
                " GROUP BY email HAVING count(*) > 1) AS shared"
            )
            > 0
        )
        # A job's customer is its lead's, or NULL: NULL when the lead has none, and a few more.
        assert (
            one(
                'SELECT count(*) FROM "Job" AS j JOIN "Lead" AS l ON l.id = j.lead_id'
                " WHERE j.customer_id IS NOT NULL AND j.customer_id IS DISTINCT FROM l.customer_id"
            )
            == 0
        )
        assert (
            one(
                'SELECT count(*) FROM "Job" AS j JOIN "Lead" AS l ON l.id = j.lead_id'
                " WHERE l.customer_id IS NULL AND j.customer_id IS NOT NULL"
            )
            == 0
        )
        assert (
            one('SELECT count(*) FROM "Job" AS j JOIN "Lead" AS l ON l.id = j.lead_id WHERE l.customer_id IS NULL') > 0
        )
        assert (
            one(
                'SELECT count(*) FROM "Job" AS j JOIN "Lead" AS l ON l.id = j.lead_id'
                " WHERE l.customer_id IS NOT NULL AND j.customer_id IS NULL"
            )
            > 0
        )
        assert one('SELECT count(*) FROM (SELECT lead_id FROM "Job" GROUP BY lead_id HAVING count(*) > 1) AS x') > 0
        assert one('SELECT count(*) - count(DISTINCT email) FROM "Customer"') == 0
        assert one('SELECT count(*) FROM "Job" WHERE window_end <= window_start OR updated_at < created_at') == 0
        assert one(r"""SELECT count(*) FROM "Customer" WHERE id !~ '^cus_\d{6}$'""") == 0
        assert one(r"""SELECT count(*) FROM "Lead" WHERE id !~ '^lead_\d{7}$'""") == 0
        assert one(r"""SELECT count(*) FROM "Job" WHERE id !~ '^job_\d{7}$'""") == 0


def test_example_schema_is_prismas(crm_url: str) -> None:
    with database.connect(crm_url) as conn:
        constraints = {(row[0], row[1], row[3]) for row in catalog(conn)["constraints"] if row[2] in ("p", "f", "u")}
        indexes = {row[1] for row in catalog(conn)["indexes"]}
        lead = {row[1]: row for row in catalog(conn)["columns"] if row[0] == "Lead"}
    assert constraints == {
        ('"Customer"', "Customer_pkey", "PRIMARY KEY (id)"),
        ('"Lead"', "Lead_pkey", "PRIMARY KEY (id)"),
        ('"Job"', "Job_pkey", "PRIMARY KEY (id)"),
        (
            '"Lead"',
            "Lead_customer_id_fkey",
            'FOREIGN KEY (customer_id) REFERENCES "Customer"(id) ON UPDATE CASCADE ON DELETE SET NULL',
        ),
        (
            '"Job"',
            "Job_customer_id_fkey",
            'FOREIGN KEY (customer_id) REFERENCES "Customer"(id) ON UPDATE CASCADE ON DELETE SET NULL',
        ),
        (
            '"Job"',
            "Job_lead_id_fkey",
            'FOREIGN KEY (lead_id) REFERENCES "Lead"(id) ON UPDATE CASCADE ON DELETE RESTRICT',
        ),
    }
    assert indexes == {
        "Customer_pkey",
        "Customer_email_key",
        "Lead_pkey",
        "Lead_customer_id_idx",
        "Job_pkey",
        "Job_customer_id_idx",
        "Job_lead_id_idx",
    }
    assert list(lead) == ["id", "customer_id", "channel", "name", "email", "phone", "created_at", "updated_at"]
    assert lead["customer_id"][3] == "YES"
    assert lead["created_at"][2:] == ("timestamp without time zone", "NO", "CURRENT_TIMESTAMP")
    assert lead["updated_at"][2:] == ("timestamp without time zone", "NO", None)


def test_load_refuses_existing_tables_and_changes_nothing(crm_url: str) -> None:
    with database.connect(crm_url) as conn:
        before = digests(conn), catalog(conn)
        with pytest.raises(ExampleError) as raised:
            example.load(conn, leads=10)
        message = str(raised.value)
        assert all(f'"{table}"' in message for table in example.EXAMPLE_TABLES)
        assert "pass --reset to drop and reload them" in message
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS  # still usable
        conn.commit()
        assert (digests(conn), catalog(conn)) == before


def test_a_reset_on_an_empty_database_replaced_nothing(empty_db: str) -> None:
    with database.connect(empty_db) as conn:
        assert not example.load(conn, leads=10, reset=True).replaced  # a fresh server's demo: "example loaded"


def test_load_names_only_the_tables_that_exist(empty_db: str) -> None:
    with database.connect(empty_db) as conn:
        conn.execute('CREATE TABLE "Lead" (id TEXT)')
        with pytest.raises(ExampleError, match=r'example table "Lead";'):
            example.load(conn)


def test_load_with_reset_drops_and_reloads(crm_url: str) -> None:
    with database.connect(crm_url) as conn:
        conn.execute("CREATE SCHEMA runbook")
        conn.execute("CREATE TABLE runbook.ledger (batch int)")
        conn.execute('CREATE TABLE "_prisma_migrations" (id TEXT)')
        run_script(conn, BATCH_6 / "migration.sql")  # leaves the backup table and new customers
        conn.commit()

        loaded = example.load(conn, leads=400, reset=True)
        conn.commit()
        assert (loaded.leads, loaded.customers, loaded.jobs, loaded.leads_without_customer) == (400, 100, 160, 40)
        assert loaded.replaced  # what `make demo` says: "example reset and reloaded"
        leftovers = conn.execute(
            "SELECT to_regnamespace('runbook'), to_regclass('\"_prisma_migrations\"'), to_regclass(%s)",
            [f'"{BACKUP}"'],
        ).fetchone()
        assert leftovers == (None, None, None)


def test_load_rejects_no_leads_and_creates_nothing(empty_db: str) -> None:
    with database.connect(empty_db) as conn:
        for leads in (0, -5):
            with pytest.raises(ExampleError, match="at least 1 lead"):
                example.load(conn, leads=leads)
        assert example.existing_tables(conn) == []


def test_load_of_one_lead(empty_db: str) -> None:
    with database.connect(empty_db) as conn:
        loaded = example.load(conn, leads=1)
        assert (loaded.customers, loaded.leads, loaded.jobs) == (1, 1, 0)


def test_load_is_deterministic(make_database, crm_url: str) -> None:
    urls = [make_database(), make_database()]
    results = []
    for url in urls:
        with database.connect(url) as conn:
            example.load(conn, leads=1000)
            conn.commit()
            results.append(digests(conn))
    with database.connect(crm_url) as conn:
        results.append(digests(conn))  # the session template, loaded earlier
    assert results[0] == results[1] == results[2]


def test_load_100k_leads(empty_db: str) -> None:
    with database.connect(empty_db) as conn:
        loaded = example.load(conn, leads=100_000)
        conn.commit()
    assert (loaded.customers, loaded.leads, loaded.jobs) == (25_000, 100_000, 40_000)
    assert loaded.leads_without_customer == 10_000
    assert 0 < loaded.jobs_without_customer < loaded.jobs // 5


# --- batch 6 -----------------------------------------------------------------------------------


def test_batch_6_backfills_and_passes_its_gates_and_tests(crm_url: str) -> None:
    with database.connect(crm_url) as conn:
        assert failed(run_blocks(conn, BATCH_6 / "preflight.sql")) == {}
        customers_before = conn.execute('SELECT count(*) FROM "Customer"').fetchone()[0]
        linkable = conn.execute(
            'SELECT count(*) FROM "Lead" AS l JOIN "Customer" AS c ON c.email = l.email WHERE l.customer_id IS NULL'
        ).fetchone()[0]
        orphan_emails = conn.execute(
            'SELECT count(DISTINCT email) FROM "Lead" AS l WHERE customer_id IS NULL'
            ' AND NOT EXISTS (SELECT 1 FROM "Customer" AS c WHERE c.email = l.email)'
        ).fetchone()[0]

        run_script(conn, BATCH_6 / "migration.sql")

        one = lambda query: conn.execute(query).fetchone()[0]  # noqa: E731
        assert one('SELECT count(*) FROM "Lead" WHERE customer_id IS NULL') == 0
        assert one('SELECT count(*) FROM "Job" WHERE customer_id IS NULL') == 0
        assert one('SELECT count(*) - count(DISTINCT email) FROM "Customer"') == 0
        # Linked where the email existed, one new customer per remaining email.
        assert one('SELECT count(*) FROM "Customer"') == customers_before + orphan_emails
        assert (
            one(
                f'SELECT count(*) FROM "{BACKUP}" AS b JOIN "Customer" AS c ON c.id = \'cus_\' || b.row_id'
                " WHERE b.kind = 'lead'"
            )
            == orphan_emails
        )
        assert linkable > 0
        assert (
            one(
                'SELECT count(*) FROM "Lead" AS l JOIN "Customer" AS c ON c.id = l.customer_id'
                " WHERE l.email IS DISTINCT FROM c.email"
            )
            == 0
        )
        assert one("SELECT count(*) FROM \"Lead\" WHERE updated_at >= now()::timestamp(3) - interval '1 second'") == 100
        assert failed(run_blocks(conn, BATCH_6 / "validation.sql")) == {}
        assert failed(run_blocks(conn, BATCH_7 / "preflight.sql")) == {}


def test_batch_6_rollback_restores_exactly_the_previous_rows(crm_url: str) -> None:
    with database.connect(crm_url) as conn:
        before = digests(conn)
        run_script(conn, BATCH_6 / "migration.sql")
        conn.commit()
        after = digests(conn)
        assert all(after[table] != before[table] for table in example.EXAMPLE_TABLES)

        run_script(conn, BATCH_6 / "rollback.sql")
        conn.commit()
        assert digests(conn) == before
        assert conn.execute("SELECT to_regclass(%s)", [f'"{BACKUP}"']).fetchone()[0] is None


# --- batch 7 -----------------------------------------------------------------------------------


def test_batch_7_gates_fail_before_batch_6_and_so_would_the_migration(crm_url: str) -> None:
    with database.connect(crm_url) as conn:
        gates = failed(run_blocks(conn, BATCH_7 / "preflight.sql"))
        assert set(gates) == {
            "Leads with NULL customer_id",
            "Jobs with NULL customer_id",
            "Jobs whose customer differs from their lead's",
        }
        assert gates["Leads with NULL customer_id"] == "100"
        with pytest.raises(errors.NotNullViolation):
            run_script(conn, BATCH_7 / "migration.sql")


@pytest.mark.versions
def test_batch_7_enforces_and_rolls_back_to_the_same_catalog(crm_url: str, server_major: int) -> None:
    with database.connect(crm_url) as conn:
        start = digests(conn)
        run_script(conn, BATCH_6 / "migration.sql")
        conn.commit()
        before_7 = catalog(conn), digests(conn)
        assert customer_fk(conn, "Lead") == ("n", "c", False)  # SET NULL, CASCADE, nullable

        run_script(conn, BATCH_7 / "migration.sql")
        conn.commit()
        for table in ("Lead", "Job"):
            assert customer_fk(conn, table) == ("r", "c", True)  # RESTRICT, CASCADE, NOT NULL
        assert (
            conn.execute(
                "SELECT count(*) FROM information_schema.columns WHERE table_name IN ('Lead', 'Job')"
                " AND column_name = 'customer_id' AND is_nullable = 'NO'"
            ).fetchone()[0]
            == 2
        )
        # ON DELETE RESTRICT: PostgreSQL 18 reports restrict_violation (23001), before it 23503.
        with pytest.raises((errors.RestrictViolation, errors.ForeignKeyViolation)) as refused, conn.transaction():
            conn.execute('DELETE FROM "Customer" WHERE id = (SELECT customer_id FROM "Lead" ORDER BY id LIMIT 1)')
        assert refused.value.sqlstate == ("23001" if server_major >= 18 else "23503")
        # Every test comes from batch.toml's [checks] (validation.sql holds only a comment).
        assert sqlblocks.load(BATCH_7 / "validation.sql") == []
        with conn.transaction(force_rollback=True):
            seven = batch_mod.find(config.example_migrations_dir(), 7)
            results = [sqlblocks.run(conn, block) for block in checks.tests(conn, seven.checks)]
        assert len(results) >= 7
        assert [(r.name, r.outcome) for r in results if not r.passed] == []
        assert digests(conn) == before_7[1]  # validation left nothing behind

        run_script(conn, BATCH_7 / "rollback.sql")
        conn.commit()
        for table in ("Lead", "Job"):
            assert customer_fk(conn, table) == ("n", "c", False)
        assert (catalog(conn), digests(conn)) == before_7
        # With batch 7 rolled back, batch 6 rolls back too: the example's starting rows.
        run_script(conn, BATCH_6 / "rollback.sql")
        conn.commit()
        assert digests(conn) == start


def test_batch_6_rollback_refuses_while_batch_7_is_applied(crm_url: str) -> None:
    with database.connect(crm_url) as conn:
        run_script(conn, BATCH_6 / "migration.sql")
        run_script(conn, BATCH_7 / "migration.sql")
        conn.commit()
        with pytest.raises(errors.NotNullViolation):
            run_script(conn, BATCH_6 / "rollback.sql")


def test_prisma_schema_after_batch_7_differs_only_in_the_customer_relations() -> None:
    before = (config.example_dir() / "schema.prisma").read_text().splitlines()
    after = (BATCH_7 / "schema.prisma").read_text().splitlines()
    changed = [(b.split(), a.split()) for b, a in zip(before, after, strict=True) if b != a and not b.startswith("//")]
    assert len(before) == len(after) and len(changed) == 4
    for old, new in changed:
        assert old[0] in ("customerId", "customer")
        if old[0] == "customerId":
            assert (old[1], new[1]) == ("String?", "String")
        else:
            assert (old[1], new[1]) == ("Customer?", "Customer")
            assert "onDelete: SetNull)" in " ".join(old) and "onDelete: Restrict)" in " ".join(new)
