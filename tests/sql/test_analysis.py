"""Static analysis of migration SQL: lock levels, scans, rewrites, transactionality; no database."""

from __future__ import annotations

import pytest

from runbook_lib.errors import AnalysisError, BatchError
from runbook_lib.sql import locks, parse
from runbook_lib.sql.analysis import StatementAnalysis, TableLock, analyze
from runbook_lib.sql.parse import split_statements

AE = "ACCESS EXCLUSIVE"
SUE = "SHARE UPDATE EXCLUSIVE"
SRE = "SHARE ROW EXCLUSIVE"


def one(sql: str, **kwargs) -> StatementAnalysis:
    (analysis,) = analyze(sql, **kwargs)
    return analysis


def lock_map(analysis: StatementAnalysis) -> dict[str, str]:
    return {lock.table: lock.mode for lock in analysis.locks}


# --- locks -------------------------------------------------------------------------------------


def test_lock_modes_are_ordered_weakest_first():
    assert locks.LOCK_MODES[0] == "ACCESS SHARE"
    assert locks.LOCK_MODES[-1] == AE
    assert len(locks.LOCK_MODES) == 8


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (SUE, "ROW EXCLUSIVE", False),  # VALIDATE CONSTRAINT / CREATE INDEX CONCURRENTLY let writes through
        ("SHARE", "ROW EXCLUSIVE", True),  # CREATE INDEX blocks writes
        ("SHARE", "SHARE", False),
        (SUE, SUE, True),  # self-conflicting
        ("ROW EXCLUSIVE", "ROW EXCLUSIVE", False),
        (SRE, SRE, True),
        ("ACCESS SHARE", "EXCLUSIVE", False),
        ("ACCESS SHARE", AE, True),
        ("ROW SHARE", "EXCLUSIVE", True),
        ("ROW SHARE", "SHARE", False),
        (AE, "ACCESS SHARE", True),
    ],
)
def test_conflicts_spot_checks(a, b, expected):
    assert locks.conflicts(a, b) is expected
    assert locks.conflicts(b, a) is expected


def test_conflict_table_is_symmetric():
    for a in locks.LOCK_MODES:
        for b in locks.LOCK_MODES:
            assert locks.conflicts(a, b) == locks.conflicts(b, a), (a, b)


def test_blocks_reads_and_writes():
    assert locks.blocks_reads(AE)
    assert not locks.blocks_reads("EXCLUSIVE")
    assert locks.blocks_writes("SHARE")
    assert locks.blocks_writes(SRE)
    assert not locks.blocks_writes(SUE)
    assert not locks.blocks_writes("ROW EXCLUSIVE")
    assert locks.blocked_operations(SUE) == ("DDL",)
    assert locks.blocked_operations(AE) == ("reads", "writes", "DDL")


def test_strongest_and_pg_locks_names():
    assert locks.strongest(["ROW EXCLUSIVE", AE, "SHARE"]) == AE
    assert locks.strongest([SUE, "SHARE"]) == "SHARE"
    with pytest.raises(ValueError):
        locks.strongest([])
    assert locks.from_pg_locks("AccessExclusiveLock") == AE
    assert locks.from_pg_locks("ShareUpdateExclusiveLock") == SUE
    assert locks.from_pg_locks("RowExclusiveLock") == "ROW EXCLUSIVE"
    assert locks.from_pg_locks("ShareLock") == "SHARE"
    for mode in locks.LOCK_MODES:
        assert locks.from_pg_locks(locks.to_pg_locks(mode)) == mode
    with pytest.raises(ValueError):
        locks.from_pg_locks("SIReadLock")
    with pytest.raises(ValueError):
        locks.conflicts("SHARE", "NOT A MODE")


# --- splitting -------------------------------------------------------------------------------


def test_split_keeps_dollar_quotes_and_comments_with_semicolons():
    sql = (
        "-- header comment; with a semicolon\n"  # 1
        "\n"  # 2
        'ALTER TABLE "Lead" ALTER COLUMN "customer_id" SET NOT NULL;\n'  # 3
        "/* block; comment; */\n"  # 4
        "CREATE FUNCTION f() RETURNS int AS $body$\n"  # 5
        "BEGIN; SELECT 1; END;\n"  # 6
        "$body$ LANGUAGE sql;\n"  # 7
        "\n\n"  # 8, 9
        "SELECT 'a;b' /* inside; */ , 2;\n"  # 10
        "DO $$ BEGIN PERFORM 1; END $$;"  # 11
    )
    pieces = split_statements(sql)
    assert [(index, line) for index, line, _ in pieces] == [(1, 3), (2, 5), (3, 10), (4, 11)]
    assert pieces[0][2] == 'ALTER TABLE "Lead" ALTER COLUMN "customer_id" SET NOT NULL'
    assert pieces[1][2].startswith("CREATE FUNCTION f()")
    assert "BEGIN; SELECT 1; END;" in pieces[1][2]
    assert pieces[1][2].endswith("LANGUAGE sql")
    assert pieces[2][2] == "SELECT 'a;b' /* inside; */ , 2"
    assert pieces[3][2] == "DO $$ BEGIN PERFORM 1; END $$"
    # analyze sees the same statements at the same places
    assert [(a.index, a.line, a.sql) for a in analyze(sql)] == pieces


def test_split_handles_non_ascii_and_empty_input():
    sql = "COMMENT ON TABLE t IS 'ééé; ü';\nSELECT 1;"
    assert split_statements(sql) == [(1, 1, "COMMENT ON TABLE t IS 'ééé; ü'"), (2, 2, "SELECT 1")]
    assert split_statements("") == []
    assert split_statements("-- only a comment\n") == []
    assert analyze("  \n") == []


def test_syntax_error_names_file_and_line():
    sql = "SELECT 1;\n\nALTER TABLE t\n  ALTR COLUMN a SET NOT NULL;\n"
    with pytest.raises(AnalysisError) as caught:
        analyze(sql, filename="007_tighten/migration.sql")
    error = caught.value
    assert isinstance(error, BatchError)
    assert error.line == 4
    assert error.column == 3
    assert "007_tighten/migration.sql" in str(error)
    assert "line 4" in str(error)
    assert "ALTR" in str(error)


def test_unterminated_statement_points_at_last_line():
    with pytest.raises(AnalysisError) as caught:
        split_statements("SELECT 1;\nCREATE TABLE t (a int\n\n")
    assert caught.value.line == 2
    assert "the SQL" in str(caught.value)


# --- statement kinds -------------------------------------------------------------------------


def test_set_not_null_scans_under_access_exclusive():
    a = one('ALTER TABLE "Lead" ALTER COLUMN "customer_id" SET NOT NULL;')
    assert a.kind == "ALTER TABLE … SET NOT NULL"
    assert a.locks == (TableLock("Lead", AE),)
    assert a.scans and not a.rewrites and a.transactional and a.known
    assert a.blocks_writes and a.blocks_reads
    assert a.strongest_lock == AE
    assert any("verify no NULLs" in note and '"Lead"' in note for note in a.notes)


def test_foreign_key_locks_both_tables_and_scans():
    a = one(
        'ALTER TABLE "Lead" ADD CONSTRAINT "Lead_customer_id_fkey" FOREIGN KEY ("customer_id") '
        'REFERENCES public."Customer"("id") ON DELETE RESTRICT ON UPDATE CASCADE;'
    )
    assert a.kind == "ALTER TABLE … ADD FOREIGN KEY"
    assert lock_map(a) == {"Lead": SRE, "public.Customer": SRE}
    assert a.scans and not a.rewrites
    assert a.blocks_writes and not a.blocks_reads


def test_foreign_key_not_valid_does_not_scan_then_validate_does():
    added, validated = analyze(
        "ALTER TABLE a ADD CONSTRAINT fk FOREIGN KEY (b_id) REFERENCES b(id) NOT VALID;\n"
        "ALTER TABLE a VALIDATE CONSTRAINT fk;"
    )
    assert added.kind == "ALTER TABLE … ADD FOREIGN KEY NOT VALID"
    assert lock_map(added) == {"a": SRE, "b": SRE}
    assert not added.scans
    assert validated.kind == "ALTER TABLE … VALIDATE CONSTRAINT"
    assert lock_map(validated) == {"a": SUE}
    assert validated.scans and not validated.blocks_writes


def test_check_constraint_scans_unless_not_valid():
    checked, unchecked = analyze(
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a IS NOT NULL);\n"
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a IS NOT NULL) NOT VALID;"
    )
    assert lock_map(checked) == {"t": AE} and checked.scans
    assert lock_map(unchecked) == {"t": AE} and not unchecked.scans
    assert unchecked.kind == "ALTER TABLE … ADD CHECK NOT VALID"


def test_not_null_constraint_not_valid_postgresql_18():
    a = one("ALTER TABLE t ADD CONSTRAINT nn NOT NULL customer_id NOT VALID;", server_major=17)
    assert a.kind == "ALTER TABLE … ADD NOT NULL NOT VALID"
    assert not a.scans
    assert any("PostgreSQL 18" in note for note in a.notes)


def test_multiple_subcommands_take_the_strongest_lock_per_table():
    a = one(
        "ALTER TABLE t ALTER COLUMN a SET STATISTICS 500, "
        "ADD CONSTRAINT fk FOREIGN KEY (b) REFERENCES r(id) NOT VALID, "
        "ALTER COLUMN c SET NOT NULL;"
    )
    assert a.kind == "ALTER TABLE … SET STATISTICS, ADD FOREIGN KEY NOT VALID, SET NOT NULL"
    assert lock_map(a) == {"t": AE, "r": SRE}
    assert a.scans

    light = one("ALTER TABLE t ALTER COLUMN a SET STATISTICS 500, SET (fillfactor = 70), CLUSTER ON t_pkey;")
    assert lock_map(light) == {"t": SUE}
    assert not light.blocks_writes


@pytest.mark.parametrize(
    ("sql", "kind", "mode"),
    [
        ("ALTER TABLE t SET (fillfactor = 70, autovacuum_enabled = false)", "ALTER TABLE … SET (...)", SUE),
        ("ALTER TABLE t SET (user_catalog_table = true)", "ALTER TABLE … SET (...)", AE),
        ("ALTER TABLE t SET WITHOUT CLUSTER", "ALTER TABLE … SET WITHOUT CLUSTER", SUE),
        ("ALTER TABLE t ENABLE TRIGGER trg", "ALTER TABLE … ENABLE TRIGGER", SRE),
        ("ALTER TABLE t DISABLE TRIGGER ALL", "ALTER TABLE … DISABLE TRIGGER ALL", SRE),
        ("ALTER TABLE t ALTER COLUMN a DROP NOT NULL", "ALTER TABLE … DROP NOT NULL", AE),
        ("ALTER TABLE t ALTER COLUMN a SET DEFAULT 0", "ALTER TABLE … SET DEFAULT", AE),
        ("ALTER TABLE t DROP COLUMN a", "ALTER TABLE … DROP COLUMN", AE),
        ("ALTER TABLE t DROP CONSTRAINT c", "ALTER TABLE … DROP CONSTRAINT", AE),
        ("ALTER TABLE t OWNER TO someone", "ALTER TABLE … OWNER TO", AE),
        ("ALTER TABLE t RENAME TO u", "ALTER TABLE … RENAME", AE),
        ("ALTER TABLE t RENAME COLUMN a TO b", "ALTER TABLE … RENAME COLUMN", AE),
        ("ALTER TABLE t RENAME CONSTRAINT a TO b", "ALTER TABLE … RENAME CONSTRAINT", AE),
        ("ALTER INDEX i RENAME TO j", "ALTER INDEX … RENAME", SUE),
        ("ALTER TABLE t SET SCHEMA archive", "ALTER TABLE … SET SCHEMA", AE),
        ("CREATE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", "CREATE TRIGGER", SRE),
        ("COMMENT ON TABLE t IS 'x'", "COMMENT ON TABLE", SUE),
        ("TRUNCATE t", "TRUNCATE", AE),
        ("DROP TABLE t", "DROP TABLE", AE),
        ("INSERT INTO t (a) VALUES (1)", "INSERT", "ROW EXCLUSIVE"),
        ("SELECT count(*) FROM t", "SELECT", "ACCESS SHARE"),
        ("SELECT * FROM t FOR UPDATE", "SELECT … FOR UPDATE/SHARE", "ROW SHARE"),
        ("LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE", "LOCK TABLE … IN SHARE ROW EXCLUSIVE MODE", SRE),
        ("LOCK t", f"LOCK TABLE … IN {AE} MODE", AE),
        ("ANALYZE t", "ANALYZE", SUE),
        ("CREATE POLICY p ON t USING (true)", "CREATE POLICY", AE),
        ("CREATE STATISTICS s ON a, b FROM t", "CREATE STATISTICS", SUE),
        ("ALTER TABLE t ATTACH PARTITION t_2024 FOR VALUES IN (2024)", "ALTER TABLE … ATTACH PARTITION", SUE),
    ],
)
def test_lock_levels(sql, kind, mode):
    a = one(sql)
    assert a.kind == kind
    assert a.known
    assert a.locks[0] == TableLock("t" if not sql.startswith("ALTER INDEX") else "i", mode)


def test_comment_on_column_locks_its_table():
    a = one("COMMENT ON COLUMN public.\"Lead\".customer_id IS 'who'")
    assert a.kind == "COMMENT ON COLUMN"
    assert a.locks == (TableLock("public.Lead", SUE),)


def test_attach_partition_also_locks_the_partition():
    a = one("ALTER TABLE t ATTACH PARTITION t_2024 FOR VALUES IN (2024)")
    assert lock_map(a) == {"t": SUE, "t_2024": AE}
    assert a.scans
    older = one("ALTER TABLE t ATTACH PARTITION t_2024 FOR VALUES IN (2024)", server_major=11)
    assert lock_map(older)["t"] == AE


def test_create_index_and_concurrently():
    plain, concurrent, unique = analyze(
        "CREATE INDEX i ON app.t (a);\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS j ON t (b);\n"
        "CREATE UNIQUE INDEX k ON t (c);"
    )
    assert plain.kind == "CREATE INDEX"
    assert plain.locks == (TableLock("app.t", "SHARE"),)
    assert plain.scans and plain.transactional and plain.blocks_writes and not plain.blocks_reads
    assert concurrent.kind == "CREATE INDEX CONCURRENTLY"
    assert concurrent.locks == (TableLock("t", SUE),)
    assert concurrent.scans and not concurrent.transactional and not concurrent.blocks_writes
    assert unique.kind == "CREATE UNIQUE INDEX"


def test_drop_index_records_the_index_name():
    plain, concurrent = analyze("DROP INDEX app.i;\nDROP INDEX CONCURRENTLY IF EXISTS j;")
    assert plain.kind == "DROP INDEX"
    assert plain.locks == (TableLock("app.i", AE),)
    assert plain.transactional
    assert concurrent.kind == "DROP INDEX CONCURRENTLY"
    assert concurrent.locks == (TableLock("j", SUE),)
    assert not concurrent.transactional


def test_reindex():
    table, index, concurrent, schema = analyze(
        "REINDEX TABLE t;\nREINDEX INDEX i;\nREINDEX TABLE CONCURRENTLY t;\nREINDEX SCHEMA app;"
    )
    assert table.locks == (TableLock("t", "SHARE"),) and table.transactional
    assert index.locks == (TableLock("i", AE),)
    assert concurrent.kind == "REINDEX TABLE CONCURRENTLY"
    assert concurrent.locks == (TableLock("t", SUE),) and not concurrent.transactional
    assert schema.locks == () and not schema.transactional


def test_vacuum_and_vacuum_full_and_cluster():
    vacuum, full, cluster = analyze("VACUUM (ANALYZE) t;\nVACUUM FULL t;\nCLUSTER t USING t_pkey;")
    assert vacuum.kind == "VACUUM"
    assert vacuum.locks == (TableLock("t", SUE),)
    assert not vacuum.transactional and not vacuum.rewrites
    assert full.kind == "VACUUM FULL"
    assert full.locks == (TableLock("t", AE),)
    assert full.rewrites and full.scans and not full.transactional
    assert cluster.kind == "CLUSTER"
    assert cluster.locks == (TableLock("t", AE),)
    assert cluster.rewrites and cluster.transactional


def test_update_and_delete_scan_and_read_other_tables():
    update, delete, backfill = analyze(
        "UPDATE t SET a = 1;\n"
        "DELETE FROM t WHERE id = 3;\n"
        "WITH src AS (SELECT id FROM c) UPDATE app.t SET c_id = s.id FROM src s, other o WHERE o.id = t.id;"
    )
    assert update.kind == "UPDATE" and update.locks == (TableLock("t", "ROW EXCLUSIVE"),)
    assert update.scans and not update.blocks_writes
    assert any("without WHERE" in note for note in update.notes)
    assert delete.kind == "DELETE" and delete.scans
    # the CTE's name is not a table; the tables it reads are
    assert lock_map(backfill) == {"app.t": "ROW EXCLUSIVE", "other": "ACCESS SHARE", "c": "ACCESS SHARE"}


def test_alter_column_type_rewrites_conservatively():
    a = one("ALTER TABLE t ALTER COLUMN name TYPE varchar(200);")
    assert a.kind == "ALTER TABLE … ALTER COLUMN TYPE"
    assert a.locks == (TableLock("t", AE),)
    assert a.rewrites and a.scans
    assert any("unless binary coercible" in note for note in a.notes)


def test_add_column_rewrites_only_for_volatile_defaults():
    constant, volatile, stamped, serial, bare_not_null = analyze(
        "ALTER TABLE t ADD COLUMN a int NOT NULL DEFAULT 0;\n"
        "ALTER TABLE t ADD COLUMN b uuid DEFAULT gen_random_uuid();\n"
        "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now();\n"
        "ALTER TABLE t ADD COLUMN d bigserial;\n"
        "ALTER TABLE t ADD COLUMN e int NOT NULL;"
    )
    assert constant.kind == "ALTER TABLE … ADD COLUMN"
    assert not constant.rewrites and not constant.scans
    assert volatile.rewrites
    assert any("gen_random_uuid()" in note for note in volatile.notes)
    assert not stamped.rewrites
    assert serial.rewrites
    assert bare_not_null.scans and not bare_not_null.rewrites
    # before PostgreSQL 11 every default was written into each row
    assert one("ALTER TABLE t ADD COLUMN a int DEFAULT 0;", server_major=10).rewrites


def test_set_logged_and_tablespace_rewrite():
    assert one("ALTER TABLE t SET LOGGED").rewrites
    assert one("ALTER TABLE t SET UNLOGGED").rewrites
    assert one("ALTER TABLE t SET TABLESPACE fast").rewrites


def test_create_table_locks_only_referenced_tables():
    a = one(
        'CREATE TABLE invoice (id bigint PRIMARY KEY, customer_id bigint REFERENCES "Customer"(id), '
        "job_id bigint, FOREIGN KEY (job_id) REFERENCES app.job (id));"
    )
    assert a.kind == "CREATE TABLE"
    assert lock_map(a) == {"Customer": SRE, "app.job": SRE}
    assert not a.scans
    assert one("CREATE TABLE plain (id bigint)").locks == ()
    partition = one("CREATE TABLE t_2025 PARTITION OF t FOR VALUES IN (2025)")
    assert partition.kind == "CREATE TABLE … PARTITION OF"
    assert lock_map(partition) == {"t": AE}


def test_types_functions_extensions_schemas():
    create_type, add_value, function, extension, schema, do = analyze(
        "CREATE TYPE mood AS ENUM ('sad', 'ok');\n"
        "ALTER TYPE mood ADD VALUE 'happy';\n"
        "CREATE OR REPLACE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END; $$;\n"
        "CREATE EXTENSION IF NOT EXISTS pgcrypto;\n"
        "CREATE SCHEMA app;\n"
        "DO $$ BEGIN UPDATE t SET a = 1; END $$;"
    )
    assert create_type.kind == "CREATE TYPE" and create_type.locks == () and create_type.known
    assert add_value.kind == "ALTER TYPE … ADD VALUE" and add_value.transactional
    assert function.kind == "CREATE OR REPLACE FUNCTION" and function.known and function.locks == ()
    assert extension.kind == "CREATE EXTENSION" and extension.known
    assert schema.kind == "CREATE SCHEMA" and schema.known
    assert do.kind == "unknown (DoStmt)" and not do.known
    assert not one("ALTER TYPE mood ADD VALUE 'happy'", server_major=11).transactional


def test_transaction_control_in_the_file_is_flagged():
    begin, alter, commit = analyze("BEGIN;\nALTER TABLE t DROP COLUMN a;\nCOMMIT;")
    assert begin.kind == commit.kind == "transaction control"
    assert not begin.transactional and not commit.transactional
    assert begin.notes and commit.notes
    assert alter.transactional


def test_non_transactional_commands():
    kinds = {a.kind: a.transactional for a in analyze("CREATE DATABASE x;\nALTER SYSTEM SET work_mem = '64MB';")}
    assert kinds == {"CREATE DATABASE": False, "ALTER SYSTEM": False}


def test_unknown_statement_is_kept_with_access_exclusive_on_its_tables():
    statements = analyze("ALTER TABLE a ADD COLUMN x int;\nCREATE PUBLICATION pub FOR TABLE app.a, b;\nSELECT 1;")
    assert [a.index for a in statements] == [1, 2, 3]
    unknown = statements[1]
    assert unknown.kind == "unknown (CreatePublicationStmt)"
    assert not unknown.known
    assert lock_map(unknown) == {"app.a": AE, "b": AE}
    assert unknown.notes


def test_to_dict_is_json_ready():
    import json

    record = one('ALTER TABLE "Lead" ALTER COLUMN customer_id SET NOT NULL').to_dict()
    assert json.loads(json.dumps(record))["locks"] == [{"table": "Lead", "mode": AE}]
    assert record["strongest_lock"] == AE and record["blocks_writes"] is True


def test_every_analysis_lock_mode_is_a_known_mode():
    sql = ";\n".join(
        [
            "ALTER TABLE t ADD COLUMN a int",
            "CREATE INDEX i ON t (a)",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
            "GRANT SELECT ON t TO someone",
            "CREATE VIEW v AS SELECT * FROM t",
            "COPY t FROM '/tmp/x.csv'",
        ]
    )
    for analysis in analyze(sql):
        assert analysis.known, analysis.kind
        for lock in analysis.locks:
            assert lock.mode in locks.LOCK_MODES


def test_a_file_is_parsed_once_whatever_name_it_is_read_under_and_errors_still_name_it():
    """Preflight reads a migration as its folder's file, the derived tests as "migration.sql": one parse (a
    Flyway file of a megabyte of INSERTs was parsed twice), the same trees; a syntax error names each caller's file."""
    sql = f"CREATE TABLE once_{id(object())} (id int);\nSELECT 1;\n"
    first = parse.split(sql, filename="20240101_a/migration.sql")
    hits = parse._split.cache_info().hits
    again = parse.split(sql, filename="migration.sql")
    assert parse._split.cache_info().hits == hits + 1
    assert [s.raw for s in again] == [s.raw for s in first] and again[0].raw is first[0].raw
    broken = "SELECT 1;\nCREATE TABLE (;\n"
    for name in ("V2__b.sql", "migration.sql"):
        with pytest.raises(AnalysisError) as caught:
            parse.split(broken, filename=name)
        assert str(caught.value).startswith(name) and "line 2" in str(caught.value)
