"""--format json of the commands that run no notebook: example load, check, baseline (their documented keys)."""

from __future__ import annotations

import json

import psycopg
import pytest

from runbook_lib import config
from runbook_lib.cli import main
from runbook_lib.db import connection as database
from runbook_lib.db import ledger


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_example_load_check_and_baseline_speak_json(empty_db: str, tmp_path, capsys) -> None:
    migrations = str(config.example_migrations_dir())
    code, doc, _ = _json(capsys, "example", "load", "--database-url", empty_db, "--leads", "200", "--format", "json")
    assert code == 0 and doc["command"] == "example load" and doc["ok"] is True
    loaded = doc["loaded"]
    with psycopg.connect(empty_db) as conn:
        leads = conn.execute('SELECT count(*) FROM "Lead"').fetchone()[0]
        orphans = conn.execute('SELECT count(*) FROM "Lead" WHERE customer_id IS NULL').fetchone()[0]
    assert loaded["leads"] == leads == 200 and loaded["leads_without_customer"] == orphans > 0
    assert loaded["replaced"] is False  # nothing was there to drop
    assert set(doc) == {"format_version", "command", "ok", "database", "loaded", "project_file"}
    assert doc["database"] == database.redact(empty_db)

    # recorded as applied without running: batch 7's checks (NOT NULL customer_id) do not hold on this data
    code, doc, err = _json(
        capsys,
        "baseline",
        "7",
        "--yes",
        "--database-url",
        empty_db,
        "--migrations-dir",
        migrations,
        "--reports-dir",
        str(tmp_path),
        "--format",
        "json",
    )
    assert code == 0 and doc["command"] == "baseline" and doc["ok"] is True, err
    assert set(doc) == {"format_version", "command", "ok", "database", "upto", "recorded", "batches", "plan"}
    assert doc["upto"] == 7 and doc["batches"] == [6, 7] and doc["recorded"] and len(doc["plan"]) == 2
    with psycopg.connect(empty_db) as conn:
        assert {n: s.applied for n, s in ledger.states(conn).items()} == {6: True, 7: True}

    code, doc, err = _json(
        capsys, "check", "--database-url", empty_db, "--migrations-dir", migrations, "--format", "json"
    )
    assert code != 0 and doc["ok"] is False and doc["command"] == "check"
    assert set(doc) == {"format_version", "command", "ok", "database", "headline", "health"}
    assert doc["health"]["applied"] == [6, 7]
    failing = [c for c in doc["health"]["checks"] if c["outcome"] == "failed"]
    assert failing and all(c["batch"] == 7 for c in failing), doc["health"]["checks"]
    assert any("Lead" in json.dumps(c) and "customer_id" in json.dumps(c) for c in failing)

    code, doc, err = _json(
        capsys, "baseline", "9", "--yes", "--database-url", empty_db, "--migrations-dir", migrations, "--format", "json"
    )
    assert code != 0 and doc["ok"] is False and "9" in doc["error"] and doc["error_type"]
