"""Connections: where the URL comes from, how it is shown (redacted), and what a failure says."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psycopg
from psycopg import conninfo as _conninfo

from runbook_lib.errors import DatabaseError

APPLICATION_NAME = "runbook"


def _parse(url: str) -> dict[str, str]:
    try:
        return _conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise DatabaseError(
            f"The database URL is not valid ({_first_line(exc)}); "
            "write it as postgresql://USER@HOST:PORT/DATABASE and pass the password in the URL or PGPASSWORD."
        ) from None


def redact(url: str) -> str:
    """The URL with any password replaced by ***, safe for notebooks, records and logs."""
    try:
        params = _conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable database URL>"
    if "password" in params:
        params["password"] = "***"
    user = params.pop("user", "")
    pw = params.pop("password", None)
    host = params.pop("host", "")
    port = params.pop("port", "")
    dbname = params.pop("dbname", "")
    auth = f"{user}{':' + pw if pw else ''}@" if user else ""
    netloc = host if host and not host.startswith("/") else ""
    if port and netloc:
        netloc += f":{port}"
    query = dict(params)
    if host and host.startswith("/"):
        query = {"host": host, **query}
        if port:
            query["port"] = port
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return f"postgresql://{auth}{netloc}/{dbname}" + (f"?{qs}" if qs else "")


def has_password(url: str) -> bool:
    try:
        return bool(_conninfo.conninfo_to_dict(url).get("password"))
    except psycopg.ProgrammingError:
        return ":" in url.split("@")[0].split("//")[-1]


def database_name(url: str) -> str:
    params = _parse(url)
    return params.get("dbname") or params.get("user") or os.environ.get("PGDATABASE") or "postgres"


def with_database(url: str, database: str) -> str:
    """The same server and credentials, another database."""
    return _conninfo.make_conninfo(url, dbname=database)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def connect(url: str, *, autocommit: bool = False, application_name: str = APPLICATION_NAME) -> psycopg.Connection:
    """Open a connection, turning libpq's failures into one sentence with the fix."""
    params = _parse(url)
    shown = redact(url)
    try:
        return psycopg.connect(
            url, autocommit=autocommit, application_name=application_name, connect_timeout=10
        )
    except psycopg.OperationalError as exc:
        text = str(exc)
        lowered = text.lower()
        if "password authentication failed" in lowered or "no password supplied" in lowered:
            hint = "check the user and password in DATABASE_URL (or PGPASSWORD)"
        elif "does not exist" in lowered and "database" in lowered:
            hint = f"create the database {params.get('dbname')!r} or fix its name in the URL"
        elif "role" in lowered and "does not exist" in lowered:
            hint = "use an existing role in the URL"
        elif any(s in lowered for s in ("could not connect", "connection refused", "could not translate", "timeout expired", "no such file")):
            hint = "check the host and port, and that the server is running"
        else:
            hint = "check the URL and the server"
        raise DatabaseError(f"Cannot connect to {shown}: {_first_line(exc)}; {hint}.") from None


@dataclass(frozen=True)
class ConnectionFacts:
    """What a report says about the target: never the password."""

    url: str
    server_version: str
    server_version_num: int
    database: str
    user: str
    application_name: str

    @property
    def major(self) -> int:
        return self.server_version_num // 10000


def facts(conn: psycopg.Connection, url: str) -> ConnectionFacts:
    row = conn.execute(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
        " current_database(), current_user, current_setting('application_name')"
    ).fetchone()
    return ConnectionFacts(redact(url), row[0], row[1], row[2], row[3], row[4])
