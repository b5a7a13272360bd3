"""Flyway's folder (`V<version>__<description>.sql`, `U...`, `R__...`) and its history, `flyway_schema_history`.

Flyway's rules, from its source (github.com/flyway/flyway, flyway-core and flyway-database-postgresql):

- resource/ResourceNameParser: a name is the prefix (`V` versioned, `U` undo, `R` repeatable), then for V and U a
  version, the separator `__` (its first occurrence), the description and the suffix `.sql`; the description shows
  `_` as a space. A `.sql` file whose name does not parse is passed over: Flyway refuses it only when
  validateMigrationNaming is set, and it is false by default. `R` names must have nothing before the separator.
- api/MigrationVersion: `_` in a version reads as `.`, the parts (split before each digit that follows a `.`) are
  BigIntegers, trailing zero parts are dropped, and two versions compare part by part with missing parts as 0, so
  1.0.0.3 < 1.0.0.3.1 < 1.0.0.10 and `1` equals `1.0`. The version recorded is the text with `_` as `.`.
- resolver/CompositeMigrationResolver: two migrations of one version ("Found more than one migration with
  version"), or two repeatables of one description, are refused. ResolvedMigrationComparator: versioned ones by
  version, then the repeatables by description.
- scanner/filesystem: a location is scanned recursively, and `script` is the file's path relative to the
  location (LoadableResource.getRelativePath). runbook reads the folder the same way, except runbook.toml's
  rollback_dir (hand-written undo scripts, which Flyway would not know).
- resolver/ChecksumCalculator: CRC32 of the file as stored (before placeholders), read line by line through
  BufferedReader.readLine (so `\\n`, `\\r\\n` and `\\r` all end a line and none is counted), a byte-order mark
  dropped from the first line (BomFilter), each line's UTF-8 bytes fed in turn; the result cast to a Java int.
- parser/PlaceholderReplacingReader and ParsingContext: `${name}` anywhere in the text is replaced from the
  configured placeholders, and `${flyway:defaultSchema}`, `${flyway:schemas}`, `${flyway:table}`,
  `${flyway:filename}` (and user, database, timestamp, workingDirectory, environment, known only at run time)
  from Flyway itself; a name with no value stops Flyway ("No value provided for placeholder").
- database/postgresql: PostgreSQLDatabase.getRawCreateScript is the table's DDL; PostgreSQLConnection.lock takes
  PostgreSQLAdvisoryLockTemplate's lock, number 0x466C79776179 ("Flyway") + the Java hashCode of the table's
  quoted name `"schema"."table"`.
- schemahistory/SchemaHistory and JdbcTableSchemaHistory: a row per migration run, installed_rank = MAX + 1
  (the schema-creation marker has 0); command/DbSchemas: before the first migration Flyway creates the configured
  schemas that are missing and, when it created any, writes the marker row `<< Flyway Schema Creation >>`.

runbook writes the rows Flyway writes, inside the migration's own transaction, so `flyway info` and
`flyway migrate` afterwards agree with runbook.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql

from runbook_lib.errors import BatchError, DatabaseError
from runbook_lib.layouts.base import FLYWAY, AppliedRow, LayoutSettings, Migration, ToolState, read_text

NAME = FLYWAY
TABLE = "flyway_schema_history"  # ClassicConfiguration: table's default
SEPARATOR = "__"  # sqlMigrationSeparator
SUFFIX = ".sql"  # sqlMigrationSuffixes
SCHEMA_MARKER = "<< Flyway Schema Creation >>"  # SchemaHistory.addSchemasMarker
UNDO_TYPE = "UNDO_SQL"  # CoreMigrationType.UNDO_SQL: the type Flyway's `undo` records for a U script
#: PostgreSQLAdvisoryLockTemplate.LOCK_MAGIC_NUM: "Flyway" as bytes, 77431708279161.
LOCK_MAGIC = (0x46 << 40) + (0x6C << 32) + (0x79 << 24) + (0x77 << 16) + (0x61 << 8) + 0x79
BOM = "\ufeff"

#: MigrationVersion.tokenize, after `_` became `.`: BigInteger parts (split before a digit following a `.`).
_VERSION = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)*")
#: What `evidence` counts: Flyway's three kinds of SQL script, by their usual names.
_EVIDENCE = re.compile(r"^(?:[VU][0-9][0-9._]*__.*|R__.*)\.sql$", re.DOTALL)
#: Row types after which a version counts as not applied: the undo types (CoreMigrationType's isUndo) and DELETE.
_UNDONE_TYPES = {"UNDO_SQL", "UNDO_JDBC", "UNDO_SPRING_JDBC", "UNDO_SCRIPT", "UNDO_CUSTOM", "DELETE"}
#: ParsingContext's built-ins that only a connection (or the moment) knows.
_RUNTIME_BUILTINS = ("user", "database", "timestamp", "workingDirectory", "environment")


@dataclass(frozen=True)
class FlywayMigration(Migration):
    """A Migration with what Flyway records besides: `script`, the file's path relative to the folder
    (`sub/V2__x.sql`), and `undo_script`, the undo file's (U scripts relative to the folder, rollback_dir's by
    name)."""

    script: str = ""
    undo_script: str = ""


@dataclass(frozen=True)
class _Name:
    """A file name as ResourceNameParser splits it."""

    prefix: str  # "V", "U" or "R"
    version: str  # as written ("1_1"); "" for R
    description: str  # with `_` shown as a space


# --- names and versions ----------------------------------------------------------------------------------


def _parse(filename: str) -> _Name | None:
    """ResourceNameParser.parse for the default prefixes, separator and suffix; None for a name Flyway passes over
    (not one of its scripts, or a V/U name without a valid version, or an R name with one)."""
    if not filename.endswith(SUFFIX) or filename[:1] not in ("V", "U", "R"):
        return None
    rest = filename[1 : -len(SUFFIX)]
    version, found, description = rest.partition(SEPARATOR)
    if not found:
        version, description = rest, ""
    if filename[0] == "R":
        return _Name("R", "", description.replace("_", " ")) if version == "" else None
    if not _VERSION.fullmatch(version.replace("_", ".")):
        return None
    return _Name(filename[0], version, description.replace("_", " "))


def display(version: str) -> str:
    """The version as Flyway shows and records it (MigrationVersion.displayText): `_` read as `.`."""
    return version.replace("_", ".")


def version_key(version: str) -> tuple[int, ...]:
    """MigrationVersion's comparison key: the numeric parts without trailing zeros, so `1` and `1.0` are equal and
    tuples order as Flyway orders versions (1.0.0.3 < 1.0.0.3.1 < 1.0.0.10)."""
    text = display(version)
    if not _VERSION.fullmatch(text):
        raise ValueError(f"{version!r} is not a Flyway version")
    parts = [int(p) for p in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def evidence(root: Path) -> int:
    """How many files directly in `root` are named like Flyway scripts (V<version>__, U<version>__, R__ ... .sql),
    so detection can tell this folder from the other tools'."""
    if not root.is_dir():
        return 0
    return sum(1 for p in root.iterdir() if _EVIDENCE.match(p.name) and p.is_file())  # a stat only for a match


# --- checksum --------------------------------------------------------------------------------------------


def checksum(data: bytes) -> int:
    """ChecksumCalculator's checksum of a file's bytes: CRC32 over the UTF-8 bytes of each line that
    BufferedReader.readLine returns (line ends `\\n`, `\\r\\n` and `\\r` not counted), the first line without its
    byte-order mark (BomFilter.FilterBomFromString), as a signed 32-bit int (`(int) crc32.getValue()`).

    Flyway reads the file through a strict UTF-8 decoder (FileSystemResource.read: charset.newDecoder()), so bytes
    that are not UTF-8 raise UnicodeDecodeError here as they stop Flyway.
    """
    text = data.decode("utf-8")
    text = text.removeprefix(BOM)
    crc = zlib.crc32(text.replace("\r", "").replace("\n", "").encode("utf-8"))
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def java_hash(text: str) -> int:
    """Java's String.hashCode: s[0]*31^(n-1) + ... + s[n-1] over UTF-16 code units, in 32-bit signed arithmetic."""
    units = text.encode("utf-16-be")
    value = 0
    for i in range(0, len(units), 2):
        value = (value * 31 + int.from_bytes(units[i : i + 2], "big")) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def lock_key(schema: str, table: str) -> int:
    """PostgreSQLAdvisoryLockTemplate's lock number for the history table: LOCK_MAGIC_NUM (77431708279161) plus
    `table.toString().hashCode()`, where a Table prints as Database.quote(schema, name): `"schema"."table"`
    (PostgreSQLDatabase.doQuote doubles a `"`)."""
    quoted = ".".join('"' + name.replace('"', '""') + '"' for name in (schema, table))
    return LOCK_MAGIC + java_hash(quoted)


# --- placeholders ----------------------------------------------------------------------------------------


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else '"' + name.replace('"', '\\"') + '"'


def _builtins(filename: str, settings: LayoutSettings) -> dict[str, str]:
    """ParsingContext.populate's placeholders that runbook.toml decides: defaultSchema (the first schema),
    schemas, table, and filename (updateFilenamePlaceholder: the script's file name)."""
    values = {
        "flyway:schemas": ",".join(settings.schemas),
        "flyway:table": settings.table or TABLE,
        "flyway:filename": filename,
    }
    if settings.schemas:
        values["flyway:defaultSchema"] = settings.schemas[0]
    return values


def _unresolved(path: Path, name: str) -> BatchError:
    """The sentence for a placeholder with no value (Flyway: "No value provided for placeholder")."""
    if name == "flyway:defaultSchema":
        return BatchError(
            f"{path} uses the placeholder ${{flyway:defaultSchema}}, Flyway's default schema, which "
            'runbook takes from runbook.toml; set schemas under [flyway] (schemas = ["..."]).'
        )
    if name.removeprefix("flyway:") in _RUNTIME_BUILTINS and name.startswith("flyway:"):
        return BatchError(
            f"{path} uses Flyway's built-in placeholder ${{{name}}}, whose value Flyway takes when it "
            f'runs; set it in runbook.toml under [flyway] placeholders ({_toml_key(name)} = "...").'
        )
    return BatchError(
        f"{path} uses the placeholder ${{{name}}}, which has no value; set it in runbook.toml under "
        f'[flyway] placeholders ({_toml_key(name)} = "...").'
    )


def substitute(text: str, path: Path, settings: LayoutSettings) -> str:
    """The text with its placeholders replaced as PlaceholderReplacingReader replaces them (prefix `${`, suffix
    `}`); a name with no value is refused, naming the file.

    The reader's own scan is kept: a `$` not followed by `{` is passed on together with the character after it, so
    `$${x}` stays as written (that second `$` never starts a placeholder), and an unclosed `${` takes the rest of
    the text, less its last character, as the name. runbook.toml's placeholders may also give the built-ins that
    only a running Flyway knows (`flyway:user`, ...); those that runbook.toml decides win, as in Flyway.
    """
    values = {**settings.placeholders, **_builtins(path.name, settings)}
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("${", i):
            end = text.find("}", i + 2)
            name, i = (text[i + 2 : end], end + 1) if end >= 0 else (text[i + 2 : -1], len(text))
            if name not in values:
                raise _unresolved(path, name)
            out.append(values[name])
        else:
            out.append(text[i : i + 2])
            i += 2
    return "".join(out)


def down_sql(migration: Migration, settings: LayoutSettings) -> str:
    """The undo script's text to run: as stored, without a byte-order mark, placeholders replaced as for the
    forward script; "" when the migration has none."""
    if migration.down is None:
        return ""
    return substitute(_text(migration.down), migration.down, settings)


# --- the folder ------------------------------------------------------------------------------------------


def _text(path: Path) -> str:
    """The file's text as Flyway decodes it (UTF-8, strictly), without a leading byte-order mark."""
    try:
        return read_text(path).removeprefix(BOM)
    except UnicodeDecodeError as exc:
        raise BatchError(
            f"{path} is not UTF-8 (byte {exc.start}), the encoding Flyway reads by default; save it as UTF-8."
        ) from None


def _scripts(root: Path, skip: Path | None) -> list[tuple[Path, _Name]]:
    """Every Flyway script under `root`, recursively as Flyway's filesystem scanner finds them, in path order,
    leaving out the rollback folder."""
    skip = skip.resolve() if skip is not None else None
    found = []
    for path in sorted(root.rglob("*" + SUFFIX)):
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        name = _parse(path.name)
        if name is not None and path.is_file():
            found.append((path, name))
    return found


def _by_version(found: list[tuple[Path, _Name]], kind: str) -> dict[tuple[int, ...], tuple[Path, _Name]]:
    """The scripts of one prefix by version key; two of one version are refused as Flyway refuses them."""
    seen: dict[tuple[int, ...], tuple[Path, _Name]] = {}
    for path, name in found:
        key = version_key(name.version)
        if key in seen:
            other = seen[key][0]
            raise BatchError(
                f"{path} has version {display(name.version)}, the same version as {other} for Flyway "
                f'("Found more than one {kind} with version {display(name.version)}"); give one of '
                "them a new version."
            )
        seen[key] = (path, name)
    return seen


def _repeatables(found: list[tuple[Path, _Name]]) -> list[tuple[Path, _Name]]:
    """The R scripts in Flyway's order (by description); two of one description are refused, as Flyway does."""
    seen: dict[str, Path] = {}
    for path, name in found:
        if name.description in seen:
            raise BatchError(
                f'{path} has the description "{name.description}", as {seen[name.description]} has, '
                "and Flyway refuses two repeatable migrations of one description; rename one of them."
            )
        seen[name.description] = path
    return sorted(found, key=lambda item: item[1].description)


def _rollbacks(folder: Path) -> dict[tuple[int, ...], Path]:
    """rollback_dir's undo scripts by version: `<version>__<description>.sql` (a `U` or `V` before the version is
    allowed); other files are passed over, two of one version refused."""
    if not folder.is_dir():
        raise BatchError(
            f"rollback_dir {folder} is not a folder; create it, or remove rollback_dir from "
            f"runbook.toml's [{NAME}] table."
        )
    found: dict[tuple[int, ...], Path] = {}
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        name = _parse("U" + path.name.removeprefix("U").removeprefix("V"))
        if name is None or not path.is_file():
            continue
        key = version_key(name.version)
        if key in found:
            raise BatchError(
                f"{path} undoes version {display(name.version)}, as {found[key].name} does; keep one "
                "undo script per version in rollback_dir."
            )
        found[key] = path
    return found


def _relative(path: Path, root: Path) -> str:
    """The script's path as Flyway records it: relative to the location, with `/`."""
    return path.relative_to(root).as_posix()


def _migration(
    root: Path, path: Path, name: _Name, down: Path | None, undo_script: str, settings: LayoutSettings
) -> FlywayMigration:
    data = path.read_bytes()
    try:
        crc = checksum(data)
    except UnicodeDecodeError as exc:
        raise BatchError(
            f"{path} is not UTF-8 (byte {exc.start}), the encoding Flyway reads by default; save it as UTF-8."
        ) from None
    return FlywayMigration(
        version=display(name.version),
        name=path.name.removesuffix(SUFFIX),
        description=name.description,
        path=path,
        sql=substitute(_text(path), path, settings),
        down=down,
        kind="versioned" if name.prefix == "V" else "repeatable",
        checksum=str(crc),
        script=_relative(path, root),
        undo_script=undo_script,
    )


def read(root: Path, settings: LayoutSettings) -> list[Migration]:
    """The folder's migrations in Flyway's order: the V scripts by version, then the R scripts by description.

    Each V script's undo is the U script of its version in the folder, else rollback_dir's script of that version.
    U scripts and rollback_dir are not migrations. Files whose names Flyway would not parse are passed over
    (validateMigrationNaming is false by default); the folder is read recursively, as Flyway scans a location.
    """
    if not root.is_dir():
        raise BatchError(
            f"{root} is not a folder; pass --migrations-dir with Flyway's migrations folder (its location)."
        )
    found = _scripts(root, settings.rollback_dir)
    versioned = _by_version([f for f in found if f[1].prefix == "V"], "migration")
    undos = _by_version([f for f in found if f[1].prefix == "U"], "undo migration")
    rollbacks = _rollbacks(settings.rollback_dir) if settings.rollback_dir is not None else {}
    migrations: list[Migration] = []
    for key in sorted(versioned):
        path, name = versioned[key]
        if key in undos:
            down, undo_script = undos[key][0], _relative(undos[key][0], root)
        elif key in rollbacks:
            down, undo_script = rollbacks[key], rollbacks[key].name
        else:
            down, undo_script = None, ""
        migrations.append(_migration(root, path, name, down, undo_script, settings))
    for path, name in _repeatables([f for f in found if f[1].prefix == "R"]):
        migrations.append(_migration(root, path, name, None, "", settings))
    return migrations


# --- the history table -----------------------------------------------------------------------------------


def _script(migration: Migration) -> str:
    return getattr(migration, "script", "") or migration.path.name


def _abbreviate(description: str, script: str) -> tuple[str, str]:
    """AbbreviationUtils: a description over 200 characters cut to 197 + "...", a script over 1000 to
    "..." + its characters 3 to 1000."""
    if len(description) > 200:
        description = description[:197] + "..."
    if len(script) > 1000:
        script = "..." + script[3:1000]
    return description, script


@dataclass(frozen=True)
class _Row:
    rank: int
    version: str | None
    description: str
    type: str
    script: str
    checksum: int | None
    installed_on: datetime | None
    installed_by: str
    success: bool


class History:
    """Flyway's `flyway_schema_history` (or runbook.toml's [flyway] table) in the first of [flyway] schemas, else in
    the connection's current schema, as Flyway places it."""

    def __init__(self, settings: LayoutSettings) -> None:
        self.settings = settings
        self.table = settings.table or TABLE
        self.label = f"Flyway's {self.table}"
        self._held: list[int] = []

    # -- where the table is ------------------------------------------------------------------------------------

    def schema(self, conn: psycopg.Connection) -> str:
        """Flyway's default schema: the first configured schema, else the connection's current schema."""
        if self.settings.schemas:
            return self.settings.schemas[0]
        row = conn.execute("SELECT current_schema()").fetchone()
        assert row is not None  # a SELECT without FROM returns one row
        schema = row[0]
        if schema is None:
            raise DatabaseError(
                f"The search_path names no existing schema, so {self.label} has none (Flyway refuses "
                "this too); set schemas under [flyway] in runbook.toml, or set the search_path."
            )
        return schema

    def _name(self, conn: psycopg.Connection) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema(conn)), sql.Identifier(self.table))

    def exists(self, conn: psycopg.Connection) -> bool:
        """PostgreSQLTable.doExists: a table of that name in that schema."""
        row = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p'))",
            (self.schema(conn), self.table),
        ).fetchone()
        assert row is not None  # SELECT EXISTS (...) returns one row
        return row[0]

    # -- before the first migration ----------------------------------------------------------------------------

    def prepare(self, conn: psycopg.Connection) -> str:
        """What Flyway does before its first migration while the table is missing (DbSchemas.create): create each
        configured schema that is missing and, when it created any, the table with the marker row naming them."""
        if not self.settings.schemas or self.exists(conn):
            return ""
        created = [s for s in self.settings.schemas if not _schema_exists(conn, s)]
        for schema in created:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        if not created:
            return ""
        self._create_table(conn)
        listed = ",".join('"' + s.replace('"', '""') + '"' for s in created)  # Schema.toString: quoted
        self._insert(conn, 0, None, SCHEMA_MARKER, "SCHEMA", listed, None, "", 0, True)
        return f"created schema(s) {listed} and {self.label} with its {SCHEMA_MARKER} row, as Flyway does"

    def _create_table(self, conn: psycopg.Connection) -> None:
        """PostgreSQLDatabase.getRawCreateScript (no tablespace, no baseline)."""
        name, table = self._name(conn), self.table
        conn.execute(
            sql.SQL(
                'CREATE TABLE {} (\n    "installed_rank" INT NOT NULL,\n    "version" VARCHAR(50),\n'
                '    "description" VARCHAR(200) NOT NULL,\n    "type" VARCHAR(20) NOT NULL,\n'
                '    "script" VARCHAR(1000) NOT NULL,\n    "checksum" INTEGER,\n'
                '    "installed_by" VARCHAR(100) NOT NULL,\n    "installed_on" TIMESTAMP NOT NULL DEFAULT now(),\n'
                '    "execution_time" INTEGER NOT NULL,\n    "success" BOOLEAN NOT NULL\n)'
            ).format(name)
        )
        conn.execute(
            sql.SQL('ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ("installed_rank")').format(
                name, sql.Identifier(f"{table}_pk")
            )
        )
        conn.execute(sql.SQL('CREATE INDEX {} ON {} ("success")').format(sql.Identifier(f"{table}_s_idx"), name))

    def _ensure_table(self, conn: psycopg.Connection) -> str:
        """JdbcTableSchemaHistory.create: the table, with Flyway's DDL, when it is missing."""
        if self.exists(conn):
            return ""
        self._create_table(conn)
        return f"created {self.label}; "

    # -- reading -----------------------------------------------------------------------------------------------

    def _rows(self, conn: psycopg.Connection) -> list[_Row]:
        """PostgreSQLDatabase.getSelectStatement: every row, by installed_rank."""
        rows = conn.execute(
            sql.SQL(
                'SELECT "installed_rank", "version", "description", "type", "script", "checksum", "installed_on", '
                '"installed_by", "success" FROM {} ORDER BY "installed_rank"'
            ).format(self._name(conn))
        ).fetchall()
        return [_Row(*row) for row in rows]

    def read(self, conn: psycopg.Connection, migrations: list[Migration]) -> ToolState:
        """The history as `flyway migrate` reads it, row by row in installed_rank order: a successful versioned row
        applies its version (until an undo or DELETE row for it), a BASELINE row every version up to its own, a
        repeatable's latest successful row gives its checksum; a failed row stops Flyway (validate: "Detected
        failed migration"). `last` is the highest version applied or baselined. Creates nothing."""
        if not self.exists(conn):
            return ToolState(exists=False)
        versions = {version_key(m.version): m.version for m in migrations if m.kind == "versioned"}
        repeatables = {m.description: m.name for m in migrations if m.kind == "repeatable"}
        applied: dict[str, AppliedRow] = {}
        ranks: dict[str, tuple[int, ...]] = {}  # the versioned keys of `applied`, with their comparison keys
        baseline: tuple[tuple[int, ...], str] | None = None  # the highest BASELINE row's version: key, text
        blocked = ""
        for row in self._rows(conn):
            if row.type == "SCHEMA":
                continue
            if not row.success:
                blocked = blocked or self._failed(row)
                continue
            if row.version is None:
                key = repeatables.get(row.description) or Path(row.script).name.removesuffix(SUFFIX)
                if row.type in _UNDONE_TYPES:
                    applied.pop(key, None)
                elif row.type != "BASELINE":
                    applied[key] = _applied(key, row)
                continue
            order = _key(row.version)
            key = versions.get(order, display(row.version)) if order is not None else row.version
            if row.type == "BASELINE":
                if order is not None and (baseline is None or order > baseline[0]):
                    baseline = (order, display(row.version))
            elif row.type in _UNDONE_TYPES:
                applied.pop(key, None)
                ranks.pop(key, None)
            else:
                applied[key] = _applied(key, row)
                if order is not None:
                    ranks[key] = order
        if baseline is not None:
            for order, version in versions.items():
                if order <= baseline[0] and version not in applied:
                    applied[version] = AppliedRow(key=version)
                    ranks[version] = order
        return ToolState(exists=True, applied=applied, blocked=blocked, last=_last(ranks, versions, baseline))

    def _failed(self, row: _Row) -> str:
        if row.version is None:
            what = f'failed repeatable migration "{row.description}"'
        else:
            what = f"failed migration {display(row.version)}"
        return (
            f"{self.label} has a {what} ({row.script}, success = false); fix the database by hand, then run "
            "`flyway repair` (which removes the failed row) and deploy again."
        )

    # -- locking -----------------------------------------------------------------------------------------------

    def lock(self, conn: psycopg.Connection) -> None:
        """The advisory lock Flyway takes around each migration (PostgreSQLConnection.lock), session-level and
        waiting: `pg_advisory_lock(lock_key)`. Flyway itself tries `pg_try_advisory_xact_lock` (its default,
        postgresql.transactional.lock) or `pg_try_advisory_lock` on the same number, retrying; either conflicts
        with this lock, so a concurrent `flyway migrate` waits while runbook holds it."""
        key = lock_key(self.schema(conn), self.table)
        conn.execute("SELECT pg_advisory_lock(%s::bigint)", (key,))
        self._held.append(key)

    def unlock(self, conn: psycopg.Connection) -> None:
        """PostgreSQLAdvisoryLockTemplate.unlock: `pg_advisory_unlock` of the number taken (kept, since a
        migration may change the search_path in between)."""
        key = self._held.pop() if self._held else lock_key(self.schema(conn), self.table)
        conn.execute("SELECT pg_advisory_unlock(%s::bigint)", (key,))

    # -- writing (inside the caller's transaction; never commits) -----------------------------------------------

    def _insert(
        self,
        conn: psycopg.Connection,
        rank: int | None,
        version: str | None,
        description: str,
        kind: str,
        script: str,
        crc: int | None,
        installed_by: str,
        execution_ms: int,
        success: bool,
    ) -> int:
        """Database.getInsertStatement with SchemaHistory.addAppliedMigration's values: installed_rank MAX + 1
        (None) unless given, installed_by the given user else current_user (Database.getInstalledBy)."""
        name = self._name(conn)
        if rank is None:
            row = conn.execute(sql.SQL('SELECT COALESCE(MAX("installed_rank"), 0) + 1 FROM {}').format(name)).fetchone()
            assert row is not None  # an aggregate without GROUP BY returns one row
            rank = row[0]
        description, script = _abbreviate(description, script)
        conn.execute(
            sql.SQL(
                'INSERT INTO {} ("installed_rank", "version", "description", "type", "script", "checksum", '
                '"installed_by", "execution_time", "success") VALUES (%s, %s, %s, %s, %s, %s, '
                "COALESCE(NULLIF(%s, ''), current_user), %s, %s)"
            ).format(name),
            (rank, version, description, kind, script, crc, installed_by, execution_ms, success),
        )
        return rank

    def _record(
        self, conn: psycopg.Connection, migration: Migration, *, success: bool, execution_ms: int, installed_by: str
    ) -> str:
        """The row DbMigrate writes for a run of `migration`: type SQL, its version (NULL for a repeatable),
        description, script and checksum."""
        created = self._ensure_table(conn)
        version = migration.version if migration.kind == "versioned" else None
        crc = int(migration.checksum) if migration.checksum else None
        rank = self._insert(
            conn,
            None,
            version,
            migration.description,
            "SQL",
            _script(migration),
            crc,
            installed_by,
            execution_ms,
            success,
        )
        return f"{created}{self.table} row {rank}: {_script(migration)}, success = {str(success).lower()}"

    def record_applied(
        self,
        conn: psycopg.Connection,
        migration: Migration,
        migrations: list[Migration],
        *,
        ran: bool = True,
        execution_ms: int = 0,
        installed_by: str = "",
    ) -> str:
        """The row `flyway migrate` writes after the migration ran: type SQL, success = true.

        `ran` False (a baseline of a script already applied by hand) writes the same row, so Flyway validates
        that script's checksum and counts it applied. Flyway's own `baseline` would instead write one BASELINE row
        ("<< Flyway Baseline >>") hiding every version up to it, which cannot say which scripts were applied.
        """
        return self._record(conn, migration, success=True, execution_ms=execution_ms, installed_by=installed_by)

    def record_failed(
        self,
        conn: psycopg.Connection,
        migration: Migration,
        migrations: list[Migration],
        *,
        execution_ms: int = 0,
        installed_by: str = "",
    ) -> str:
        """The row Flyway writes when a script run outside a transaction fails: success = false, which stops
        Flyway until `flyway repair` removes it (a transactional failure rolls back and leaves no row)."""
        return self._record(conn, migration, success=False, execution_ms=execution_ms, installed_by=installed_by)

    def record_rolled_back(self, conn: psycopg.Connection, migration: Migration, migrations: list[Migration]) -> str:
        """The row `flyway undo` writes after the undo script ran: type UNDO_SQL, the migration's version, the undo
        script's description, path and checksum, success = true; Flyway then shows the version as Undone and
        `migrate` runs it again. UNDO_SQL is the type Flyway Teams (5 to 10) writes for a U script; the newest
        open-source UndoSqlMigrationResolver types it UNDO_SCRIPT, and runbook reads either as undone."""
        if migration.kind != "versioned" or migration.down is None:
            raise BatchError(
                f"{migration.path} has no undo script, so Flyway's history cannot record it undone; add "
                f"U{migration.version}__<description>.sql beside it, or one in rollback_dir."
            )
        created = self._ensure_table(conn)
        undo = migration.down
        parsed = _parse("U" + undo.name.removeprefix("U").removeprefix("V"))
        description = parsed.description if parsed else migration.description
        script = getattr(migration, "undo_script", "") or undo.name
        rank = self._insert(
            conn, None, migration.version, description, UNDO_TYPE, script, checksum(undo.read_bytes()), "", 0, True
        )
        return f"{created}{self.table} row {rank}: {script} ({UNDO_TYPE}), version {migration.version} undone"


def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = %s)", (schema,)).fetchone()
    assert row is not None  # SELECT EXISTS (...) returns one row
    return row[0]


def _key(version: str) -> tuple[int, ...] | None:
    """A stored version's comparison key; None for text Flyway could not have written as a version."""
    try:
        return version_key(version)
    except ValueError:
        return None


def _applied(key: str, row: _Row) -> AppliedRow:
    return AppliedRow(
        key=key,
        checksum=None if row.checksum is None else str(row.checksum),
        applied_at=row.installed_on,
        applied_by=row.installed_by,
    )


def _last(
    ranks: dict[str, tuple[int, ...]],
    versions: dict[tuple[int, ...], str],
    baseline: tuple[tuple[int, ...], str] | None,
) -> str | None:
    """The highest version applied or baselined, as `flyway info` shows the current version (a baseline version
    that no script has, as its row holds it)."""
    best = max(ranks, key=ranks.__getitem__, default=None)
    if baseline is not None and (best is None or baseline[0] > ranks[best]):
        return versions.get(baseline[0], baseline[1])
    return best
