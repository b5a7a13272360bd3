import psycopg
from runbook_lib import apply, checks, sqlblocks, batch as batch_mod, paths, health, prisma_schema, validate
from runbook_lib.session import open_session

def test_show(crm_url, tmp_path):
    b = batch_mod.find(paths.example_migrations_dir(), 7)
    before = prisma_schema.load(paths.example_dir() / "schema.prisma")
    after = prisma_schema.load(b.path / "schema.prisma")
    with psycopg.connect(crm_url) as conn:
        print("before/before", prisma_schema.compare(conn, before, b.checks.columns))
        print("after/before", prisma_schema.compare(conn, after, b.checks.columns))
    apply.run(open_session(6, database_url=crm_url, reports_dir=tmp_path))
    apply.run(open_session(7, database_url=crm_url, reports_dir=tmp_path))
    with psycopg.connect(crm_url) as conn:
        for m in prisma_schema.compare(conn, before, b.checks.columns):
            print(m)
        print(prisma_schema.section(prisma_schema.compare(conn, before, b.checks.columns), "x").markdown)
        print("after/after", prisma_schema.compare(conn, after, b.checks.columns))
    r = health.run(crm_url, paths.example_migrations_dir())
    print(r.headline); print(r.frame().to_string())
    with psycopg.connect(crm_url, autocommit=True) as conn:
        conn.execute('ALTER TABLE "Job" ALTER COLUMN customer_id DROP NOT NULL')
    r = health.run(crm_url, paths.example_migrations_dir())
    print(r.headline); print(r.drift_frame().to_string())
    try:
        r.raise_for_drift()
    except Exception as e:
        print(type(e).__name__, e)
    v = validate.run(open_session(7, database_url=crm_url, reports_dir=tmp_path), orm_strict=True)
    print(v.headline, v.ok, v.prisma_schema, v.orm_mismatches)
