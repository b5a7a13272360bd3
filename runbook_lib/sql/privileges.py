"""What the connected role may do, read before anything is touched: each gap with its consequence and its GRANT.

Production runs a migration as the role that owns the schema, not as a superuser; often without
pg_read_all_stats (other roles' session state is hidden), without pg_signal_backend, sometimes without
CREATE on the database. A statement the role may not run fails half way through a release; a gap that
only narrows what runbook can see (a hidden session's state) changes how it waits. Preflight reads both
once (`check`): what would fail is a NO-GO naming the object, its owner and the fix; what only degrades
is a WARN saying what changes and the GRANT that restores it.

Everything here reads the catalog as the current role (after `SET ROLE`, the role acted as): ownership
counts through membership (`pg_has_role(owner, 'USAGE')`), as PostgreSQL counts it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from pglast import ast
from pglast.enums import GrantTargetType, ObjectType
from psycopg.abc import Params

from runbook_lib.db import catalog
from runbook_lib.names import NOGO, WARN
from runbook_lib.sql import parse
from runbook_lib.sql.parse import required

OWNER, REFERENCES, TRIGGER, CREATE, MAINTAIN, EXTENSION = (
    "owner",
    "references",
    "trigger",
    "create",
    "maintain",
    "extension",
)

#: What the application's role usually holds on a table, in the order GRANT lists them.
_TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


@dataclass(frozen=True)
class Need:
    """One privilege a statement of the migration needs on an object that exists before it runs."""

    kind: str  # OWNER | REFERENCES | TRIGGER | CREATE (in a schema) | MAINTAIN (VACUUM/ANALYZE) | EXTENSION
    name: str  # the table (as the SQL writes it), schema or extension
    statement: int
    line: int
    verb: str  # what the statement does, for the message: "alters", "indexes", "drops", ...


@dataclass(frozen=True)
class Gap:
    """One thing the role may not do, what follows from it, and the fix."""

    severity: str  # NOGO: a statement would fail; WARN: runbook sees or does less
    text: str  # "statement 2 (line 4) alters Lead, owned by owner_x: role mig is neither it nor a member of it"
    fix: str  # "GRANT owner_x TO mig, or act as owner_x with --role owner_x"

    @property
    def line(self) -> str:
        return f"{self.text}; {self.fix}"


@dataclass(frozen=True)
class PrivilegeCheck:
    """The connected role as preflight found it: who it is, what it holds, and each gap."""

    role: str  # current_user: the role acted as
    login: str  # session_user: the role logged in as (another one with --role)
    superuser: bool
    held: tuple[str, ...] = ()  # the predefined roles that matter here which it has: pg_read_all_stats, ...
    gaps: tuple[Gap, ...] = field(default_factory=tuple)

    @property
    def sees_other_sessions(self) -> bool:
        return self.superuser or "pg_read_all_stats" in self.held

    def lines(self, severity: str) -> list[str]:
        return [g.line for g in self.gaps if g.severity == severity]


# --- what the migration needs ----------------------------------------------------------------------


def _table(rel: ast.RangeVar) -> str:
    return ".".join(p for p in (rel.schemaname, rel.relname) if p)


def _names(objects: Iterable[object] | None) -> list[str]:
    """DROP/COMMENT objects: each a tuple of String parts (schema, name) or a RangeVar."""
    found = []
    for obj in objects or ():
        if isinstance(obj, ast.RangeVar):
            found.append(_table(obj))
        elif isinstance(obj, (tuple, list)):
            found.append(".".join(required(p.sval) for p in obj if isinstance(p, ast.String)))
        elif isinstance(obj, ast.String):
            found.append(required(obj.sval))
    return found


_DROPPED_RELATIONS = {
    ObjectType.OBJECT_TABLE,
    ObjectType.OBJECT_INDEX,
    ObjectType.OBJECT_VIEW,
    ObjectType.OBJECT_MATVIEW,
    ObjectType.OBJECT_SEQUENCE,
    ObjectType.OBJECT_FOREIGN_TABLE,
}


def _foreign_keys(constraints: Iterable[object] | None) -> list[ast.RangeVar]:
    return [c.pktable for c in constraints or () if isinstance(c, ast.Constraint) and c.pktable is not None]


def _constraints(elements: Iterable[object] | None) -> list[ast.Node]:
    """A CREATE TABLE's constraints, table-level and on its columns."""
    found: list[ast.Node] = []
    for element in elements or ():
        if isinstance(element, ast.Constraint):
            found.append(element)
        elif isinstance(element, ast.ColumnDef):
            found.extend(element.constraints or ())
    return found


def needs(sql: str, *, filename: str | None = None, created: Iterable[str] = ()) -> list[Need]:
    """The privileges the statements need on objects that exist before the migration: tables it creates
    itself (here or, `created`, in an earlier migration of the release) are skipped."""
    made = {name.lower() for name in created}
    found: list[Need] = []

    def need(kind: str, name: str, stmt: parse.SqlStatement, verb: str) -> None:
        on_a_table = kind not in (CREATE, EXTENSION)  # a schema, an extension: never made by the migration
        if on_a_table and (not name or name.lower() in made or name.split(".")[-1].lower() in made):
            return
        found.append(Need(kind, name, stmt.index, stmt.line, verb))

    for stmt in parse.split(sql, filename=filename):
        node = stmt.raw.stmt if stmt.raw is not None else None
        if isinstance(node, ast.CreateStmt):
            relation = required(node.relation)  # CREATE TABLE always names its table
            if relation.relpersistence == "t":
                continue
            need(CREATE, relation.schemaname or "", stmt, "creates a table in")
            for ref in _foreign_keys(_constraints(node.tableElts)):
                need(REFERENCES, _table(ref), stmt, "references")
            made.add(_table(relation).lower())
            made.add(required(relation.relname).lower())
        elif isinstance(node, ast.AlterTableStmt):
            table = _table(required(node.relation))
            need(OWNER, table, stmt, "alters")
            for cmd in node.cmds or ():
                definition = getattr(cmd, "def_", None)
                if isinstance(definition, ast.Constraint):
                    refs = _foreign_keys([definition])
                elif isinstance(definition, ast.ColumnDef):
                    refs = _foreign_keys(definition.constraints)
                else:
                    refs = []
                for ref in refs:
                    need(REFERENCES, _table(ref), stmt, "adds a foreign key to")
        elif isinstance(node, ast.IndexStmt):
            need(OWNER, _table(required(node.relation)), stmt, "indexes")
        elif isinstance(node, ast.RenameStmt) and node.relation is not None:
            need(OWNER, _table(node.relation), stmt, "renames in")
        elif isinstance(node, ast.DropStmt) and node.removeType in _DROPPED_RELATIONS:
            for name in _names(node.objects):
                need(OWNER, name, stmt, "drops")
        elif isinstance(node, ast.CreateTrigStmt):
            need(TRIGGER, _table(required(node.relation)), stmt, "creates a trigger on")
        elif isinstance(node, ast.VacuumStmt):
            for rel in node.rels or ():
                need(MAINTAIN, _table(rel.relation), stmt, "vacuums or analyzes")
        elif isinstance(node, ast.CreateExtensionStmt):
            need(EXTENSION, required(node.extname), stmt, "creates the extension")
    return found


def created_tables(sql: str, *, filename: str | None = None) -> list[str]:
    """The tables a migration creates (not temporary ones): a release's later migrations need nothing on them."""
    tables = []
    for s in parse.split(sql, filename=filename):
        if s.raw is not None and isinstance(s.raw.stmt, ast.CreateStmt):
            relation = required(s.raw.stmt.relation)  # CREATE TABLE always names its table
            if relation.relpersistence != "t":
                tables.append(_table(relation))
    return tables


def _granted_in(sql: str, filename: str | None) -> dict[str, set[str]]:
    """What the migration itself grants on tables: grantee -> privileges ('ALL' for ALL PRIVILEGES), keyed
    by 'table|grantee' lower-cased; GRANT ... ON ALL TABLES IN SCHEMA s counts for every table of s as '*s'."""
    granted: dict[str, set[str]] = {}
    for stmt in parse.split(sql, filename=filename):
        node = stmt.raw.stmt if stmt.raw is not None else None
        if not isinstance(node, ast.GrantStmt) or not node.is_grant or node.objtype != ObjectType.OBJECT_TABLE:
            continue
        privileges = {p.priv_name.upper() for p in node.privileges} if node.privileges else {"ALL"}
        if node.targtype == GrantTargetType.ACL_TARGET_ALL_IN_SCHEMA:
            targets = [f"*{s.sval}" for s in node.objects or () if isinstance(s, ast.String)]
        else:
            targets = [_table(rel) for rel in node.objects or () if isinstance(rel, ast.RangeVar)]
        for target in targets:
            for grantee in node.grantees or ():
                who = (grantee.rolename or "public").lower()
                granted.setdefault(f"{target.lower()}|{who}", set()).update(privileges)
    return granted


# --- what the role holds -----------------------------------------------------------------------------

_ROLE_SQL = """
SELECT current_user, session_user, r.rolsuper,
       pg_has_role('pg_read_all_stats', 'USAGE'), pg_has_role('pg_signal_backend', 'USAGE')
FROM pg_roles r WHERE r.rolname = current_user
"""

_OBJECT_SQL = """
SELECT c.oid IS NOT NULL, coalesce(pg_get_userbyid(c.relowner), ''), coalesce(pg_has_role(c.relowner, 'USAGE'), false),
       coalesce(has_table_privilege(c.oid, 'REFERENCES'), false),
       coalesce(has_table_privilege(c.oid, 'TRIGGER'), false),
       CASE WHEN c.oid IS NULL THEN false WHEN current_setting('server_version_num')::int >= 170000
            THEN has_table_privilege(c.oid, 'MAINTAIN') ELSE pg_has_role(c.relowner, 'USAGE') END
FROM (SELECT to_regclass(%s) AS oid) r LEFT JOIN pg_class c ON c.oid = r.oid
"""

_EXTENSION_SQL = """
SELECT EXISTS (SELECT FROM pg_extension WHERE extname = %(name)s),
       (SELECT bool_or(trusted) FROM pg_available_extension_versions WHERE name = %(name)s),
       has_database_privilege(current_database(), 'CREATE')
"""

# Who holds what on the schema's existing tables, the owner left out: the application's role, typically.
_APPLICATION_GRANTS_SQL = """
SELECT pg_get_userbyid(a.grantee), a.privilege_type, count(DISTINCT c.oid),
       (SELECT count(*) FROM pg_class t WHERE t.relnamespace = n.oid AND t.relkind IN ('r', 'p'))
FROM pg_namespace n
JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p')
CROSS JOIN LATERAL aclexplode(c.relacl) a
WHERE n.nspname = %s AND a.grantee <> c.relowner AND a.grantee <> 0
GROUP BY a.grantee, a.privilege_type, n.oid
"""

# What a table the current role creates in the schema gets by default (ALTER DEFAULT PRIVILEGES).
_DEFAULT_GRANTS_SQL = """
SELECT pg_get_userbyid(a.grantee), a.privilege_type
FROM pg_default_acl d CROSS JOIN LATERAL aclexplode(d.defaclacl) a
WHERE d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = current_user) AND d.defaclobjtype = 'r'
  AND (d.defaclnamespace = 0 OR d.defaclnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %s))
"""


def _quote(name: str) -> str:
    """An identifier as a person would type it in a GRANT: quoted only when it must be."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) and name not in _RESERVED:
        return name
    return catalog.quote_ident(name)


_RESERVED = frozenset({"all", "user", "table", "select", "grant", "role", "order", "group", "default"})


def _one_row(conn: psycopg.Connection, query: str, params: Params | None = None) -> tuple[Any, ...]:
    """The row of a query that always returns one: a SELECT without FROM, a count, the current role's pg_roles row."""
    row = conn.execute(query, params).fetchone()
    assert row is not None, "a query of one row returned none"
    return row


def who(conn: psycopg.Connection) -> PrivilegeCheck:
    """The role acted as, logged in as, and what it holds, without judging anything."""
    role, login, superuser, read_stats, signal = _one_row(conn, _ROLE_SQL)
    held = tuple(name for name, has in (("pg_read_all_stats", read_stats), ("pg_signal_backend", signal)) if has)
    return PrivilegeCheck(role, login, bool(superuser), held)


def role_gaps(conn: psycopg.Connection, *, terminate: bool, ledger_schema: str) -> PrivilegeCheck:
    """The role's own standing: superuser, what it can see and signal, whether it can write the ledger."""
    found = who(conn)
    role, superuser = found.role, found.superuser
    read_stats, signal = "pg_read_all_stats" in found.held, "pg_signal_backend" in found.held
    gaps: list[Gap] = []
    quoted = _quote(role)
    if not superuser:
        if not read_stats:
            gaps.append(
                Gap(
                    WARN,
                    f"role {role} cannot see other roles' session state (no pg_read_all_stats): idle "
                    "transactions are detected from pg_locks alone, a holder judged after the blocker "
                    "threshold, and blockers are named without their state or query",
                    f"GRANT pg_read_all_stats TO {quoted} shows names and queries",
                )
            )
        if terminate and not signal:
            gaps.append(
                Gap(
                    NOGO,
                    f"--terminate-blockers-after needs pg_signal_backend to end another role's "
                    f"session, and role {role} does not have it",
                    f"GRANT pg_signal_backend TO {quoted}, or run without --terminate-blockers-after",
                )
            )
        if not read_stats and _one_row(conn, "SELECT count(*) FROM pg_stat_replication")[0]:
            gaps.append(
                Gap(
                    WARN,
                    f"role {role} cannot see the replicas' replay lag (no pg_read_all_stats): an "
                    "online backfill cannot pause for a replica that falls behind (--max-replica-lag)",
                    f"GRANT pg_read_all_stats TO {quoted}",
                )
            )
        if terminate and signal and not read_stats:
            gaps.append(
                Gap(
                    WARN,
                    "--terminate-blockers-after cannot tell an idle session of another role from a "
                    "busy one without pg_read_all_stats: such a session is waited for, never terminated",
                    f"GRANT pg_read_all_stats TO {quoted}",
                )
            )
    ledger = ledger_gap(conn, role, ledger_schema)
    if ledger is not None:
        gaps.append(ledger)
    return PrivilegeCheck(role, found.login, superuser, found.held, tuple(gaps))


def ledger_gap(conn: psycopg.Connection, role: str, schema: str) -> Gap | None:
    """Whether the role can create (first run) or write runbook's ledger in `schema`; None when it can."""
    table = f"{_quote(schema)}.phase_run"
    row = _one_row(
        conn,
        "SELECT to_regclass(%(t)s) IS NOT NULL, (SELECT oid FROM pg_namespace WHERE nspname = %(s)s) IS NOT NULL,"
        " has_database_privilege(current_database(), 'CREATE'), current_database()",
        {"t": table, "s": schema},
    )
    table_exists, schema_exists, create_db, database = row
    quoted = _quote(role)
    if table_exists:
        writable = _one_row(conn, "SELECT has_table_privilege(%s, 'INSERT, UPDATE')", (table,))[0]
        if writable:
            return None
        return Gap(
            NOGO,
            f"role {role} cannot write runbook's ledger {schema}.phase_run",
            f"GRANT INSERT, UPDATE ON {table} TO {quoted} (and USAGE on its sequence "
            f"{_quote(schema)}.phase_run_id_seq)",
        )
    if schema_exists:
        if _one_row(conn, "SELECT has_schema_privilege(%s, 'CREATE')", (schema,))[0]:
            return None
        return Gap(
            NOGO,
            f"role {role} cannot create runbook's ledger in schema {schema} (no CREATE on it)",
            f"GRANT CREATE ON SCHEMA {_quote(schema)} TO {quoted}, or set ledger_schema in runbook.toml "
            "(or --ledger-schema) to a schema it may create tables in",
        )
    if create_db:
        return None
    return Gap(
        NOGO,
        f"role {role} cannot create runbook's ledger schema {schema} (no CREATE on database {database})",
        f"GRANT CREATE ON DATABASE {_quote(database)} TO {quoted}, or set ledger_schema in runbook.toml (or "
        "--ledger-schema) to an existing schema it may create tables in",
    )


def statement_gaps(conn: psycopg.Connection, wanted: list[Need], role: str) -> list[Gap]:
    """Each need a role that is not a superuser does not meet (`Reading` asks only for those): a NO-GO naming
    the statement, the object and its owner, or (VACUUM, ANALYZE, which PostgreSQL skips with a warning) a WARN."""
    gaps: list[Gap] = []
    quoted = _quote(role)
    for need in wanted:
        where = f"statement {need.statement} (line {need.line}) {need.verb} {need.name}"
        if need.kind == CREATE:
            schema = need.name or _one_row(conn, "SELECT current_schema()")[0] or "public"
            ok = (
                _one_row(conn, "SELECT has_schema_privilege(%s, 'CREATE')", (schema,))[0]
                if _one_row(conn, "SELECT to_regnamespace(%s) IS NOT NULL", (_quote(schema),))[0]
                else True
            )
            if not ok:
                gaps.append(
                    Gap(
                        NOGO,
                        f"statement {need.statement} (line {need.line}) {need.verb} schema {schema}, "
                        f"where role {role} may not create",
                        f"GRANT CREATE ON SCHEMA {_quote(schema)} TO {quoted}",
                    )
                )
            continue
        if need.kind == EXTENSION:
            installed, trusted, create_db = _one_row(conn, _EXTENSION_SQL, {"name": need.name})
            if installed:
                continue
            if trusted is None:
                continue  # not available at all: the extension check names it and where to get it
            if not trusted:
                gaps.append(
                    Gap(
                        NOGO,
                        f"{where}, which only a superuser may create ({need.name} is not a trusted extension)",
                        f"ask an administrator to run CREATE EXTENSION {need.name} first",
                    )
                )
            elif not create_db:
                gaps.append(
                    Gap(
                        NOGO,
                        f"{where}, which needs CREATE on the database",
                        f"GRANT CREATE ON DATABASE {_quote(conn.info.dbname)} TO {quoted}",
                    )
                )
            continue
        exists, owner, owns, references, trigger, maintain = _one_row(
            conn, _OBJECT_SQL, (catalog.regclass_text(need.name),)
        )
        if not exists:
            continue  # created earlier in the release, or missing: the migration's own error then
        if need.kind == OWNER and not owns:
            gaps.append(
                Gap(
                    NOGO,
                    f"{where}, owned by {owner}: role {role} is neither {owner} nor a member of it",
                    f"act as the owner (--role {owner}), or GRANT {_quote(owner)} TO {quoted}",
                )
            )
        elif need.kind == REFERENCES and not references:
            gaps.append(
                Gap(
                    NOGO,
                    f"{where}, on which role {role} has no REFERENCES privilege",
                    f"GRANT REFERENCES ON {catalog.regclass_text(need.name)} TO {quoted}",
                )
            )
        elif need.kind == TRIGGER and not trigger:
            gaps.append(
                Gap(
                    NOGO,
                    f"{where}, on which role {role} has no TRIGGER privilege",
                    f"GRANT TRIGGER ON {catalog.regclass_text(need.name)} TO {quoted}",
                )
            )
        elif need.kind == MAINTAIN and not maintain:
            gaps.append(
                Gap(
                    WARN,
                    f"{where}, owned by {owner}: PostgreSQL skips it for role {role} with a warning",
                    f"run it as {owner}, or (PostgreSQL 17+) GRANT MAINTAIN ON "
                    f"{catalog.regclass_text(need.name)} TO {quoted}",
                )
            )
    return gaps


def _application_grants(conn: psycopg.Connection, schema: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Of the schema: what each role holds on at least half its tables (the application's way), and what a
    table the current role creates there gets by default."""
    expected: dict[str, set[str]] = {}
    for grantee, privilege, count, total in conn.execute(_APPLICATION_GRANTS_SQL, (schema,)):
        if total and count * 2 >= total:
            expected.setdefault(grantee, set()).add(privilege)
    defaults: dict[str, set[str]] = {}
    if expected:
        for grantee, privilege in conn.execute(_DEFAULT_GRANTS_SQL, (schema,)):
            defaults.setdefault(grantee, set()).add(privilege)
    return expected, defaults


def default_privilege_gaps(
    conn: psycopg.Connection, sql: str, *, filename: str | None = None, read: dict[str, tuple[dict, dict]] | None = None
) -> list[Gap]:
    """New tables the application's role will not reach as it reaches the existing ones: no default privileges
    grant it, and the migration does not either. `read`: each schema's grants, read once (`Reading`)."""
    read = {} if read is None else read
    granted = _granted_in(sql, filename)
    gaps: list[Gap] = []
    for table in created_tables(sql, filename=filename):
        schema = table.split(".")[0] if "." in table else (_one_row(conn, "SELECT current_schema()")[0] or "public")
        if schema not in read:
            read[schema] = _application_grants(conn, schema)
        expected, defaults = read[schema]
        for grantee, privileges in sorted(expected.items()):
            given = set(defaults.get(grantee, set()))
            for key in (
                f"{table.lower()}|{grantee.lower()}",
                f"{table.split('.')[-1].lower()}|{grantee.lower()}",
                f"*{schema.lower()}|{grantee.lower()}",
                f"{table.lower()}|public",
                f"*{schema.lower()}|public",
            ):
                given |= granted.get(key, set())
            if "ALL" in given:
                continue
            missing = [p for p in _TABLE_PRIVILEGES if p in privileges and p not in given]
            if missing:
                gaps.append(
                    Gap(
                        WARN,
                        f"new table {table} will lack {', '.join(missing)} for role {grantee}, which "
                        f"has them on the other tables of schema {schema} (no default privileges grant them)",
                        f"add GRANT {', '.join(missing)} ON {catalog.regclass_text(table)} TO {_quote(grantee)} "
                        f"to the migration, or ALTER DEFAULT PRIVILEGES IN SCHEMA {_quote(schema)} GRANT "
                        f"{', '.join(missing)} ON TABLES TO {_quote(grantee)}",
                    )
                )
    return gaps


@dataclass
class Reading:
    """One preflight's reading of the role's privileges, migration by migration.

    The role's own standing is checked once, with the first migration; each schema's grants are read once;
    the tables earlier migrations create need nothing. In a release nothing is applied until preflight ends,
    so what was read holds for every migration.
    """

    terminate: bool = False  # --terminate-blockers-after was given
    ledger_schema: str = "runbook"
    role: PrivilegeCheck | None = None
    created: set[str] = field(default_factory=set)
    grants: dict[str, tuple[dict, dict]] = field(default_factory=dict)

    def check(self, conn: psycopg.Connection, sql: str, *, filename: str | None = None) -> PrivilegeCheck:
        """The role and the gaps of one migration (with the role's own gaps on the first)."""
        first = self.role is None
        if self.role is None:
            self.role = role_gaps(conn, terminate=self.terminate, ledger_schema=self.ledger_schema)
        role = self.role
        gaps = list(role.gaps) if first else []
        if not role.superuser:  # a superuser may run every statement
            gaps += statement_gaps(conn, needs(sql, filename=filename, created=self.created), role.role)
        gaps += default_privilege_gaps(conn, sql, filename=filename, read=self.grants)
        self.created.update(created_tables(sql, filename=filename))
        return PrivilegeCheck(role.role, role.login, role.superuser, role.held, tuple(gaps))
