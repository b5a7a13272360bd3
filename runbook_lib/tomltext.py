"""Where a key sits in a TOML file's text: tomllib gives values, not lines, and every refusal names one."""

from __future__ import annotations

import re


def line_of(text: str, key: str, *, table_line: int = 0) -> int:
    """The line of `key = ...` or of a `[key]` header.

    With `table_line` (the line of a table's header), only that table is searched, and its header line is
    the answer when the key is not there; without it, the whole file, and line 1 when the key is not there.
    """
    lines = text.splitlines()
    pattern = re.compile(rf"^\s*(?:\"?{re.escape(key)}\"?\s*=|\[\[?\s*{re.escape(key)}\s*\]\]?)")
    for number in range(table_line + 1, len(lines) + 1):
        line = lines[number - 1]
        if table_line and re.match(r"^\s*\[", line):
            break
        if pattern.match(line):
            return number
    return table_line or 1


def header_lines(text: str, header: str) -> list[int]:
    """The lines of every `[header]` or `[[header]]`, in order."""
    pattern = re.compile(rf"^\s*\[\[?\s*{re.escape(header)}\s*\]\]?\s*(#.*)?$")
    return [n for n, line in enumerate(text.splitlines(), start=1) if pattern.match(line)]
