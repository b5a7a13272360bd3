"""The test suite's plugins: the fixtures live in fixture modules, as psycopg's tests do.

- fix_db: the server (embedded PostgreSQL 18, or --test-database-url), fresh databases, the example CRM.
- fix_crm: the example's migrations copied for a test to break, and the example at a batch applied.
- fix_roles: an owner role, an application role, a person acting as the owner, a reader (not superusers).
- fix_passes: which tests the first, second and third server run (`--suite-pass`, scripts/test_suite.py).

The tests mirror the package: tests/sql, tests/batch, tests/db, tests/phases, tests/orm,
tests/notebook, tests/report, tests/fleet; what crosses them (the CLI, bad input, security, the corpus,
the benchmarks, the wheel, the architecture) sits at the top.
"""

pytest_plugins = ["fix_db", "fix_crm", "fix_passes", "fix_roles"]
