"""Real-world migrations: a Prisma migrations folder written the way Prisma, Rails and Django emit SQL.

tests/corpus/prisma/migrations/<timestamp>_<name>/migration.sql (no batch.toml) is one app schema
(users, products, orders, billing, inventory, shipping, audit, reporting) that evolves over 50-odd
migrations: Prisma's generated files (`-- CreateTable` headers, enum changes with BEGIN/COMMIT),
Rails' structure-style and log-style SQL (bigserial, NOT VALID then VALIDATE, CREATE INDEX
CONCURRENTLY in migrations of their own), Django's sqlmigrate output (DEFERRABLE INITIALLY DEFERRED
foreign keys, `"app_model"` names), and hand-written data migrations. The folder must run unchanged:
discovered as batches 1..N, every statement analysed, preflight and apply of each batch in order on
an empty database, the ledger and `_prisma_migrations` in agreement at the end.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pglast
import psycopg
import pytest
from psycopg import sql

from runbook_lib import batch as batch_mod
from runbook_lib.db import connection as database
from runbook_lib.db import ledger
from runbook_lib.errors import BatchError
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, preflight
from runbook_lib.report import summary
from runbook_lib.sql import analysis, plan

CORPUS = Path(__file__).parent / "corpus" / "prisma" / "migrations"

PRISMA_MIGRATIONS_DDL = """
CREATE TABLE "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)
"""


def folders() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.is_dir())


def sql_of(name: str) -> str:
    """migration.sql as runbook reads it (the batch's own text, CRLF kept)."""
    return batch_mod.load_folder(CORPUS / name, position=1, previous=None).migration_sql


def statements_of(name: str) -> list[analysis.StatementAnalysis]:
    return analysis.analyze(sql_of(name), filename=f"{name}/migration.sql")


def find(name: str, kind: str) -> analysis.StatementAnalysis:
    found = [s for s in statements_of(name) if s.kind == kind]
    assert found, f"no {kind!r} in {name}: {[s.kind for s in statements_of(name)]}"
    return found[0]


# --- discovery ---------------------------------------------------------------------------------


def test_the_folder_is_a_chain_of_batches_numbered_by_order():
    batches = batch_mod.discover(CORPUS)
    assert len(batches) >= 40
    assert [b.number for b in batches] == list(range(1, len(batches) + 1))
    assert [b.name for b in batches] == [p.name for p in folders()]
    assert batches[0].depends_on == ()
    for previous, current in itertools.pairwise(batches):
        assert current.depends_on == (previous.number,), current.name
    assert {b.type for b in batches} == {"Prisma migration"}
    assert all(not b.checks for b in batches)


# --- analysis ----------------------------------------------------------------------------------


def test_every_statement_is_analysed_and_none_is_skipped():
    total = 0
    for folder in folders():
        text = sql_of(folder.name)
        found = analysis.analyze(text, filename=f"{folder.name}/migration.sql")
        assert len(found) == len(list(pglast.split(text, with_parser=True))), folder.name
        assert [s.index for s in found] == list(range(1, len(found) + 1))
        for stmt in found:
            assert stmt.kind, (folder.name, stmt.index)
            # What the analysis does not know is shown as unknown, with a note, never dropped.
            assert stmt.known or (stmt.kind.startswith("unknown (") and stmt.notes), (folder.name, stmt.kind)
            assert stmt.to_dict()["kind"] == stmt.kind
            text_at_line = text.splitlines()[stmt.line - 1]
            assert text_at_line.strip(), (folder.name, stmt.index, stmt.line)
        total += len(found)
    assert total >= 200


def test_statements_that_cannot_run_in_a_transaction_are_recognised():
    cic = statements_of("20230212100200_add_payments_indexes_concurrently")
    assert [(s.kind, s.transactional) for s in cic] == [
        ("CREATE INDEX CONCURRENTLY", False),
        ("CREATE UNIQUE INDEX CONCURRENTLY", False),
    ]
    assert cic[0].locks == (analysis.TableLock("payments", "SHARE UPDATE EXCLUSIVE"),)
    rails = statements_of("20230620090000_invoices_unique_order_concurrently")
    assert [(s.kind, s.transactional) for s in rails] == [
        ("DROP INDEX CONCURRENTLY", False),
        ("CREATE UNIQUE INDEX CONCURRENTLY", False),
    ]
    reindex, analyze_ = statements_of("20230625090000_reindex_product_search")
    assert reindex.kind == "REINDEX INDEX CONCURRENTLY" and not reindex.transactional
    assert analyze_.kind == "ANALYZE" and analyze_.transactional
    detach, rename, comment = statements_of("20230420090000_audit_detach_january_concurrently")
    assert detach.kind == "ALTER TABLE … DETACH PARTITION CONCURRENTLY" and not detach.transactional
    assert rename.transactional and comment.transactional


def test_enum_statements():
    add_values = statements_of("20230116090000_add_cancelled_and_refunded_status")
    assert [s.kind for s in add_values] == ["ALTER TYPE … ADD VALUE"] * 2
    assert all(s.transactional and s.notes for s in add_values)  # PostgreSQL 12+: inside a transaction
    old_server = analysis.analyze(sql_of("20230116090000_add_cancelled_and_refunded_status"), server_major=11)
    assert not any(s.transactional for s in old_server)
    assert find("20230720090000_order_status_fulfilled", "ALTER TYPE … RENAME VALUE").known
    assert find("20230110090000_init", "CREATE TYPE").known


def test_prisma_enum_rewrite_with_begin_and_commit():
    found = statements_of("20230120110000_remove_refunded_status")
    assert len(found) == 9
    assert found[0].kind == found[-1].kind == "transaction control"
    using = found[3]
    assert using.kind == "ALTER TABLE … ALTER COLUMN TYPE" and using.rewrites
    assert [s.kind for s in found[4:6]] == ["ALTER TYPE … RENAME"] * 2
    assert found[6].kind == "DROP TYPE"


def test_do_blocks_functions_and_triggers():
    do = find("20230601090000_currency_enum", "unknown (DoStmt)")
    assert not do.known and do.notes and do.transactional
    seed = find("20230525090000_product_rating_cache", "unknown (DoStmt)")
    assert "Seeded; see the migration" in seed.sql  # the whole dollar-quoted body is one statement
    function = find("20230525090000_product_rating_cache", "CREATE OR REPLACE FUNCTION")
    assert "$body$" in function.sql and "$$ USING target" in function.sql
    trigger = find("20230525090000_product_rating_cache", "CREATE TRIGGER")
    assert trigger.locks == (analysis.TableLock("Review", "SHARE ROW EXCLUSIVE"),)
    atomic = statements_of("20230710090000_reporting_functions_and_grants")
    assert atomic[0].kind == "CREATE FUNCTION" and atomic[0].sql.rstrip().endswith("END")
    assert [s.kind for s in atomic[2:]] == ["REVOKE", "GRANT", "GRANT", "REVOKE"]
    assert find("20230401090000_reporting_views", "unknown (AlterDefaultPrivilegesStmt)").notes


def test_comments_with_semicolons_split_where_the_parser_says():
    documented = statements_of("20230705090000_document_schema")
    assert len(documented) == 10
    assert all(s.kind.startswith("COMMENT ON") for s in documented)
    assert documented[0].line == 6  # after a nested /* */ block comment full of semicolons
    seed = statements_of("20230111120000_seed_initial_data")
    assert [s.kind for s in seed] == ["INSERT"] * 4
    assert "/* not a comment; */" in seed[1].sql
    structure = statements_of("20230210083000_billing_structure")
    assert [s.kind for s in structure[:6]] == ["SET"] * 5 + ["SELECT"]
    assert find("20230210083000_billing_structure", "CREATE EXTENSION").known
    crlf = statements_of("20230113090000_seed_categories")
    assert [(s.kind, s.line) for s in crlf] == [("INSERT", 3), ("INSERT", 6), ("INSERT", 10), ("COMMENT ON TABLE", 18)]
    assert "node.\r\nSeeded" in crlf[3].sql  # the file's bytes, as psql and Prisma send them
    last = statements_of("20230212100100_validate_payments_invoice_fk")
    assert [(s.kind, s.locks) for s in last] == [
        ("ALTER TABLE … VALIDATE CONSTRAINT", (analysis.TableLock("payments", "SHARE UPDATE EXCLUSIVE"),))
    ]


def test_renames_type_changes_generated_columns_and_backfills():
    kinds = [s.kind for s in statements_of("20230502090000_rename_order_item_to_line_item")]
    assert kinds == [
        "ALTER TABLE … RENAME",
        "ALTER TABLE … RENAME CONSTRAINT",
        "ALTER TABLE … RENAME CONSTRAINT",
        "ALTER TABLE … RENAME CONSTRAINT",
        "ALTER SEQUENCE … RENAME",
    ]
    assert [s.kind for s in statements_of("20230503090000_rename_indexes")] == ["ALTER INDEX … RENAME"] * 2
    assert statements_of("20230501090000_rename_user_name")[0].kind == "ALTER TABLE … RENAME COLUMN"
    django_type = statements_of("20230310090000_inventory_0005_alter_on_hand_numeric")[1]
    assert django_type.kind == "ALTER TABLE … ALTER COLUMN TYPE" and django_type.rewrites
    generated = statements_of("20230320090000_generated_columns")[0]
    assert generated.kind == "ALTER TABLE … ADD COLUMN" and generated.rewrites
    update_from = statements_of("20230220090000_backfill_invoices")[1]
    assert update_from.kind == "UPDATE"
    assert dict((lock.table, lock.mode) for lock in update_from.locks) == {
        "invoices": "ROW EXCLUSIVE",
        "OrderItem": "ACCESS SHARE",
    }
    cte = statements_of("20230113090000_seed_categories")[2]
    assert {lock.table for lock in cte.locks} == {"_CategoryToProduct", "Category", "Product"}  # not the CTE
    merge = statements_of("20230725090000_inventory_0006_sync_stock")[1]
    assert merge.kind == "MERGE"
    not_valid = statements_of("20230212100000_create_payments")[1]
    assert not_valid.kind == "ALTER TABLE … ADD FOREIGN KEY NOT VALID" and not not_valid.scans
    django_fk = find("20230301090000_inventory_0001_initial", "ALTER TABLE … ADD FOREIGN KEY")
    assert "DEFERRABLE INITIALLY DEFERRED" in django_fk.sql
    partition = find("20230410090000_audit_events_partitioned", "CREATE TABLE … PARTITION OF")
    assert partition.locks == (analysis.TableLock("AuditEvent", "ACCESS EXCLUSIVE"),)


def test_plans_run_non_transactional_statements_alone():
    for folder in folders():
        steps = plan.build(statements_of(folder.name))
        assert steps, folder.name
        for step in steps:
            if not step.transactional:
                assert len(step.statements) == 1, (folder.name, step.purpose)
    detach = plan.build(statements_of("20230420090000_audit_detach_january_concurrently"))
    assert [(s.transactional, [p.index for p in s.statements]) for s in detach] == [(False, [1]), (True, [2, 3])]
    cic = plan.build(statements_of("20230212100200_add_payments_indexes_concurrently"))
    assert [s.transactional for s in cic] == [False, False]
    assert cic[0].cleanup == ('DROP INDEX CONCURRENTLY IF EXISTS "index_payments_on_invoice_id"',)


# --- the whole folder, in order, on an empty database -------------------------------------------


@dataclass
class CorpusRun:
    url: str
    batches: list[batch_mod.Batch]
    verdicts: dict[str, str] = field(default_factory=dict)  # batch name -> GO / WARN / NO-GO
    preflight_errors: dict[str, str] = field(default_factory=dict)
    results: dict[str, object] = field(default_factory=dict)  # batch name -> ExecutionResult
    summaries: dict[str, str] = field(default_factory=dict)  # batch name -> the run's summary in Markdown
    summary_errors: dict[str, str] = field(default_factory=dict)
    stopped: str = ""  # the first batch whose apply raised, with the message


@pytest.fixture(scope="module")
def corpus_run(server_url: str, tmp_path_factory: pytest.TempPathFactory):
    """Preflight, then apply, every batch of the corpus in order, on a new empty database."""
    name = f"t_corpus_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database.with_database(server_url, name)
    reports = tmp_path_factory.mktemp("corpus-reports")
    try:
        with psycopg.connect(url) as conn:
            conn.execute(PRISMA_MIGRATIONS_DDL)  # what `prisma migrate deploy` creates before the first migration
        run = CorpusRun(url, batch_mod.discover(CORPUS))
        for b in run.batches:
            session = open_session(b.number, database_url=url, migrations_dir=CORPUS, reports_dir=reports)
            try:
                run.verdicts[b.name] = preflight.run(session).verdict.status
            except Exception as exc:  # collected and asserted on by the test
                run.preflight_errors[b.name] = f"{type(exc).__name__}: {exc}"
            try:
                run.results[b.name] = apply.run(session)
            except Exception as exc:  # the next batches depend on this one: stop here
                run.stopped = f"{b.name}: {type(exc).__name__}: {exc}"
                break
            try:
                run.summaries[b.name] = summary.load(session.run.path).markdown
            except Exception as exc:  # collected and asserted on by the test
                run.summary_errors[b.name] = f"{type(exc).__name__}: {exc}"
        yield run
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_every_batch_applies_in_order(corpus_run: CorpusRun):
    assert corpus_run.stopped == ""
    statuses = {name: result.status for name, result in corpus_run.results.items()}
    assert statuses == {b.name: "applied" for b in corpus_run.batches}
    detach = corpus_run.results["20230420090000_audit_detach_january_concurrently"]
    assert [(s.transactional, s.status) for s in detach.steps] == [(False, "committed"), (True, "committed")]
    enum_rewrite = corpus_run.results["20230120110000_remove_refunded_status"]
    assert enum_rewrite.plan == ["1. statements 2-8 in one transaction (BEGIN … COMMIT in the file)"]
    assert {s.index for s in enum_rewrite.statements} == set(range(2, 9))  # BEGIN and COMMIT are not sent


def test_preflight_gives_a_verdict_for_every_batch(corpus_run: CorpusRun):
    assert corpus_run.preflight_errors == {}
    assert set(corpus_run.verdicts) == {b.name for b in corpus_run.batches}
    assert {name: v for name, v in corpus_run.verdicts.items() if v not in (preflight.GO, preflight.WARN)} == {}


def test_every_run_renders_its_summary(corpus_run: CorpusRun):
    assert corpus_run.summary_errors == {}
    assert set(corpus_run.summaries) == {b.name for b in corpus_run.batches}
    enum_rewrite = corpus_run.summaries["20230120110000_remove_refunded_status"]
    assert "ALTER TABLE … ALTER COLUMN TYPE" in enum_rewrite and "Order" in enum_rewrite


def expected_checksums(run: CorpusRun) -> dict[str, str]:
    return {b.name: hashlib.sha256((b.path / "migration.sql").read_bytes()).hexdigest() for b in run.batches}


def test_the_ledger_shows_every_batch_applied_with_its_checksum(corpus_run: CorpusRun):
    with psycopg.connect(corpus_run.url) as conn:
        states = ledger.states(conn)
    assert {
        b.name: (states[b.number].applied, states[b.number].checksum) for b in corpus_run.batches if b.number in states
    } == {name: (True, checksum) for name, checksum in expected_checksums(corpus_run).items()}


# The Rails structure-style batch (20230210083000_billing_structure) starts with pg_dump's header,
# `SELECT pg_catalog.set_config('search_path', '', false)`. The setting outlives the migration's
# transaction on runbook's connection, and the `_prisma_migrations` record made afterwards on that
# same connection looks the table up unqualified: it finds "no table" and records nothing.


def test_prisma_migrations_agrees_with_the_ledger(corpus_run: CorpusRun):
    expected = expected_checksums(corpus_run)
    with psycopg.connect(corpus_run.url) as conn:
        prisma_rows = conn.execute(
            "SELECT migration_name, checksum, finished_at IS NOT NULL, rolled_back_at IS NULL"
            ' FROM "_prisma_migrations" ORDER BY started_at, migration_name'
        ).fetchall()
    not_recorded = {
        name: result.prisma
        for name, result in corpus_run.results.items()
        if result.prisma is None or result.prisma.action != "applied"
    }
    assert not_recorded == {}
    assert {row[0]: row[1] for row in prisma_rows} == expected
    assert len(prisma_rows) == len(expected)
    assert all(finished and live for _, _, finished, live in prisma_rows)


def test_a_migration_that_empties_search_path_is_still_recorded_for_prisma(empty_db: str, tmp_path: Path):
    """The minimal reproduction of the corpus failure above."""
    with psycopg.connect(empty_db) as conn:
        conn.execute(PRISMA_MIGRATIONS_DDL)
    folder = tmp_path / "migrations" / "20240101000000_init"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text(
        "SELECT pg_catalog.set_config('search_path', '', false);\nCREATE TABLE public.t (id int);\n"
    )
    result = apply.run(open_session(1, database_url=empty_db, migrations_dir=folder.parent, reports_dir=tmp_path))
    assert result.status == "applied"
    assert result.prisma.action == "applied"


def test_the_schema_at_the_end(corpus_run: CorpusRun):
    assert corpus_run.stopped == ""
    with psycopg.connect(corpus_run.url) as conn:
        one = lambda query: conn.execute(query).fetchone()[0]  # noqa: E731
        assert one(
            "SELECT array_agg(enumlabel ORDER BY enumsortorder)::text[] FROM pg_enum"
            " WHERE enumtypid = '\"OrderStatus\"'::regtype"
        ) == ["PENDING", "PAID", "FULFILLED", "CANCELLED"]
        assert one(
            "SELECT array_agg(enumlabel ORDER BY enumsortorder)::text[] FROM pg_enum"
            " WHERE enumtypid = 'currency_code'::regtype"
        ) == ["USD", "EUR", "GBP", "CHF"]
        assert one("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0
        assert one("SELECT count(*) FROM pg_constraint WHERE NOT convalidated") == 0
        assert one('SELECT count(*) FROM "LineItem" WHERE "lineTotal" IS NULL') == 0
        assert one("SELECT count(*) FROM invoices WHERE currency = 'CHF'") > 0
        assert one('SELECT count(*) FROM "AuditEventArchive_2023_01"') == 1
        assert one("SELECT count(*) FROM pg_inherits WHERE inhparent = '\"AuditEvent\"'::regclass") == 3
        assert one('SELECT count(*) FROM "ProductCategory"') > 0
        assert one("SELECT to_regclass('\"_CategoryToProduct\"')") is None
        assert one('SELECT count(*) FROM "Product" WHERE "ratingCount" > 0') > 0
        assert one("SELECT reporting.order_total(1)") >= 0
        assert one("SELECT count(*) FROM inventory_stockitem") == 12  # 4 products x 3 depots after the MERGE
        # A literal spanning lines of a CRLF file keeps its CR, as psql and Prisma would store it.
        assert one("SELECT obj_description('\"Category\"'::regclass, 'pg_class')") == (
            "Category tree: one row per node.\r\nSeeded by the migration 20230113090000_seed_categories."
        )


# --- BEGIN / COMMIT written in a migration (Prisma writes them around an enum rewrite) -----------


def plan_of(text: str, strategy: str = plan.DIRECT) -> list[tuple[bool, list[int], str]]:
    return [
        (s.transactional, [p.index for p in s.statements], s.purpose)
        for s in plan.build(analysis.analyze(text), strategy)
    ]


def test_begin_and_commit_in_the_file_are_step_boundaries_not_sent():
    text = (
        "CREATE TABLE a (id int);\nBEGIN;\nCREATE TABLE b (id int);\nCREATE TABLE c (id int);\nCOMMIT;\n"
        "CREATE TABLE d (id int);"
    )
    assert plan_of(text) == [
        (True, [1], "statement 1 in one transaction"),
        (True, [3, 4], "statements 3-4 in one transaction (BEGIN … COMMIT in the file)"),
        (True, [6], "statement 6 in one transaction"),
    ]
    steps = plan.build(analysis.analyze(text))
    assert all(p.kind != "transaction control" for s in steps for p in s.statements)
    assert [p.index for p in plan.single_transaction(steps).statements] == [1, 3, 4, 6]
    # START TRANSACTION / END are the same commands; SAVEPOINT stays inside the step as written.
    assert plan_of("START TRANSACTION;\nSAVEPOINT s;\nSELECT 1;\nRELEASE s;\nEND;") == [
        (True, [2, 3, 4], "statements 2-4 in one transaction (BEGIN … COMMIT in the file)")
    ]
    # A COMMIT without BEGIN (e.g. after ALTER TYPE ... ADD VALUE) commits what precedes it.
    assert [ids for _, ids, _ in plan_of("ALTER TYPE m ADD VALUE 'x';\nCOMMIT;\nUPDATE t SET m = 'x';")] == [[1], [3]]
    assert plan_of("BEGIN;\nCOMMIT;") == []


def test_begin_with_options_becomes_set_transaction():
    steps = plan.build(analysis.analyze("BEGIN ISOLATION LEVEL SERIALIZABLE;\nUPDATE t SET a = 1;\nCOMMIT;"))
    assert [(p.kind, p.sql) for p in steps[0].statements] == [
        ("SET TRANSACTION", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
        ("UPDATE", "UPDATE t SET a = 1"),
    ]
    steps = plan.build(analysis.analyze("SELECT 1;\nCOMMIT;\nSTART TRANSACTION READ WRITE;\nSELECT 2;"))
    assert steps[1].statements[0].sql == "SET TRANSACTION READ WRITE"
    assert [p.kind for p in plan.single_transaction(steps).statements] == ["SELECT", "SELECT"]


@pytest.mark.parametrize("word", ["ROLLBACK", "ABORT", "PREPARE TRANSACTION 'x'", "COMMIT PREPARED 'x'"])
def test_a_migration_that_discards_its_own_transaction_is_refused(word):
    with pytest.raises(BatchError, match=r"^Statement 3 \(line 3\) is .*: a migration that discards"):
        plan.build(analysis.analyze(f"BEGIN;\nCREATE TABLE a (id int);\n{word};"))


def test_commit_in_the_middle_of_a_migration_makes_a_new_enum_value_usable(empty_db: str, tmp_path: Path):
    folder = tmp_path / "migrations" / "20240101000000_mood"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text(
        "CREATE TYPE mood AS ENUM ('sad');\nCREATE TABLE person (m mood);\n"
        "ALTER TYPE mood ADD VALUE 'happy';\nCOMMIT;\nINSERT INTO person VALUES ('happy');\n"
    )
    result = apply.run(open_session(1, database_url=empty_db, migrations_dir=folder.parent, reports_dir=tmp_path))
    assert result.status == "applied"
    assert result.plan == ["1. statements 1-3 in one transaction", "2. statement 5 in one transaction"]
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT m::text FROM person").fetchall() == [("happy",)]
