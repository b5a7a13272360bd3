"""Connections: where the URL comes from, how it is shown (redacted), and what a failure says."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote

import psycopg
from psycopg import conninfo as _conninfo

from runbook_lib.errors import DatabaseError

APPLICATION_NAME = "runbook"

#: The role to act as (`--role`): log in as a person, migrate as the schema's owner. Set by the CLI in the
#: environment, so the kernels it starts act as that role too.
ROLE_VARIABLE = "RUNBOOK_ROLE"


def acting_role() -> str | None:
    """The role every connection acts as (--role), or None: the role the URL logs in as."""
    return os.environ.get(ROLE_VARIABLE) or None


# In a URL's user part the password runs from the first ':' after the user to the LAST '@' before the host, so
# one written with an unencoded '@', '/' or space is still found whole (libpq stops at the first '@' or '/').
_TYPED = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*://[^:/?#]*:(.*)@", re.S)
_SEPARATORS = re.compile(r"[@/\s%:?#&=]+")
_FIX = (
    "write it as postgresql://USER@HOST:PORT/DBNAME with the password in PGPASSWORD, or put the password "
    "after USER: with any @, /, % or space in it percent-encoded as %40, %2F, %25, %20"
)


def _typed_password(url: str) -> str | None:
    """The password as written in a URL's user part, found without libpq: libpq may misread it."""
    found = _TYPED.match(url)
    return found.group(1) if found else None


def _conninfo_dict(url: str) -> dict[str, str]:
    """libpq's reading of `url` (conninfo_to_dict): every value a string, as libpq parses them (its int and None
    values come only from keyword arguments, and none are passed)."""
    return cast(dict[str, str], _conninfo.conninfo_to_dict(url))


def _misread(url: str, params: dict[str, str]) -> bool:
    """libpq parsed the URL but took part of the password for the host, port or database."""
    typed = _typed_password(url)
    if not typed or unquote(typed) == params.get("password"):  # "user:@host": no password at all
        return False
    last_at = url.rindex("@")
    in_query = "?" in url[:last_at]  # the last '@' may be a query value's (application_name=a@b): libpq is right
    return not in_query or "@" in params.get("host", "") or "@" in params.get("port", "")


def _hides_password(fragment: str, typed: str | None) -> bool:
    if "://" in fragment or "password" in fragment.lower():
        return True
    if not typed:
        return False
    pieces = [p for p in _SEPARATORS.split(typed) if len(p) >= 2]
    return fragment in typed or typed in fragment or any(p in fragment for p in pieces)


def _why_invalid(url: str, exc: BaseException) -> str:
    """What libpq objects to, in words that quote nothing of the URL that could be its password."""
    text = _first_line(exc)
    lowered = text.lower()
    scheme = re.match(r"\s*([A-Za-z][A-Za-z0-9+.-]*)://", url)
    if 'missing "=" after' in lowered:
        if scheme:
            return f"it starts with {scheme.group(1)}://, not postgresql:// or postgres://"
        return "it is neither a postgresql:// URL nor valid key=value settings"
    if "unexpected spaces" in lowered:
        return "it contains a space"
    if "percent-encoded" in lowered or "%00" in lowered:
        return "a % in it is not followed by two hexadecimal digits"
    typed = _typed_password(url)
    return re.sub(r'"([^"]*)"', lambda m: '"..."' if _hides_password(m.group(1), typed) else m.group(0), text)


def _invalid(reason: str) -> DatabaseError:
    return DatabaseError(f"The database URL is not valid ({reason}); {_FIX}.")


def _parse(url: str) -> dict[str, str]:
    try:
        params = _conninfo_dict(url)
    except psycopg.ProgrammingError as exc:
        raise _invalid(_why_invalid(url, exc)) from None
    if _misread(url, params):
        raise _invalid("its password contains an @ or / that libpq reads as the end of the password")
    return params


def redact(url: str) -> str:
    """The URL with any password replaced by ***, safe for notebooks, records and logs."""
    try:
        params = _parse(url)
    except DatabaseError:
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
        params = _conninfo_dict(url)
    except psycopg.ProgrammingError:
        return bool(_typed_password(url)) or "password" in url.lower()
    return bool(params.get("password")) or _misread(url, params)


def passwords(url: str) -> set[str]:
    """Every form a URL's password may be shown in: as typed, percent-decoded, as libpq reads it."""
    params: dict[str, str] | None
    try:
        params = _conninfo_dict(url)
    except psycopg.ProgrammingError:
        params = None
    found = {params.get("password") or ""} if params is not None else set(re.findall(r"password=([^&]*)", url))
    typed = _typed_password(url) or ""
    if params is None or _misread(url, params) or unquote(typed) in found:  # not an '@' of a query value
        found.add(typed)
    found |= {unquote(f) for f in found}
    return {f for f in found if f}


def mask(text: str, *urls: str | None) -> str:
    """`text` with the passwords of `urls` (and their longer pieces) as ***: a last line of defence.

    Forms under 3 characters, and pieces under 4, are left: masking them would garble every message.
    """
    secrets: set[str] = set()
    for url in urls:
        for form in passwords(url) if url else ():
            secrets.add(form)
            secrets.update(p for p in _SEPARATORS.split(form) if len(p) >= 4)
    for secret in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def database_name(url: str) -> str:
    params = _parse(url)
    return params.get("dbname") or params.get("user") or os.environ.get("PGDATABASE") or "postgres"


def with_database(url: str, database: str) -> str:
    """The same server and credentials, another database."""
    return _conninfo.make_conninfo(url, dbname=database)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _escaped(value: str) -> str:
    """A value in libpq's `options`: its backslashes and spaces escaped with a backslash."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def connect(
    url: str,
    *,
    autocommit: bool = False,
    application_name: str = APPLICATION_NAME,
    as_login: bool = False,
    search_path: tuple[str, ...] = (),
) -> psycopg.Connection:
    """Open a connection, turning libpq's failures into one sentence with the fix.

    With --role the connection acts as that role from its start (the `role` setting, which even RESET ALL
    keeps); `as_login` keeps the login role: the guard and the watcher act on the migration's own backend,
    which only its login role may see in full and cancel.
    """
    params = _parse(url)
    shown = redact(url)
    role = None if as_login else acting_role()
    extra: dict[str, Any] = {}  # more keyword arguments of psycopg.connect
    settings = []
    if role:
        settings.append(("role", role))
    if search_path:  # a Flyway project's `schemas`: its scripts name tables without a schema, as Flyway runs them
        settings.append(("search_path", ",".join('"' + s.replace('"', '""') + '"' for s in search_path)))
    if settings:
        extra["options"] = " ".join(
            [params.get("options", ""), *(f"-c {name}={_escaped(value)}" for name, value in settings)]
        ).strip()
    try:
        return psycopg.connect(
            url, autocommit=autocommit, application_name=application_name, connect_timeout=10, **extra
        )
    except psycopg.OperationalError as exc:
        text = str(exc)
        lowered = text.lower()
        if role and ("set role" in lowered or f'role "{role.lower()}" does not exist' in lowered):
            raise DatabaseError(
                f"Cannot act as role {role} (--role) on {shown}: {mask(_first_line(exc), url)}; grant the login role "
                f"membership (GRANT {role} TO {params.get('user') or 'the login role'}), or leave out --role."
            ) from None
        if "password authentication failed" in lowered or "no password supplied" in lowered:
            hint = "check the user and password in DATABASE_URL (or PGPASSWORD)"
        elif "does not exist" in lowered and "database" in lowered:
            hint = f"create the database {params.get('dbname')!r} or fix its name in the URL"
        elif "role" in lowered and "does not exist" in lowered:
            hint = "use an existing role in the URL"
        elif any(
            s in lowered
            for s in (
                "could not connect",
                "connection refused",
                "could not translate",
                "timeout expired",
                "no such file",
            )
        ):
            hint = "check the host and port, and that the server is running"
        else:
            hint = "check the URL and the server"
        raise DatabaseError(f"Cannot connect to {shown}: {mask(_first_line(exc), url)}; {hint}.") from None


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
        " current_database(), current_user, current_setting('application_name'), session_user"
    ).fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    user = row[3] if row[3] == row[5] else f"{row[3]} (logged in as {row[5]})"
    return ConnectionFacts(redact(url), row[0], row[1], row[2], user, row[4])
