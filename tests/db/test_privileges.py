"""What each phase needs: preflight works with a role that can only read; apply says clearly what it lacks."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from runbook_lib import config
from runbook_lib.db import ledger
from runbook_lib.errors import RunbookError
from runbook_lib.phases import apply, preflight
from runbook_lib.phases.session import open_session


@pytest.fixture
def reader_url(crm_url: str, server_url: str, tmp_path: Path):
    """batch 6 applied by the owner; then a role that can read everything and write nothing."""
    apply.run(open_session(6, database_url=crm_url, reports_dir=tmp_path, migrations_dir=config.example_migrations_dir()))
    role = f"rb_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(role)))
    yield conninfo.make_conninfo(crm_url, user=role)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_preflight_runs_with_a_read_only_role(reader_url: str, crm_url: str, tmp_path: Path) -> None:
    with psycopg.connect(crm_url) as conn:
        rows_before = len(ledger.history(conn))
    result = preflight.run(open_session(7, database_url=reader_url, reports_dir=tmp_path, migrations_dir=config.example_migrations_dir()))
    assert result.verdict.status == preflight.GO, result.verdict
    assert result.connection.user.startswith("rb_reader_")
    with psycopg.connect(crm_url) as conn:
        assert len(ledger.history(conn)) == rows_before  # it could not write the ledger, and said nothing false


def test_apply_with_a_read_only_role_is_refused_in_one_sentence(reader_url: str, crm_url: str, tmp_path: Path) -> None:
    with pytest.raises(RunbookError) as refused:
        apply.run(open_session(7, database_url=reader_url, reports_dir=tmp_path, migrations_dir=config.example_migrations_dir()))
    message = str(refused.value)
    assert "ledger" in message and "privileges" in message and "\n" not in message
    with psycopg.connect(crm_url) as conn:
        assert not ledger.state(conn, 7).applied
        assert conn.execute("SELECT is_nullable FROM information_schema.columns WHERE table_name = 'Lead'"
                            " AND column_name = 'customer_id'").fetchone()[0] == "YES"
