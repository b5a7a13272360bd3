"""Fixtures: a real PostgreSQL for the tests, the embedded server by default or --test-database-url.

Like psycopg's tests/fix_db.py: the server version is printed in the header, each test that needs a
database gets a fresh one (CREATE DATABASE ... TEMPLATE), and `pg` marks version-bound tests (which count
as `versions`: the third pass, on PostgreSQL 16, runs them too).
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from runbook_lib.db import connection as database
from runbook_lib.db import embedded

_SERVER: dict[str, object] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--test-database-url",
        default=os.environ.get("RUNBOOK_TEST_DATABASE_URL") or os.environ.get("DATABASE_URL"),
        help="a server to test against (any database on it; tests create and drop their own); "
        "default: RUNBOOK_TEST_DATABASE_URL, else DATABASE_URL, else the embedded PostgreSQL",
    )


def _server_url(config: pytest.Config) -> str:
    if "url" not in _SERVER:
        url = config.getoption("--test-database-url")
        if not url:
            cache = getattr(config, "cache", None)  # absent with -p no:cacheprovider
            state = cache.mkdir("embedded") if cache else Path(tempfile.gettempdir()) / f"runbook-tests-{os.getuid()}"
            server = embedded.start(state)
            url = server.url
        _SERVER["url"] = url
    return str(_SERVER["url"])


def pytest_report_header(config: pytest.Config) -> str:
    try:
        url = _server_url(config)
        with psycopg.connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        return f"PostgreSQL {version} at {database.redact(url)}"
    except Exception as exc:  # the header must never break collection
        return f"PostgreSQL: not reachable ({exc})"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pg(spec): run only on server versions matching spec, e.g. '>= 18'")


@pytest.hookimpl(tryfirst=True)  # before `-m versions` and --suite-pass (tests/fix_passes.py) read the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A version-bound test (`pg`) is a version-dependent one: it counts as `versions` (the third pass)."""
    for item in items:
        if item.get_closest_marker("pg") is not None and item.get_closest_marker("versions") is None:
            item.add_marker(pytest.mark.versions)


@pytest.fixture(scope="session")
def server_url(pytestconfig: pytest.Config) -> str:
    """URL of the test server's maintenance database."""
    return _server_url(pytestconfig)


@pytest.fixture(scope="session")
def server_major(server_url: str) -> int:
    with psycopg.connect(server_url) as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


@pytest.fixture(autouse=True)
def _pg_marker(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("pg")
    if marker is None:
        return
    major = request.getfixturevalue("server_major")
    op, want = re.fullmatch(r"\s*(>=|<=|==|<|>)\s*(\d+)\s*", marker.args[0]).groups()
    ok = {
        ">=": major >= int(want),
        "<=": major <= int(want),
        "==": major == int(want),
        "<": major < int(want),
        ">": major > int(want),
    }[op]
    if not ok:
        pytest.skip(f"needs PostgreSQL {marker.args[0]}, server is {major}")


def _create(server_url: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(stmt)
    return database.with_database(server_url, name)


def _drop(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def make_database(server_url: str) -> Iterator[Callable[..., str]]:
    """Factory: a new database (empty, or a copy of `template`), dropped after the test."""
    created: list[str] = []

    def make(template: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        url = _create(server_url, name, template)
        created.append(name)
        return url

    yield make
    for name in created:
        _drop(server_url, name)


@pytest.fixture
def empty_db(make_database: Callable[..., str]) -> str:
    return make_database()


@pytest.fixture(scope="session")
def crm_template(server_url: str) -> Iterator[str]:
    """A database holding the example CRM at its starting state, used as a template."""
    from runbook_lib.db import example

    name = f"crm_template_{uuid.uuid4().hex[:8]}"
    url = _create(server_url, name)
    with database.connect(url) as conn:
        example.load(conn)
        conn.commit()
    yield name
    _drop(server_url, name)


@pytest.fixture
def crm_url(make_database: Callable[..., str], crm_template: str) -> str:
    """A fresh copy of the example database at its starting state (before batch 6)."""
    return make_database(crm_template)
