"""fleet.toml: read and validate the list of targets and waves before any cluster starts.

Every refusal is one sentence naming the file and the line (found with `runbook_lib.tomltext`, the
one TOML position lookup), and fleet.toml never holds a URL: a target names the environment
variable that does, and a value that looks like a URL is refused without being echoed.
"""

from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path

from runbook_lib.errors import FleetError
from runbook_lib.report.fleet_record import EVERYONE_ELSE, FLEET_FOLDER, Fleet, FleetTarget
from runbook_lib.tomltext import header_lines, line_of

_TARGET_KEYS = ("name", "url_env", "group")
_FLEET_KEYS = ("waves",)
_SECRET_KEYS = ("url", "database_url", "dsn", "conninfo", "password", "uri", "connection")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def _looks_like_secret(value: str) -> bool:
    return "://" in value or "@" in value or "=" in value or "/" in value


def load(path: Path | str) -> Fleet:
    """Read and validate fleet.toml; every refusal is one sentence naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FleetError(
            f"The targets file {path} does not exist; pass --targets with a fleet.toml "
            "that lists [[target]] tables (name, url_env, group)."
        )
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f"{path} is not valid TOML ({exc}); fix the syntax there.") from None
    for key in raw:
        if key not in ("target", "fleet"):
            hint = (
                " and fleet.toml holds no secrets: put the URL in an environment variable and name it with url_env"
                if key.lower() in _SECRET_KEYS
                else ""
            )
            raise FleetError(
                f"{path} line {line_of(text, key)}: unknown key {key!r} at the top level; "
                f"the file has [[target]] tables and one [fleet] table{hint}."
            )
    waves, waves_line = _waves(path, text, raw.get("fleet", {}))
    targets = _targets(path, text, raw.get("target", []), waves)
    groups = {t.group for t in targets if t.group}
    for wave in waves:
        if wave != EVERYONE_ELSE and wave not in groups:
            raise FleetError(
                f"{path} line {waves_line}: [fleet].waves names group {wave!r}, but no target is in it; "
                "remove it from waves or set group on a target."
            )
    loose = [t.name for t in targets if t.group is None]
    if loose and EVERYONE_ELSE not in waves:
        raise FleetError(
            f"{path} line {waves_line}: targets without a group ({', '.join(loose)}) are in no wave; "
            'add "*" to [fleet].waves or give them a group.'
        )
    return Fleet(path, tuple(targets), tuple(waves))


def _waves(path: Path, text: str, fleet_table: object) -> tuple[list[str], int]:
    """[fleet].waves (default: one wave of everyone) and the line to name when the waves are wrong."""
    fleet_line = (header_lines(text, "fleet") or [1])[0]
    if not isinstance(fleet_table, dict):
        raise FleetError(f"{path} line {fleet_line}: [fleet] must be a table with waves = [...].")
    for key in fleet_table:
        if key not in _FLEET_KEYS:
            raise FleetError(
                f"{path} line {line_of(text, key, table_line=fleet_line)}: unknown key {key!r} in "
                "[fleet]; the only key there is waves."
            )
    waves_line = line_of(text, "waves", table_line=fleet_line)
    waves = fleet_table.get("waves", [EVERYONE_ELSE])
    if not isinstance(waves, list) or not waves or not all(isinstance(w, str) and w.strip() for w in waves):
        raise FleetError(
            f"{path} line {waves_line}: [fleet].waves must be a non-empty list of group names "
            '(and "*" for every target without a group), like ["canary", "*"].'
        )
    repeated = sorted({w for w in waves if waves.count(w) > 1})
    if repeated:
        raise FleetError(f"{path} line {waves_line}: [fleet].waves lists {repeated[0]!r} twice; name each wave once.")
    return waves, waves_line


def _targets(path: Path, text: str, entries: object, waves: list[str]) -> list[FleetTarget]:
    """The [[target]] tables in file order, each checked on its own and against the others."""
    starts = header_lines(text, "target")
    if not isinstance(entries, list) or not entries:
        raise FleetError(f"{path}: no [[target]] table; list each database as [[target]] with name and url_env.")
    targets: list[FleetTarget] = []
    seen_names: dict[str, int] = {}
    seen_env: dict[str, str] = {}
    for index, entry in enumerate(entries):
        start = starts[index] if index < len(starts) else 1
        at = functools.partial(_where, path, text, start)
        where = f"{path} line {start}"
        label = f"[[target]] number {index + 1}"
        if isinstance(entry.get("name"), str):
            label = f"target {entry['name']!r}"
        for key in entry:
            if key in _TARGET_KEYS:
                continue
            if key.lower() in _SECRET_KEYS:
                raise FleetError(
                    f"{at(key)}: {label} has {key!r}, but fleet.toml holds no secrets; put the URL in "
                    "an environment variable and name that variable with url_env."
                )
            raise FleetError(
                f"{at(key)}: unknown key {key!r} in {label}; the keys of a target are name, url_env and group."
            )
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise FleetError(f"{where}: {label} has no name; add name = \"...\" (letters, digits, '_', '.', '-').")
        name_line = line_of(text, "name", table_line=start)
        if not _TARGET_NAME.match(name):
            raise FleetError(
                f"{path} line {name_line}: target name {name!r} is not usable as "
                "a folder name; use letters, digits, '_', '.' and '-' only."
            )
        if name == FLEET_FOLDER:
            raise FleetError(
                f"{path} line {name_line}: the target name {name!r} is reserved "
                "for the fleet report folder; choose another name."
            )
        if name in seen_names:
            raise FleetError(
                f"{path} line {name_line}: target name {name!r} is used twice "
                f"(lines {seen_names[name]} and {name_line}); give each target its own name."
            )
        seen_names[name] = name_line
        url_env = _url_env(at("url_env"), where, name, entry.get("url_env"))
        if url_env in seen_env:
            raise FleetError(
                f"{at('url_env')}: targets {seen_env[url_env]!r} and {name!r} both read {url_env}; "
                "each target is its own database, with its own variable."
            )
        seen_env[url_env] = name
        group = entry.get("group")
        if group is not None:
            _check_group(at("group"), name, group, waves)
        targets.append(FleetTarget(name, url_env, group, start))
    return targets


def _where(path: Path, text: str, table_line: int, key: str) -> str:
    """ "<file> line <n>" of `key` in the table whose header is at `table_line` (else that header)."""
    return f"{path} line {line_of(text, key, table_line=table_line)}"


def _url_env(env_line: str, where: str, name: str, url_env: object) -> str:
    """The variable name of a target's URL; what looks like a URL itself is refused, never echoed."""
    if not isinstance(url_env, str) or not url_env:
        raise FleetError(
            f'{where}: target {name!r} has no url_env; add url_env = "NAME_OF_A_VARIABLE" holding its database URL.'
        )
    if not _ENV_NAME.match(url_env):
        if _looks_like_secret(url_env):  # never echo what may be a URL with its password
            raise FleetError(
                f"{env_line}: url_env of target {name!r} must name an environment variable "
                "(like TENANT_A_URL), not hold a URL; fleet.toml holds no secrets."
            )
        raise FleetError(
            f"{env_line}: url_env {url_env!r} of target {name!r} is not an environment variable "
            "name; use letters, digits and '_' (like TENANT_A_URL)."
        )
    return url_env


def _check_group(group_line: str, name: str, group: object, waves: list[str]) -> None:
    if not isinstance(group, str) or not group.strip():
        raise FleetError(f"{group_line}: group of target {name!r} must be a non-empty string.")
    if group == EVERYONE_ELSE:
        raise FleetError(
            f'{group_line}: group "*" is reserved for the targets without a group; leave group out for target {name!r}.'
        )
    if group not in waves:
        raise FleetError(
            f"{group_line}: target {name!r} is in group {group!r}, which [fleet].waves "
            f"({', '.join(waves)}) does not list; add it to waves or fix the group."
        )
