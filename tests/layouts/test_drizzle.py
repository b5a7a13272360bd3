"""Drizzle Kit's folder and drizzle-orm's `__drizzle_migrations`, read and written as drizzle-orm does.

The folder tests build small Drizzle folders; the history tests use a real server; the corpus is Dokploy's
186 migrations (tests/corpora/dokploy). The last tests run drizzle-orm's own migrator (npm's drizzle-orm and
pg, installed once into .pytest_cache/d/drizzle-node) against rows runbook wrote, and the other way round.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from runbook_lib.errors import BatchError
from runbook_lib.layouts import drizzle
from runbook_lib.layouts.base import AppliedRow, LayoutSettings, Migration, ToolState

DOKPLOY = Path(__file__).resolve().parent.parent / "corpora" / "dokploy" / "migrations"
DEFAULTS = LayoutSettings()


def make_folder(root: Path, files: dict[str, str | bytes], entries: list[tuple[str, int]] | None = None) -> Path:
    """A Drizzle Kit folder: the files as given, and a journal listing `entries` (tag, when) in that order."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        (root / name).write_bytes(data)
    if entries is not None:
        (root / "meta").mkdir(exist_ok=True)
        journal = {
            "version": "7",
            "dialect": "postgresql",
            "entries": [
                {"idx": i, "version": "7", "when": when, "tag": tag, "breakpoints": True}
                for i, (tag, when) in enumerate(entries)
            ],
        }
        (root / "meta" / "_journal.json").write_text(json.dumps(journal, indent=2), encoding="utf-8")
    return root


def write_journal(root: Path, text: str) -> None:
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "_journal.json").write_text(text, encoding="utf-8")


# --- the folder ------------------------------------------------------------------------------------------


def test_journal_order_not_file_names(tmp_path: Path) -> None:
    """drizzle runs the journal's order; here it differs from the names' order, and the `when`s are not sorted."""
    root = make_folder(
        tmp_path,
        {
            "0000_first.sql": "CREATE TABLE a (id int);",
            "0001_second.sql": "CREATE TABLE b (id int);\r\n",
            "0002_third.sql": "CREATE TABLE c (id int);",
        },
        [("0002_third", 1700000000300), ("0000_first", 1700000000100), ("0001_second", 1700000000200)],
    )

    migrations = drizzle.read(root, DEFAULTS)

    assert [m.version for m in migrations] == ["0002_third", "0000_first", "0001_second"]
    second = migrations[2]
    assert second == Migration(
        version="0001_second",
        name="0001_second",
        description="second",
        path=root / "0001_second.sql",
        sql="CREATE TABLE b (id int);\r\n",
        down=None,
        kind="versioned",
        created_at=1700000000200,
        checksum=hashlib.sha256(b"CREATE TABLE b (id int);\r\n").hexdigest(),
    )


def test_description_is_the_tag_after_its_number(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"0007_add_index.sql": "", "custom.sql": ""}, [("0007_add_index", 1), ("custom", 2)])
    assert [(m.name, m.description) for m in drizzle.read(root, DEFAULTS)] == [
        ("0007_add_index", "add_index"),
        ("custom", "custom"),
    ]


def test_checksum_is_sha256_of_the_text_as_stored(tmp_path: Path) -> None:
    """UTF-8 text, a BOM and CRLF kept: the same bytes drizzle-orm 0.45 hashes (`toString()` keeps them)."""
    content = "\ufeff-- café\r\nSELECT 1;--> statement-breakpoint\nSELECT 2;"
    root = make_folder(tmp_path, {"0000_x.sql": content}, [("0000_x", 5)])
    [migration] = drizzle.read(root, DEFAULTS)
    assert migration.sql == content
    assert migration.checksum == hashlib.sha256(content.encode("utf-8")).hexdigest()
    assert migration.checksum == hashlib.sha256((root / "0000_x.sql").read_bytes()).hexdigest()


def test_missing_file_refused(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"0000_first.sql": "SELECT 1;"}, [("0000_first", 1), ("0001_gone", 2)])
    with pytest.raises(BatchError) as caught:
        drizzle.read(root, DEFAULTS)
    assert str(caught.value) == (
        f"{root}/meta/_journal.json lists 0001_gone, but 0001_gone.sql is missing; restore the file or remove "
        "its entry from the journal (drizzle-orm's migrator refuses the folder too)."
    )


@pytest.mark.parametrize(
    ("journal", "says"),
    [
        ("{not json", "is not valid JSON"),
        ('{"version": "7"}', 'has no "entries" list'),
        ('{"entries": {"tag": "0000_x"}}', 'has no "entries" list'),
        ('{"entries": ["0000_x"]}', "entry 0 is not an object"),
        ('{"entries": [{"when": 1}]}', 'entry 0 has no usable "tag"'),
        ('{"entries": [{"tag": "../0000_x", "when": 1}]}', 'entry 0 has no usable "tag"'),
        ('{"entries": [{"tag": "0000_x"}]}', 'entry 0 (0000_x) has no integer "when"'),
        ('{"entries": [{"tag": "0000_x", "when": "1700"}]}', 'entry 0 (0000_x) has no integer "when"'),
        ('{"entries": [{"tag": "0000_x", "when": 1}, {"tag": "0000_x", "when": 2}]}', "lists 0000_x twice"),
    ],
)
def test_malformed_journal_refused_in_one_sentence(tmp_path: Path, journal: str, says: str) -> None:
    make_folder(tmp_path, {"0000_x.sql": "SELECT 1;"})
    write_journal(tmp_path, journal)
    with pytest.raises(BatchError) as caught:
        drizzle.read(tmp_path, DEFAULTS)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}/meta/_journal.json ")
    assert says in message
    assert message.endswith(".") and message.count("; ") == 1


def test_unlisted_files_reported_and_not_read(tmp_path: Path) -> None:
    root = make_folder(
        tmp_path, {"0000_a.sql": "SELECT 1;", "0001_draft.sql": "SELECT broken", "notes.sql": ""}, [("0000_a", 1)]
    )
    (root / "meta" / "0002_snapshot.sql").write_text("", encoding="utf-8")  # not beside the journal's files

    assert drizzle.unlisted(root) == [root / "0001_draft.sql", root / "notes.sql"]
    assert [m.version for m in drizzle.read(root, DEFAULTS)] == ["0000_a"]


def test_evidence(tmp_path: Path) -> None:
    assert drizzle.evidence(make_folder(tmp_path / "plain", {"0000_a.sql": "SELECT 1;"})) == 0
    assert drizzle.evidence(make_folder(tmp_path / "two", {}, [("0000_a", 1), ("0001_b", 2)])) == 2
    broken = make_folder(tmp_path / "broken", {})
    write_journal(broken, "{")
    assert drizzle.evidence(broken) == 1  # Drizzle's folder, so that read() says what is wrong


def test_down_only_from_the_rollback_folder(tmp_path: Path) -> None:
    root = make_folder(
        tmp_path / "drizzle", {"0000_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 2;"}, [("0000_a", 1), ("0001_b", 2)]
    )
    undo = tmp_path / "undo"
    undo.mkdir()
    (undo / "0001_b.sql").write_text("SELECT -2;", encoding="utf-8")

    assert [m.down for m in drizzle.read(root, DEFAULTS)] == [None, None]
    assert [m.down for m in drizzle.read(root, LayoutSettings(rollback_dir=undo))] == [None, undo / "0001_b.sql"]


def test_statements_split_as_drizzle_does(tmp_path: Path) -> None:
    """Nothing trimmed or dropped; `COMMIT;--> statement-breakpoint` ends drizzle's transaction early."""
    content = (
        'CREATE TABLE "t" ("id" serial PRIMARY KEY NOT NULL);\n--> statement-breakpoint\n'
        "COMMIT;--> statement-breakpoint\n"
        'CREATE INDEX CONCURRENTLY "t_idx" ON "t" ("id");--> statement-breakpoint\n'
        "BEGIN;--> statement-breakpoint"
    )
    root = make_folder(tmp_path, {"0000_a.sql": content, "0001_b.sql": "SELECT 1;\r\n"}, [("0000_a", 1), ("0001_b", 2)])
    first, second = drizzle.read(root, DEFAULTS)

    assert drizzle.statements(first) == [
        'CREATE TABLE "t" ("id" serial PRIMARY KEY NOT NULL);\n',
        "\nCOMMIT;",
        '\nCREATE INDEX CONCURRENTLY "t_idx" ON "t" ("id");',
        "\nBEGIN;",
        "",
    ]
    assert drizzle.statements(second) == ["SELECT 1;\r\n"]
    assert "".join(drizzle.statements(first)) == content.replace(drizzle.BREAKPOINT, "")


# --- the history table -----------------------------------------------------------------------------------


def three(root: Path) -> list[Migration]:
    folder = make_folder(
        root,
        {
            "0000_a.sql": "CREATE TABLE a (id int);",
            "0001_b.sql": "CREATE TABLE b (id int);",
            "0002_c.sql": "CREATE TABLE c (id int);",
        },
        [("0000_a", 1700000000100), ("0001_b", 1700000000200), ("0002_c", 1700000000300)],
    )
    return drizzle.read(folder, DEFAULTS)


def table_rows(conn: psycopg.Connection, name: str = "drizzle.__drizzle_migrations") -> list[tuple]:
    return conn.execute(f"SELECT id, hash, created_at FROM {name} ORDER BY id").fetchall()


def table_columns(conn: psycopg.Connection, schema: str, table: str) -> list[tuple]:
    """The table's shape (the sequence's name left out of the default)."""
    return conn.execute(
        "SELECT column_name, data_type, is_nullable, coalesce(column_default LIKE 'nextval(%%', false)"
        " FROM information_schema.columns WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, table),
    ).fetchall()


def test_no_table_is_no_history(empty_db: str, tmp_path: Path) -> None:
    with psycopg.connect(empty_db) as conn:
        assert drizzle.History(DEFAULTS).read(conn, three(tmp_path)) == ToolState(exists=False)


def test_record_applied_and_read_round_trip(empty_db: str, tmp_path: Path) -> None:
    migrations = three(tmp_path)
    history = drizzle.History(DEFAULTS)
    assert history.label == "Drizzle's drizzle.__drizzle_migrations"
    with psycopg.connect(empty_db) as conn:
        said = history.record_applied(conn, migrations[0], migrations)
        assert said.startswith("created drizzle.__drizzle_migrations; inserted (")
        history.record_applied(conn, migrations[1], migrations, ran=False, execution_ms=12, installed_by="ann")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS  # not committed
        conn.commit()

        assert table_rows(conn) == [
            (1, migrations[0].checksum, 1700000000100),
            (2, migrations[1].checksum, 1700000000200),
        ]
        assert table_columns(conn, "drizzle", "__drizzle_migrations") == [
            ("id", "integer", "NO", True),
            ("hash", "text", "NO", False),
            ("created_at", "bigint", "YES", False),
        ]
        assert history.read(conn, migrations) == ToolState(
            exists=True,
            applied={
                "0000_a": AppliedRow(key="0000_a", checksum=migrations[0].checksum),
                "0001_b": AppliedRow(key="0001_b", checksum=migrations[1].checksum),
            },
            blocked="",
            last="0001_b",
        )


def test_record_applied_rolls_back_with_the_transaction(empty_db: str, tmp_path: Path) -> None:
    migrations = three(tmp_path)
    history = drizzle.History(DEFAULTS)
    with psycopg.connect(empty_db) as conn:
        history.record_applied(conn, migrations[0], migrations)
        conn.rollback()
        assert history.read(conn, migrations) == ToolState(exists=False)


def test_configured_schema_and_table(empty_db: str, tmp_path: Path) -> None:
    migrations = three(tmp_path)
    history = drizzle.History(LayoutSettings(migrations_schema="Ops", migrations_table="drizzle log"))
    assert history.label == "Drizzle's Ops.drizzle log"
    with psycopg.connect(empty_db) as conn:
        history.record_applied(conn, migrations[0], migrations)
        conn.commit()
        assert table_rows(conn, '"Ops"."drizzle log"') == [(1, migrations[0].checksum, 1700000000100)]
        assert history.read(conn, migrations).last == "0000_a"
        assert drizzle.History(DEFAULTS).read(conn, migrations) == ToolState(exists=False)


def test_read_goes_by_the_newest_row_alone(empty_db: str, tmp_path: Path) -> None:
    """Only the newest created_at counts: earlier migrations without a row are applied all the same, a row
    with a stale hash gives that hash, and a NULL created_at sorts first and makes everything pending."""
    migrations = three(tmp_path)
    history = drizzle.History(DEFAULTS)
    with psycopg.connect(empty_db) as conn:
        history.record_applied(conn, migrations[0], migrations)
        conn.execute("DELETE FROM drizzle.__drizzle_migrations")
        assert history.read(conn, migrations) == ToolState(exists=True)

        conn.execute("INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('stale', 1700000000200)")
        state = history.read(conn, migrations)
        assert state.applied == {
            "0000_a": AppliedRow(key="0000_a", checksum=None),
            "0001_b": AppliedRow(key="0001_b", checksum="stale"),
        }
        assert state.last == "0001_b" and state.blocked == ""

        conn.execute("INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('x', 1700000000250)")
        assert list(history.read(conn, migrations).applied) == ["0000_a", "0001_b"]

        conn.execute("INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('x', NULL)")
        assert history.read(conn, migrations) == ToolState(exists=True)


def test_record_rolled_back_deletes_the_row(empty_db: str, tmp_path: Path) -> None:
    migrations = three(tmp_path)
    history = drizzle.History(DEFAULTS)
    with psycopg.connect(empty_db) as conn:
        for migration in migrations:
            history.record_applied(conn, migration, migrations)
        assert history.lock(conn) is None and history.unlock(conn) is None  # drizzle takes no lock
        assert history.record_failed(conn, migrations[2], migrations) == ""

        said = history.record_rolled_back(conn, migrations[1], migrations)
        assert said == (
            "deleted 1 row(s) with created_at 1700000000200 from drizzle.__drizzle_migrations; "
            "a later migration's row remains, so drizzle will not run 0001_b again"
        )
        assert list(history.read(conn, migrations).applied) == ["0000_a", "0001_b", "0002_c"]

        said = history.record_rolled_back(conn, migrations[2], migrations)
        assert said == "deleted 1 row(s) with created_at 1700000000300 from drizzle.__drizzle_migrations"
        assert table_rows(conn) == [(1, migrations[0].checksum, 1700000000100)]
        assert history.read(conn, migrations).last == "0000_a"


# --- the corpus ------------------------------------------------------------------------------------------


def test_dokploy_corpus_reads_186_migrations() -> None:
    migrations = drizzle.read(DOKPLOY, DEFAULTS)

    assert len(migrations) == 186 == drizzle.evidence(DOKPLOY)
    assert migrations[0].version == "0000_reflective_puck" and migrations[-1].version == "0185_needy_kingpin"
    assert [m.created_at for m in migrations] == sorted(m.created_at for m in migrations)
    assert all(m.checksum == hashlib.sha256(m.path.read_bytes()).hexdigest() for m in migrations)
    assert drizzle.unlisted(DOKPLOY) == [DOKPLOY / "0130_abandoned_dagger.sql"]


def test_dokploy_corpus_recorded_reads_all_applied(empty_db: str) -> None:
    migrations = drizzle.read(DOKPLOY, DEFAULTS)
    history = drizzle.History(DEFAULTS)
    with psycopg.connect(empty_db) as conn:
        for migration in migrations:
            history.record_applied(conn, migration, migrations, ran=False)
        state = history.read(conn, migrations)
    assert list(state.applied) == [m.version for m in migrations]
    assert all(state.applied[m.version].checksum == m.checksum for m in migrations)
    assert state.last == "0185_needy_kingpin"


# --- drizzle-orm's own migrator --------------------------------------------------------------------------

MIGRATE_JS = """\
const { Client } = require('pg');
const { drizzle } = require('drizzle-orm/node-postgres');
const { migrate } = require('drizzle-orm/node-postgres/migrator');

async function main() {
  const [folder, schema, table] = process.argv.slice(2);
  const client = new Client();  // PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE
  await client.connect();
  try {
    await migrate(drizzle(client), { migrationsFolder: folder, migrationsSchema: schema, migrationsTable: table });
  } finally {
    await client.end();
  }
}

main().catch((error) => { console.error(error); process.exit(1); });
"""


@pytest.fixture(scope="session")
def drizzle_node(pytestconfig: pytest.Config) -> Path:
    """A script calling drizzle-orm's migrator, beside npm's drizzle-orm and pg installed once into
    .pytest_cache/d/drizzle-node (reused while both are there)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run drizzle-orm's own migrator")
    cache = getattr(pytestconfig, "cache", None)
    folder = cache.mkdir("drizzle-node") if cache else Path(tempfile.gettempdir()) / f"drizzle-node-{os.getuid()}"
    modules = folder / "node_modules"
    if not all((modules / package / "package.json").is_file() for package in ("drizzle-orm", "pg")):
        done = subprocess.run(
            ["npm", "install", "--prefix", str(folder), "drizzle-orm", "pg", "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            pytest.skip(f"npm could not install drizzle-orm and pg: {done.stderr.strip()[-500:]}")
    script = folder / "migrate.cjs"
    script.write_text(MIGRATE_JS, encoding="utf-8")
    return script


PG_ENV = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE"}


def drizzle_migrate(
    script: Path, url: str, folder: Path, schema: str = "drizzle", table: str = "__drizzle_migrations"
) -> None:
    """drizzle-orm's node-postgres migrator on `folder`, as an application calls it."""
    given = psycopg.conninfo.conninfo_to_dict(url)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update({name: str(given[key]) for key, name in PG_ENV.items() if given.get(key) is not None})
    env["NODE_PATH"] = str(script.parent / "node_modules")
    done = subprocess.run(
        ["node", str(script), str(folder), schema, table], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, f"drizzle-orm's migrator failed: {done.stderr[-3000:]}"


def small_folder(root: Path) -> Path:
    """Drizzle Kit's shape: breakpoints, a CRLF file with UTF-8 text, the COMMIT idiom for CONCURRENTLY and an
    unlisted draft that would fail if anything ran it."""
    return make_folder(
        root,
        {
            "0000_init.sql": 'CREATE TABLE "accounts" (\n\t"id" serial PRIMARY KEY NOT NULL,\n'
            '\t"name" text NOT NULL\n);'
            "\n--> statement-breakpoint\n"
            'CREATE INDEX "accounts_name_idx" ON "accounts" USING btree ("name");',
            "0001_note.sql": 'ALTER TABLE "accounts" ADD COLUMN "note" text DEFAULT \'café\';\r\n'
            '--> statement-breakpoint\r\nCOMMENT ON COLUMN "accounts"."note" IS \'naïve — free text\';\r\n',
            "0002_note_index.sql": "COMMIT;--> statement-breakpoint\n"
            'CREATE INDEX CONCURRENTLY "accounts_note_idx" ON "accounts" ("note");'
            "--> statement-breakpoint\nBEGIN;",
            "0003_draft.sql": "THIS IS NOT SQL;",
        },
        [("0000_init", 1713262741218), ("0001_note", 1713761637676), ("0002_note_index", 1714000000000)],
    )


def apply_with_psycopg(url: str, migrations: list[Migration], history: drizzle.History) -> None:
    """runbook's way: each migration's chunks in a transaction of its own, drizzle's row written inside it."""
    with psycopg.connect(url, autocommit=True) as conn:
        for migration in migrations:
            conn.execute("BEGIN")
            for chunk in drizzle.statements(migration):
                if chunk.strip():
                    conn.execute(chunk)
            history.record_applied(conn, migration, migrations)
            conn.execute("COMMIT")


@pytest.mark.slow
def test_drizzle_migrator_agrees_with_runbook(drizzle_node: Path, make_database, tmp_path: Path) -> None:
    folder = small_folder(tmp_path / "drizzle")
    migrations = drizzle.read(folder, DEFAULTS)
    assert drizzle.unlisted(folder) == [folder / "0003_draft.sql"]

    # runbook applied and recorded everything: drizzle runs nothing
    url = make_database()
    history = drizzle.History(DEFAULTS)
    apply_with_psycopg(url, migrations, history)
    with psycopg.connect(url) as conn:
        recorded = table_rows(conn)
        ours = table_columns(conn, "drizzle", "__drizzle_migrations")
    assert [(h, c) for _, h, c in recorded] == [(m.checksum, m.created_at) for m in migrations]
    drizzle_migrate(drizzle_node, url, folder)
    with psycopg.connect(url) as conn:
        assert table_rows(conn) == recorded

        # runbook rolled the last one back: drizzle runs exactly that one again
        conn.execute('DROP INDEX "accounts_note_idx"')
        history.record_rolled_back(conn, migrations[2], migrations)
        conn.commit()
    drizzle_migrate(drizzle_node, url, folder)
    with psycopg.connect(url) as conn:
        assert table_rows(conn) == [*recorded[:2], (4, migrations[2].checksum, migrations[2].created_at)]
        assert conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'accounts_note_idx'::regclass"
        ).fetchone() == (True,)

    # drizzle applied everything from empty (its table configured elsewhere): runbook reads all applied
    url = make_database()
    drizzle_migrate(drizzle_node, url, folder, "ops", "drizzle_log")
    settings = LayoutSettings(migrations_schema="ops", migrations_table="drizzle_log")
    with psycopg.connect(url) as conn:
        state = drizzle.History(settings).read(conn, drizzle.read(folder, settings))
        theirs = table_columns(conn, "ops", "drizzle_log")
        note = conn.execute("SELECT col_description('accounts'::regclass, 3)").fetchone()[0]
    assert state == ToolState(
        exists=True,
        applied={m.version: AppliedRow(key=m.version, checksum=m.checksum) for m in migrations},
        last="0002_note_index",
    )
    assert theirs == ours
    assert note == "naïve — free text"


@pytest.mark.slow
def test_drizzle_migrator_on_the_dokploy_corpus(drizzle_node: Path, make_database) -> None:
    """Dokploy's 186 migrations applied by drizzle-orm: runbook reads every one applied, with drizzle's hash."""
    url = make_database()
    drizzle_migrate(drizzle_node, url, DOKPLOY)
    migrations = drizzle.read(DOKPLOY, DEFAULTS)
    with psycopg.connect(url) as conn:
        state = drizzle.History(DEFAULTS).read(conn, migrations)
    assert len(state.applied) == 186 and state.last == "0185_needy_kingpin"
    assert [state.applied[m.version].checksum for m in migrations] == [m.checksum for m in migrations]
