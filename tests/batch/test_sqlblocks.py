"""SQL blocks with expectations: parsing (file and line in every error) and judging against a real server."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from runbook_lib.batch import blocks as sqlblocks
from runbook_lib.batch.blocks import Expectation, SqlBlock
from runbook_lib.errors import BatchError


def parse_error(sql: str, filename: str = "validation.sql") -> str:
    with pytest.raises(BatchError) as info:
        sqlblocks.parse(sql, filename=filename)
    return str(info.value)


# --- parsing -------------------------------------------------------------------------------------


def test_blocks_keep_name_expectation_sql_and_line():
    sql = (
        "-- name: Leads with NULL customer_id\n"
        "-- expect: 0\n"
        'SELECT count(*) FROM "Lead" WHERE customer_id IS NULL;\n'
        "\n"
        "-- name: Reject Lead without customer_id\n"
        "-- expect: error 23502\n"
        "INSERT INTO \"Lead\" (id) VALUES ('x');\n"
    )
    first, second = sqlblocks.parse(sql, filename="preflight.sql")
    assert (first.name, str(first.expect), first.line, first.source) == (
        "Leads with NULL customer_id",
        "0",
        3,
        "preflight.sql line 3",
    )
    assert first.sql == 'SELECT count(*) FROM "Lead" WHERE customer_id IS NULL'
    assert (second.name, second.expect, second.line) == (
        "Reject Lead without customer_id",
        Expectation("error", "23502"),
        7,
    )


def test_block_without_expect_names_file_and_line():
    message = parse_error("-- name: ok one\n-- expect: ok\nSELECT 1;\n\n-- name: forgotten\nSELECT 2;\n")
    assert "validation.sql line 6" in message
    assert "'forgotten'" in message
    assert "has no '-- expect:' line" in message
    assert "rows <n>" in message  # says what may be written


def test_a_new_name_resets_the_expectation_of_the_previous_header():
    # The expect line belongs to "first"; "second" has none, so its statement has no expectation.
    message = parse_error("-- name: first\n-- expect: ok\n-- name: second\nSELECT 1;\n")
    assert "'second'" in message and "line 4" in message


def test_statement_without_any_header_is_refused():
    message = parse_error("SELECT 1;\n", filename="preflight.sql")
    assert "preflight.sql line 1" in message and "the statement has no '-- expect:'" in message


def test_unknown_condition_name():
    message = parse_error("-- name: typo\n-- expect: error not_nul_violation\nSELECT 1;\n")
    assert "validation.sql line 3" in message
    assert "'not_nul_violation'" in message
    assert "neither a SQLSTATE nor a PostgreSQL condition name" in message


def test_rows_needs_a_count():
    message = parse_error("-- name: count\n-- expect: rows x\nSELECT 1;\n")
    assert "validation.sql line 3" in message
    assert "'rows' needs a count" in message


def test_syntax_error_names_file_and_line():
    message = parse_error("-- name: a\n-- expect: ok\nSELECT 1;\n\n-- name: b\n-- expect: ok\nSELEC 2;\n")
    assert "validation.sql line 7" in message
    assert "syntax error" in message


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("error 23502", "error", "23502"),
        ("error not_null_violation", "error", "23502"),
        ("ERROR Foreign_Key_Violation", "error", "23503"),
        ("error", "error", ""),
        ("ok", "ok", ""),
        ("OK", "ok", ""),
        ("empty", "empty", ""),
        ("rows 3", "rows", "3"),
        ("0", "value", "0"),
        ("'NO'", "value", "NO"),
        ('"restrict"', "value", "restrict"),
    ],
)
def test_expectation_forms(text, kind, value):
    assert Expectation.parse(text, "x") == Expectation(kind, value)


def test_dollar_quoted_body_and_comments_with_semicolons_are_not_split():
    sql = (
        "-- name: Create a function; its body has semicolons\n"
        "-- expect: ok\n"
        "CREATE FUNCTION pg_temp.two() RETURNS int LANGUAGE plpgsql AS $body$\n"
        "BEGIN\n"
        "    PERFORM 1; -- a comment; inside the body\n"
        "    RETURN 2;\n"
        "END\n"
        "$body$;\n"
        "\n"
        "-- a stray comment; with a semicolon\n"
        "/* and a block comment; also with one */\n"
        "-- name: Call it\n"
        "-- expect: 2\n"
        "SELECT pg_temp.two() /* ; */ AS v; -- trailing; comment\n"
        "-- name: A string with a semicolon\n"
        "-- expect: a;b\n"
        "SELECT 'a;b';\n"
    )
    blocks = sqlblocks.parse(sql, filename="validation.sql")
    assert [(b.name, b.line, str(b.expect)) for b in blocks] == [
        ("Create a function; its body has semicolons", 3, "ok"),
        ("Call it", 14, "2"),
        ("A string with a semicolon", 17, "a;b"),
    ]
    assert blocks[0].sql.endswith("$body$")
    assert "RETURN 2;" in blocks[0].sql


def test_load_reads_the_file_and_names_it(tmp_path):
    path = tmp_path / "validation.sql"
    path.write_text("-- name: a\n-- expect: ok\nSELECT 1;\n-- name: b\nSELECT 2;\n", encoding="utf-8")
    with pytest.raises(BatchError, match=r"^validation\.sql line 5: block 'b' has no"):
        sqlblocks.load(path)


# --- running against a real database -------------------------------------------------------------


@pytest.fixture
def conn(empty_db: str) -> Iterator[psycopg.Connection]:
    """A connection inside a transaction that is always rolled back, with a table to test against."""
    with psycopg.connect(empty_db) as connection, connection.transaction(force_rollback=True):
        connection.execute(
            "CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL,"
            " price numeric(10, 2), active boolean NOT NULL DEFAULT true)"
        )
        connection.execute("INSERT INTO item VALUES (1, 'one', 1.50, true), (2, 'two', 2.00, false)")
        yield connection


def block(sql: str, expect: str, name: str = "test") -> SqlBlock:
    return SqlBlock(name=name, sql=sql, expect=Expectation.parse(expect, "test"), source="test.sql line 1")


def check(conn: psycopg.Connection, sql: str, expect: str) -> sqlblocks.BlockResult:
    return sqlblocks.run(conn, block(sql, expect))


def test_expected_error_passes_by_sqlstate_condition_name_or_any(conn):
    for expect in ("error 23502", "error not_null_violation", "error"):
        result = check(conn, "INSERT INTO item (id, name) VALUES (3, NULL)", expect)
        assert result.passed and result.status == "PASS", expect
        assert result.sqlstate == "23502"
        assert 'null value in column "name"' in result.message
        assert result.observed.startswith("error 23502: ")


def test_other_error_than_expected_fails(conn):
    result = check(conn, "INSERT INTO item (id, name) VALUES (1, 'dup')", "error not_null_violation")
    assert not result.passed and result.status == "FAIL"
    assert result.sqlstate == "23505"
    assert result.expectation == "error 23502"
    assert "duplicate key" in result.observed


def test_expected_error_that_does_not_happen_fails(conn):
    result = check(conn, "INSERT INTO item (id, name) VALUES (3, 'three')", "error 23502")
    assert not result.passed
    assert result.observed == "succeeded, but an error 23502 was expected (ok (1 row affected))"


def test_an_expected_error_that_does_not_happen_is_undone(conn):
    # Otherwise the row it wrote would make the blocks after it fail for a reason that is not theirs.
    assert not check(conn, "UPDATE item SET name = 'changed' WHERE id = 1", "error 23502").passed
    assert check(conn, "SELECT name FROM item WHERE id = 1", "one").passed


@pytest.mark.versions
def test_error_expectation_with_alternatives(conn, server_major):
    assert Expectation.parse("error 23001|foreign_key_violation", "x") == Expectation("error", "23001|23503")
    conn.execute("CREATE TABLE child (item_id int REFERENCES item (id) ON DELETE RESTRICT)")
    conn.execute("INSERT INTO child VALUES (1)")
    result = check(conn, "DELETE FROM item WHERE id = 1", "error 23001|23503")
    # PostgreSQL 18 reports ON DELETE RESTRICT as restrict_violation, older servers as foreign_key_violation.
    restrict = "23001" if server_major >= 18 else "23503"
    assert result.passed and result.sqlstate == restrict
    other = "23503" if restrict == "23001" else "23001"
    assert not check(conn, "DELETE FROM item WHERE id = 1", f"error {other} or 23505").passed


def test_ok_passes_on_success_and_fails_on_error(conn):
    passed = check(conn, "UPDATE item SET name = upper(name)", "ok")
    assert passed.passed and passed.observed == "ok (2 rows affected)"
    failed = check(conn, "UPDATE item SET name = NULL", "ok")
    assert not failed.passed
    assert failed.sqlstate == "23502"


SCALAR_CASES = [
    ("SELECT count(*) FROM item", "2", True, "2"),
    ("SELECT count(*) FROM item", "3", False, "2"),
    ("SELECT price FROM item WHERE id = 1", "1.5", True, "1.50"),
    ("SELECT price FROM item WHERE id = 1", "1.50", True, "1.50"),
    ("SELECT price FROM item WHERE id = 2", "2", True, "2"),
    ("SELECT price FROM item WHERE id = 1", "1.51", False, "1.50"),
    ("SELECT 2.5::float8", "2.50", True, "2.5"),
    ("SELECT name FROM item WHERE id = 1", "one", True, "one"),
    ("SELECT name FROM item WHERE id = 1", "'one'", True, "one"),
    ("SELECT name FROM item WHERE id = 1", "ONE", False, "one"),
    ("SELECT active FROM item WHERE id = 1", "true", True, "true"),
    ("SELECT active FROM item WHERE id = 1", "TRUE", True, "true"),
    ("SELECT active FROM item WHERE id = 2", "true", False, "false"),
    ("SELECT price FROM item WHERE false", "0", False, ""),
    ("SELECT NULL::text", "null", True, "null"),
    (
        "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'item' AND column_name = 'name'",
        "NO",
        True,
        "NO",
    ),
]


def test_scalar_value(conn):
    # One database for the whole table of cases (a database per case would cost a quarter second each).
    wrong = []
    for sql, expect, passed, value in SCALAR_CASES:
        result = check(conn, sql, expect)
        if (result.passed, result.value) != (passed, value):
            wrong.append(
                f"{sql!r} expect {expect!r}: passed={result.passed} value={result.value!r} ({result.observed})"
            )
    assert not wrong, "\n".join(wrong)


ROWS_CASES = [
    ("SELECT * FROM item", "rows 2", True),
    ("SELECT * FROM item", "rows 1", False),
    ("SELECT * FROM item WHERE false", "rows 0", True),
    ("UPDATE item SET name = name WHERE id = 1", "rows 1", True),
    ("DELETE FROM item WHERE id = 99", "rows 1", False),
    ("SELECT * FROM item WHERE id > 5", "empty", True),
    ("SELECT * FROM item", "empty", False),
    ("DELETE FROM item WHERE id = 99", "empty", True),
]


def test_rows_and_empty(conn):
    wrong = []
    for sql, expect, passed in ROWS_CASES:
        result = check(conn, sql, expect)
        if result.passed is not passed:
            wrong.append(f"{sql!r} expect {expect!r}: passed={result.passed} ({result.observed})")
    assert not wrong, "\n".join(wrong)


def test_a_failing_block_does_not_abort_the_ones_after_it(conn):
    blocks = sqlblocks.parse(
        "-- name: Insert three\n-- expect: ok\nINSERT INTO item (id, name) VALUES (3, 'three');\n"
        "-- name: Breaks the constraint\n-- expect: 0\nINSERT INTO item (id, name) VALUES (4, NULL);\n"
        "-- name: Divides by zero\n-- expect: error 22012\nSELECT 1 / 0;\n"
        "-- name: Still counts, and sees the first insert\n-- expect: 3\nSELECT count(*) FROM item;\n",
        filename="validation.sql",
    )
    results = [sqlblocks.run(conn, b) for b in blocks]

    assert [r.status for r in results] == ["PASS", "FAIL", "PASS", "PASS"]
    assert results[1].sqlstate == "23502"
    assert results[1].source == "validation.sql line 6"
    # The outer transaction is usable, and the failed block left nothing behind.
    assert conn.execute("SELECT array_agg(id ORDER BY id) FROM item").fetchone()[0] == [1, 2, 3]
    assert results[3].duration_ms >= 0


def test_block_effects_stay_inside_the_callers_transaction(empty_db):
    with psycopg.connect(empty_db) as conn:
        with conn.transaction(force_rollback=True):
            conn.execute("CREATE TABLE t (id int)")
            assert sqlblocks.run(conn, block("INSERT INTO t VALUES (1)", "ok")).passed
            assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1
        assert conn.execute("SELECT to_regclass('t')").fetchone()[0] is None
