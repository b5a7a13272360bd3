"""Flyway's layout: the folder read in Flyway's order with its placeholders and checksums, and its history table
written and read as Flyway writes and reads it, on a real server.

Expected checksums are CRC-32 values that can be checked without runbook: the CRC-32 check value of "123456789"
(0xCBF43926) and of "The quick brown fox jumps over the lazy dog" (0x414FA339), both the IEEE CRC that
java.util.zip.CRC32 computes, and values computed by java.util.zip.CRC32 over java.io.BufferedReader.readLine()'s
lines with the first line's BOM dropped, which is Flyway's ChecksumCalculator.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from runbook_lib.errors import BatchError
from runbook_lib.layouts import flyway
from runbook_lib.layouts.base import LayoutSettings

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "ohdsi-webapi" / "migrations"
CRC_CHECK = 0xCBF43926 - (1 << 32)  # CRC-32 of b"123456789" as a Java int: -873187034


def write(folder: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    return folder


def rows(conn: psycopg.Connection, table: str = "public.flyway_schema_history") -> list[tuple]:
    return conn.execute(
        f"SELECT installed_rank, version, description, type, script, checksum, installed_by, "
        f"execution_time, success FROM {table} ORDER BY installed_rank"
    ).fetchall()


# --- the folder ------------------------------------------------------------------------------------------


def test_versions_in_flyways_order_then_repeatables(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "V1.0.0.10__ten.sql": "SELECT 10;",
            "V1.0.0.3.1__three_one.sql": "SELECT 31;",
            "V1.0.0.3__three.sql": "SELECT 3;",
            "V1_1__underscored_version.sql": "SELECT 11;",
            "V1.0.0.2__two.sql": "SELECT 2;",
            "R__z_view.sql": "SELECT 'z';",
            "R__a_view.sql": "SELECT 'a';",
            "V2.sql": "SELECT 'no description';",
        },
    )
    found = flyway.read(tmp_path, LayoutSettings())
    assert [(m.version, m.kind) for m in found] == [
        ("1.0.0.2", "versioned"),
        ("1.0.0.3", "versioned"),
        ("1.0.0.3.1", "versioned"),
        ("1.0.0.10", "versioned"),
        ("1.1", "versioned"),
        ("2", "versioned"),
        ("", "repeatable"),
        ("", "repeatable"),
    ]
    assert [m.name for m in found][-2:] == ["R__a_view", "R__z_view"]
    three_one = found[2]
    assert (three_one.name, three_one.description, three_one.script) == (
        "V1.0.0.3.1__three_one",
        "three one",
        "V1.0.0.3.1__three_one.sql",
    )
    assert found[5].description == ""  # V2.sql: Flyway's parser takes a version with no separator
    assert flyway.version_key("1.0") == flyway.version_key("1") < flyway.version_key("1.0.0.3.1")


def test_two_scripts_of_one_version_are_refused(tmp_path: Path) -> None:
    write(tmp_path, {"V1__first.sql": "SELECT 1;", "V1.0__second.sql": "SELECT 2;"})
    with pytest.raises(BatchError) as refused:
        flyway.read(tmp_path, LayoutSettings())
    message = str(refused.value)
    assert "V1__first.sql" in message and "V1.0__second.sql" in message
    assert "Found more than one migration with version" in message and message.endswith("new version.")


def test_two_repeatables_of_one_description_are_refused(tmp_path: Path) -> None:
    write(tmp_path, {"R__my_view.sql": "SELECT 1;", "sub/R__my view.sql": "SELECT 2;"})
    with pytest.raises(BatchError, match="two repeatable migrations of one description"):
        flyway.read(tmp_path, LayoutSettings())


def test_names_flyway_would_pass_over_are_ignored_and_subfolders_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "V1__one.sql": "SELECT 1;",
            "notes.sql": "x",
            "V1.a__bad_version.sql": "x",
            "Rx__versioned_repeatable.sql": "x",
            "beforeMigrate.sql": "x",
            "V__no_version.sql": "x",
            "V3__not_sql.txt": "x",
            "sub/deeper/V2__nested.sql": "SELECT 2;",
            "U1__undo_one.sql": "DROP TABLE x;",
            "rollback/V9__would_be_a_migration.sql": "SELECT 9;",
        },
    )
    settings = LayoutSettings(rollback_dir=tmp_path / "rollback")
    found = flyway.read(tmp_path, settings)
    assert [(m.version, m.script) for m in found] == [("1", "V1__one.sql"), ("2", "sub/deeper/V2__nested.sql")]
    assert found[0].down == tmp_path / "U1__undo_one.sql" and found[0].undo_script == "U1__undo_one.sql"
    assert found[1].down is None
    assert flyway.evidence(tmp_path) == 2  # V1__one.sql and U1__undo_one.sql, not the subfolders
    assert [m.version for m in flyway.read(tmp_path, LayoutSettings())][-1] == "9"  # no rollback_dir: scanned


def test_placeholders_replaced_checksum_of_the_file_as_stored(tmp_path: Path) -> None:
    text = (
        "CREATE TABLE ${app}.t (id int); -- in ${flyway:table}\r\n"
        "COMMENT ON TABLE ${app}.t IS '${flyway:filename} ${flyway:defaultSchema} ${flyway:schemas}';\r\n"
        "SELECT $${app}$$;\n"
    )
    write(tmp_path, {"V1__t.sql": text})
    settings = LayoutSettings(placeholders={"app": "sales"}, schemas=("sales", "audit"), table="history")
    (found,) = flyway.read(tmp_path, settings)
    assert found.sql == (
        "CREATE TABLE sales.t (id int); -- in history\r\n"
        "COMMENT ON TABLE sales.t IS 'V1__t.sql sales sales,audit';\r\n"
        "SELECT $${app}$$;\n"
    )  # PlaceholderReplacingReader passes a `$` on with the next character
    other = flyway.read(tmp_path, replace(settings, placeholders={"app": "other"}))[0]
    assert found.checksum == other.checksum == str(flyway.checksum(text.encode()))


def test_an_unresolved_placeholder_is_refused_in_one_sentence(tmp_path: Path) -> None:
    write(tmp_path, {"V1__t.sql": "CREATE TABLE ${ohdsiSchema}.t (id int);"})
    with pytest.raises(BatchError) as refused:
        flyway.read(tmp_path, LayoutSettings())
    assert str(refused.value) == (
        f"{tmp_path / 'V1__t.sql'} uses the placeholder ${{ohdsiSchema}}, which has no value; set it in runbook.toml "
        'under [flyway] placeholders (ohdsiSchema = "...").'
    )
    write(tmp_path, {"V1__t.sql": "SET search_path = ${flyway:defaultSchema};"})
    with pytest.raises(BatchError, match=r"set schemas under \[flyway\]"):
        flyway.read(tmp_path, LayoutSettings())


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"123456789", CRC_CHECK),
        (b"1234\n56789\n", CRC_CHECK),  # line ends are not counted
        (b"\xef\xbb\xbf1234\r\n56789\r\n", CRC_CHECK),  # nor CRLF, nor the BOM on the first line
        (b"1234\r56789", CRC_CHECK),  # a lone CR ends a line for BufferedReader.readLine
        (b"The quick brown fox jumps over the lazy dog", 0x414FA339),
        (b"a\n\xef\xbb\xbfb", -444179588),  # a BOM further in is content (java.util.zip.CRC32 over readLine's lines)
        (b"caf\xc3\xa9 \xe2\x82\xac\r\n\xf0\x9f\x98\x80\n", -1011124881),  # UTF-8 re-encoded per line (same)
        (b"", 0),
    ],
)
def test_checksum_is_flyways(data: bytes, expected: int) -> None:
    assert flyway.checksum(data) == expected


def test_read_records_the_checksum_of_the_file_as_stored(tmp_path: Path) -> None:
    write(tmp_path, {"V1__crlf.sql": b"\xef\xbb\xbf1234\r\n56789\r\n", "V2__lf.sql": b"1234\n56789\n"})
    crlf, lf = flyway.read(tmp_path, LayoutSettings())
    assert crlf.checksum == lf.checksum == str(CRC_CHECK)
    assert crlf.sql == "1234\r\n56789\r\n"  # the BOM is not sent; the line ends are


# --- the corpus --------------------------------------------------------------------------------------------


def test_the_ohdsi_corpus_reads_as_flyway_reads_it() -> None:
    settings = LayoutSettings(placeholders={"ohdsiSchema": "webapi"}, rollback_dir=CORPUS / "rollback")
    found = flyway.read(CORPUS, settings)
    assert len(found) == 196 and all(m.kind == "versioned" for m in found)
    assert flyway.evidence(CORPUS) == 196
    order = [m.version for m in found]
    assert order[:8] == ["1.0.0.1", "1.0.0.2", "1.0.0.3", "1.0.0.3.1", "1.0.0.3.2", "1.0.0.4", "1.0.0.4.1", "1.0.0.4.2"]
    assert order.index("1.0.0.9") < order.index("1.0.0.9.1") < order.index("1.0.1.0") < order.index("1.0.10.0")
    assert sorted(order, key=flyway.version_key) == order
    used = [m for m in found if "${ohdsiSchema}" in m.path.read_text(encoding="utf-8")]
    assert len(used) == 188
    assert all("${" not in m.sql and "webapi." in m.sql for m in used)
    sources = next(m for m in found if m.version == "1.0.0.7.0")
    assert (sources.name, sources.description) == ("V1.0.0.7.0__sources.sql", "sources.sql")
    downs = {m.version: m.down.name for m in found if m.down is not None}
    assert downs == {
        "1.0.0.1": "1.0.0.1__schema-drop_spring_batch.sql",
        "1.0.0.2": "1.0.0.2__schema-drop_jpa.sql",
        "1.0.0.9": "1.0.0.9__schema-drop_shiro.sql",
    }
    assert found[0].checksum == "1751010277"  # java.util.zip.CRC32 over the file's readLine lines


def test_the_ohdsi_corpus_without_its_placeholder_is_refused() -> None:
    with pytest.raises(BatchError) as refused:
        flyway.read(CORPUS, LayoutSettings())
    assert str(refused.value) == (
        f"{CORPUS / 'V1.0.0.1__schema-create_spring_batch.sql'} uses the placeholder ${{ohdsiSchema}}, which has no "
        'value; set it in runbook.toml under [flyway] placeholders (ohdsiSchema = "...").'
    )


# --- the history table -------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write(
        tmp_path / "migrations",
        {
            "V1__create_t.sql": "CREATE TABLE t (id int);\n",
            "U1__drop_t.sql": "DROP TABLE t;\n",
            "V1.1__add_column.sql": "ALTER TABLE t ADD COLUMN note text;\n",
            "R__t_view.sql": "CREATE OR REPLACE VIEW v AS SELECT * FROM t;\n",
        },
    )


def test_prepare_then_record_then_read_round_trip(empty_db: str, folder: Path) -> None:
    settings = LayoutSettings(schemas=("app", "extra"))
    found = flyway.read(folder, settings)
    history = flyway.History(settings)
    assert history.label == "Flyway's flyway_schema_history"
    with psycopg.connect(empty_db) as conn:
        user = conn.execute("SELECT current_user").fetchone()[0]
        assert history.read(conn, found).exists is False
        assert "<< Flyway Schema Creation >>" in history.prepare(conn)
        assert history.prepare(conn) == ""  # the table is there: Flyway creates schemas only before it
        v1, v11, view = found
        history.record_applied(conn, v1, found, execution_ms=12)
        history.record_applied(conn, v11, found, installed_by="deployer", execution_ms=3)
        history.record_applied(conn, view, found)
        assert rows(conn, "app.flyway_schema_history") == [
            (0, None, "<< Flyway Schema Creation >>", "SCHEMA", '"app","extra"', None, user, 0, True),
            (1, "1", "create t", "SQL", "V1__create_t.sql", int(v1.checksum), user, 12, True),
            (2, "1.1", "add column", "SQL", "V1.1__add_column.sql", int(v11.checksum), "deployer", 3, True),
            (3, None, "t view", "SQL", "R__t_view.sql", int(view.checksum), user, 0, True),
        ]
        state = history.read(conn, found)
        assert state.exists and state.blocked == "" and state.last == "1.1"
        assert {k: (r.checksum, r.applied_by) for k, r in state.applied.items()} == {
            "1": (v1.checksum, user),
            "1.1": (v11.checksum, "deployer"),
            "R__t_view": (view.checksum, user),
        }
        conn.rollback()  # nothing committed: everything was in the caller's transaction
        assert conn.execute("SELECT to_regnamespace('app')").fetchone()[0] is None


def test_the_table_is_flyways(empty_db: str, folder: Path) -> None:
    settings = LayoutSettings(table="schema_history")
    found = flyway.read(folder, settings)
    with psycopg.connect(empty_db) as conn:
        assert flyway.History(settings).prepare(conn) == ""  # no schemas configured: nothing to create
        flyway.History(settings).record_applied(conn, found[0], found)
        columns = conn.execute(
            "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_name = 'schema_history' ORDER BY ordinal_position"
        ).fetchall()
        assert columns == [
            ("installed_rank", "integer", None, "NO", None),
            ("version", "character varying", 50, "YES", None),
            ("description", "character varying", 200, "NO", None),
            ("type", "character varying", 20, "NO", None),
            ("script", "character varying", 1000, "NO", None),
            ("checksum", "integer", None, "YES", None),
            ("installed_by", "character varying", 100, "NO", None),
            ("installed_on", "timestamp without time zone", None, "NO", "now()"),
            ("execution_time", "integer", None, "NO", None),
            ("success", "boolean", None, "NO", None),
        ]
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'schema_history' ORDER BY indexname"
        ).fetchall()
        assert [(name, definition.split(" USING ")[1]) for name, definition in indexes] == [
            ("schema_history_pk", "btree (installed_rank)"),
            ("schema_history_s_idx", "btree (success)"),
        ]
        assert (
            conn.execute(
                "SELECT conname FROM pg_constraint WHERE contype = 'p' AND conrelid = 'public.schema_history'::regclass"
            ).fetchone()[0]
            == "schema_history_pk"
        )
        assert rows(conn, "public.schema_history")[0][:5] == (1, "1", "create t", "SQL", "V1__create_t.sql")


def test_a_failed_row_blocks_with_one_sentence(empty_db: str, folder: Path) -> None:
    settings = LayoutSettings()
    found = flyway.read(folder, settings)
    history = flyway.History(settings)
    with psycopg.connect(empty_db) as conn:
        history.record_applied(conn, found[0], found)
        history.record_failed(conn, found[1], found, execution_ms=40)
        assert rows(conn)[1][-1] is False
        state = history.read(conn, found)
        assert state.blocked == (
            "Flyway's flyway_schema_history has a failed migration 1.1 (V1.1__add_column.sql, success = false); "
            "fix the database by hand, then run `flyway repair` (which removes the failed row) and deploy again."
        )
        assert set(state.applied) == {"1"} and state.last == "1"
        conn.execute("DELETE FROM flyway_schema_history WHERE NOT success")  # what `flyway repair` does
        assert history.read(conn, found).blocked == ""


def test_undo_writes_flyways_undo_row_and_the_version_is_pending_again(empty_db: str, folder: Path) -> None:
    settings = LayoutSettings()
    found = flyway.read(folder, settings)
    history = flyway.History(settings)
    with psycopg.connect(empty_db) as conn:
        history.record_applied(conn, found[0], found)
        history.record_rolled_back(conn, found[0], found)
        undo = rows(conn)[1]
        assert undo[:6] == (
            2,
            "1",
            "drop t",
            "UNDO_SQL",
            "U1__drop_t.sql",
            flyway.checksum((folder / "U1__drop_t.sql").read_bytes()),
        )
        state = history.read(conn, found)
        assert state.applied == {} and state.last is None
        history.record_applied(conn, found[0], found)  # `flyway migrate` runs it again
        assert set(history.read(conn, found).applied) == {"1"}
        with pytest.raises(BatchError, match="has no undo script"):
            history.record_rolled_back(conn, found[1], found)


def test_a_baseline_row_counts_the_versions_up_to_it(empty_db: str, folder: Path) -> None:
    settings = LayoutSettings()
    found = flyway.read(folder, settings)
    with psycopg.connect(empty_db) as conn:
        flyway.History(settings).record_applied(conn, found[2], found)  # creates the table
        conn.execute(
            "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, "
            "checksum, installed_by, execution_time, success) VALUES (2, '1', '<< Flyway Baseline >>', "
            "'BASELINE', '<< Flyway Baseline >>', NULL, 'me', 0, true)"
        )
        state = flyway.History(settings).read(conn, found)
        assert set(state.applied) == {"1", "R__t_view"} and state.applied["1"].checksum is None
        assert state.last == "1"


def test_lock_is_flyways_advisory_lock(empty_db: str) -> None:
    settings = LayoutSettings()
    # String.hashCode of '"public"."flyway_schema_history"', computed as Java does: sum of s[i]*31^(n-1-i) mod 2^32
    quoted = '"public"."flyway_schema_history"'
    java = sum(ord(c) * 31 ** (len(quoted) - 1 - i) for i, c in enumerate(quoted)) % (1 << 32)
    java -= (1 << 32) if java >= 1 << 31 else 0
    assert java == 2125624436 and flyway.java_hash("hello") == 99162322  # "hello".hashCode(), a known value
    key = 77431708279161 + java
    assert flyway.lock_key("public", "flyway_schema_history") == key
    history = flyway.History(settings)
    with psycopg.connect(empty_db, autocommit=True) as holder, psycopg.connect(empty_db, autocommit=True) as other:
        history.lock(holder)
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0] is False
        with other.transaction():  # Flyway's default: pg_try_advisory_xact_lock on the same number
            assert other.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()[0] is False
        history.unlock(holder)
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0] is True
