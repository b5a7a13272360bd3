"""batch.toml: read, checked key by key, every refusal naming the file and line."""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path

from runbook_lib.batch.model import (
    CHECK_KINDS,
    ON_DELETE_ACTIONS,
    Batch,
    CheckConstraintCheck,
    Checks,
    ColumnRef,
    ColumnTypeCheck,
    ForeignKeyCheck,
    IndexCheck,
    TableRef,
    UniqueCheck,
)
from runbook_lib.errors import BatchError
from runbook_lib.sql.parse import type_name_sql
from runbook_lib.tomltext import line_of as _line_of

_TOP_KEYS = {"batch", "title", "type", "depends_on", "description", "checks", "pause_before"}
_FK_KEYS = {"column", "references", "on_delete"}


class _Manifest:
    """batch.toml's text, to point each error at a file and line."""

    def __init__(self, where: str, text: str) -> None:
        self.where = where
        self.text = text

    def at(self, key: str, item: object = None) -> str:
        """`<file> line N`: the line of `item` in the list under `key` when it can be found, else the key's."""
        line = _line_of(self.text, key)
        needle = _needle(item)
        if needle:
            lines = self.text.splitlines()
            for number in range(line, len(lines) + 1):
                if needle in lines[number - 1]:
                    return f"{self.where} line {number}"
        return f"{self.where} line {line}"


def _needle(item: object) -> str | None:
    """A string that finds an item of a list in the TOML text: its text, or its first string field."""
    if isinstance(item, str):
        return f'"{item}"' if '"' not in item and "\\" not in item else None
    if isinstance(item, dict):
        for value in item.values():
            if isinstance(value, str):
                return _needle(value)
    return None


_SHAPES = {
    "not_null": '["Lead.customer_id"]',
    "foreign_keys": '[{ column = "Lead.customer_id", references = "Customer.id", on_delete = "restrict" }]',
    "unique": '["Customer.email"] or [{ table = "Customer", columns = ["email", "phone"] }]',
    "check": '[{ table = "Job", name = "Job_window_check" }]',
    "column_type": '[{ column = "Lead.name", type = "text" }]',
    "index": '[{ table = "Lead", columns = ["customer_id"] }]',
}


def _items(raw: dict, key: str, m: _Manifest) -> list:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise BatchError(f"{m.at(key)}: {key} must be a list, like {key} = {_SHAPES[key]}.")
    return value


def _fields(item: object, key: str, m: _Manifest, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """An inline table of a check, with exactly the known fields and each required one present."""
    if not isinstance(item, dict):
        raise BatchError(f"{m.at(key, item)}: each item of {key} must be a table, like {key} = {_SHAPES[key]}.")
    known = required + optional
    unknown = sorted(set(item) - set(known))
    if unknown:
        raise BatchError(f"{m.at(key, item)}: unknown field {unknown[0]!r} in {key}; use {', '.join(known)}.")
    missing = [name for name in required if name not in item]
    if missing:
        raise BatchError(f"{m.at(key, item)}: an item of {key} needs {missing[0]!r}, like {key} = {_SHAPES[key]}.")
    for name in known:
        if name in item and name != "columns" and not isinstance(item[name], str):
            raise BatchError(f"{m.at(key, item)}: {name} in {key} must be a string.")
    return item


def _column_names(item: dict, key: str, m: _Manifest) -> tuple[str, ...]:
    names = item["columns"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise BatchError(
            f"{m.at(key, item)}: columns in {key} must be a non-empty list of column names, like {_SHAPES[key]}."
        )
    if len(set(names)) != len(names):
        raise BatchError(f"{m.at(key, item)}: columns in {key} names a column twice; name each once.")
    return tuple(n.strip() for n in names)


def _parse_unique(item: object, m: _Manifest) -> UniqueCheck:
    if isinstance(item, str):
        ref = ColumnRef.parse(item, m.at("unique", item))
        return UniqueCheck(ref.table_ref, (ref.column,))
    item = _fields(item, "unique", m, ("table", "columns"))
    return UniqueCheck(TableRef.parse(item["table"], m.at("unique", item)), _column_names(item, "unique", m))


def _parse_checks(raw: object, where: str, text: str) -> Checks:
    if raw is None:
        return Checks()
    m = _Manifest(where, text)
    if not isinstance(raw, dict):
        raise BatchError(f"{m.at('checks')}: [checks] must be a table; see docs/batches.md.")
    unknown = [key for key in raw if key not in CHECK_KINDS]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, CHECK_KINDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise BatchError(f"{m.at(key)}: unknown check {key!r}; {hint}the known checks are {', '.join(CHECK_KINDS)}.")
    not_null = []
    for item in _items(raw, "not_null", m):
        not_null.append(ColumnRef.parse(item, m.at("not_null", item)))
    fks = []
    for item in _items(raw, "foreign_keys", m):
        if not isinstance(item, dict):
            raise BatchError(
                f"{m.at('foreign_keys')}: each foreign key must be a table "
                "{ column = ..., references = ..., on_delete = ... }."
            )
        fk_at = m.at("foreign_keys", item)
        unknown = sorted(set(item) - _FK_KEYS)
        if unknown:
            raise BatchError(f"{fk_at}: unknown foreign key field {unknown[0]!r}; use column, references, on_delete.")
        missing = [k for k in ("column", "references") if k not in item]
        if missing:
            raise BatchError(f"{fk_at}: a foreign key needs {missing[0]!r}.")
        action = str(item.get("on_delete", "no action")).strip().lower().replace("_", " ")
        if action not in ON_DELETE_ACTIONS:
            raise BatchError(
                f"{fk_at}: on_delete {item.get('on_delete')!r} is not an action; "
                f"use one of {', '.join(ON_DELETE_ACTIONS)}."
            )
        fks.append(
            ForeignKeyCheck(ColumnRef.parse(item["column"], fk_at), ColumnRef.parse(item["references"], fk_at), action)
        )
    unique = [_parse_unique(item, m) for item in _items(raw, "unique", m)]
    constraints = []
    for item in _items(raw, "check", m):
        item = _fields(item, "check", m, ("table", "name"))
        constraints.append(CheckConstraintCheck(TableRef.parse(item["table"], m.at("check", item)), item["name"]))
    types = []
    for item in _items(raw, "column_type", m):
        item = _fields(item, "column_type", m, ("column", "type"))
        at = m.at("column_type", item)
        if type_name_sql(item["type"]) is None:
            raise BatchError(
                f'{at}: {item["type"]!r} is not a type name; write it as PostgreSQL does, like "text" or "varchar(80)".'
            )
        types.append(ColumnTypeCheck(ColumnRef.parse(item["column"], at), item["type"].strip()))
    indexes = []
    for item in _items(raw, "index", m):
        item = _fields(item, "index", m, ("table", "columns"))
        indexes.append(IndexCheck(TableRef.parse(item["table"], m.at("index", item)), _column_names(item, "index", m)))
    return Checks(
        not_null=tuple(not_null),
        foreign_keys=tuple(fks),
        unique=tuple(unique),
        check=tuple(constraints),
        column_type=tuple(types),
        index=tuple(indexes),
    )


def read(manifest: Path) -> Batch:
    """The batch whose folder holds this batch.toml."""
    path = manifest.parent
    text = manifest.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BatchError(f"{manifest} is not valid TOML ({exc}); fix that line.") from None
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        key = unknown[0]
        raise BatchError(
            f"{manifest} line {_line_of(text, key)}: unknown key {key!r}; "
            f"the known keys are {', '.join(sorted(_TOP_KEYS))}."
        )
    number = raw.get("batch")
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise BatchError(f"{manifest} line {_line_of(text, 'batch')}: 'batch' must be a whole number, like batch = 7.")
    depends = raw.get("depends_on", [])
    if not isinstance(depends, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in depends):
        raise BatchError(
            f"{manifest} line {_line_of(text, 'depends_on')}: depends_on must be a list of batch numbers, like [6]."
        )
    pauses = raw.get("pause_before", [])
    if not isinstance(pauses, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in pauses
    ):
        raise BatchError(
            f"{manifest} line {_line_of(text, 'pause_before')}: pause_before must be a list of statement "
            "numbers of migration.sql (as preflight numbers them), like [4]."
        )
    for key in ("title", "type", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise BatchError(f"{manifest} line {_line_of(text, key)}: {key} must be a string.")
    return Batch(
        number=number,
        name=path.name,
        path=path,
        title=raw.get("title") or path.name,
        type=raw.get("type") or "Schema migration",
        depends_on=tuple(depends),
        checks=_parse_checks(raw.get("checks"), str(manifest), text),
        description=raw.get("description", ""),
        pause_before=tuple(sorted(set(pauses))),
    )
