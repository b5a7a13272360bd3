"""runbook.toml's layout keys: `layout` and each tool's own table of settings, read into `LayoutSettings`.

One design for every key of runbook.toml (config.PROJECT_KEYS): top-level keys for runbook itself
(`migrations_dir`, `ledger_schema`, `layout`), and a table per tool named as the tool is, holding the tool's own
setting names (Flyway's `placeholders`, `schemas`, `table`, `locations`; golang-migrate's `table`; Drizzle's `out`,
`migrations_schema`, `migrations_table`), plus `rollback_dir` for a folder of hand-written undo scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runbook_lib.errors import ProjectError
from runbook_lib.layouts.base import DRIZZLE, FLYWAY, GOLANG_MIGRATE, LAYOUTS, LayoutSettings
from runbook_lib.tomltext import line_of

#: Each tool's table in runbook.toml and the keys it takes.
TOOL_KEYS = {
    FLYWAY: ("locations", "placeholders", "schemas", "table", "rollback_dir", "out_of_order"),
    GOLANG_MIGRATE: ("table", "rollback_dir", "out_of_order"),
    DRIZZLE: ("out", "migrations_schema", "migrations_table", "rollback_dir", "out_of_order"),
}


def _fail(path: Path, text: str, key: str, sentence: str) -> ProjectError:
    return ProjectError(f"{path} line {line_of(text, key)}: {sentence}")


def _name(path: Path, text: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.encode()) > 63:
        raise _fail(path, text, key, f"{key} must name a PostgreSQL identifier (at most 63 bytes), as a string.")
    return value


def read(path: Path, text: str, raw: dict[str, Any]) -> tuple[LayoutSettings, Path | None]:
    """The layout settings of a parsed runbook.toml, and the folder a tool's table names (Flyway's first location,
    Drizzle's `out`), relative to the file; refused with the line of a bad value."""
    layout = raw.get("layout")
    if layout is not None and layout not in LAYOUTS:
        raise _fail(
            path, text, "layout", f"layout must be one of {', '.join(repr(x) for x in LAYOUTS)}, not {layout!r}."
        )
    values: dict[str, Any] = {}
    folder: Path | None = None
    for tool, keys in TOOL_KEYS.items():
        table = raw.get(tool)
        if table is None:
            continue
        if not isinstance(table, dict):
            raise _fail(path, text, tool, f"[{tool}] must be a table of {tool}'s settings ({', '.join(keys)}).")
        if layout is not None and layout != tool:
            raise _fail(path, text, tool, f"[{tool}] settings, but layout = {layout!r}; remove one of them.")
        layout = layout or tool
        for key, value in table.items():
            if key not in keys:
                raise _fail(path, text, key, f"unknown key {key!r} in [{tool}]; its keys are {', '.join(keys)}.")
            if key == "placeholders":
                if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                    raise _fail(
                        path,
                        text,
                        key,
                        'placeholders must be a table of strings (placeholders = { mySchema = "app" }).',
                    )
                values[key] = dict(value)
            elif key == "schemas":
                if not isinstance(value, list) or not value:
                    raise _fail(path, text, key, 'schemas must be a list of schema names (schemas = ["app"]).')
                values[key] = tuple(_name(path, text, key, v) for v in value)
            elif key in ("table", "migrations_schema", "migrations_table"):
                values[key] = _name(path, text, key, value)
            elif key == "out_of_order":
                if not isinstance(value, bool):
                    raise _fail(path, text, key, "out_of_order must be true or false.")
                values[key] = value
            else:  # a folder: locations (Flyway, one), out (Drizzle), rollback_dir
                given = value[0] if key == "locations" and isinstance(value, list) and len(value) == 1 else value
                if not isinstance(given, str) or not given.strip():
                    raise _fail(path, text, key, f"{key} must name one folder, relative to this file.")
                resolved = (path.parent / given.removeprefix("filesystem:")).resolve()
                if key == "rollback_dir":
                    values[key] = resolved
                else:
                    folder = resolved
    return LayoutSettings(layout=layout, **values), folder
