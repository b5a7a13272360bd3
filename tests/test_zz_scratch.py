import psycopg
from runbook_lib import apply, checks, sqlblocks, batch as batch_mod, paths
from runbook_lib.session import open_session

def test_show(crm_url, tmp_path):
    apply.run(open_session(6, database_url=crm_url, reports_dir=tmp_path))
    apply.run(open_session(7, database_url=crm_url, reports_dir=tmp_path))
    b = batch_mod.find(paths.example_migrations_dir(), 7)
    with psycopg.connect(crm_url) as conn:
        with conn.transaction(force_rollback=True):
            blocks = checks.tests(conn, b.checks)
            for bl in blocks:
                r = sqlblocks.run(conn, bl)
                print(r.status, "|", r.name, "|", r.expectation, "|", r.outcome)
                print("   ", r.sql)
