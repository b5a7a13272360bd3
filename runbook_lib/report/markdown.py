"""Markdown pieces for reports: every value escaped, so data can never become markup."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any


def text(value: Any) -> str:
    """A value safe inside Markdown text and table cells (and so inside the HTML rendered from it)."""
    if value is None:
        return ""
    if isinstance(value, float):
        value = f"{value:g}"
    escaped = html.escape(str(value), quote=False)
    return escaped.replace("|", "\\|").replace("\r", " ").replace("\n", " ").replace("`", "&#96;")


def code(value: Any) -> str:
    """Inline code that survives any content."""
    return "<code>" + html.escape(" ".join(str(value).split()), quote=False).replace("|", "&#124;") + "</code>"


def text_with_code(value: Any) -> str:
    """Prose that marks code with backticks (squawk's messages): the `spans` as code, the rest as text."""
    parts = str(value).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: no code spans
        return text(value)
    return "".join(code(part) if i % 2 else text(part) for i, part in enumerate(parts))


def block(sql: str, language: str = "sql") -> str:
    fence = "```"
    while fence in sql:
        fence += "`"
    return f"{fence}{language}\n{sql.rstrip()}\n{fence}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, raw_columns: Sequence[int] = ()) -> str:
    lines = ["| " + " | ".join(text(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    count = 0
    for row in rows:
        cells = [str(c) if i in raw_columns else text(c) for i, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
        count += 1
    if count == 0:
        lines.append("| " + " | ".join(["none"] + [""] * (len(headers) - 1)) + " |")
    return "\n".join(lines)


class Section:
    """A report section: shows as Markdown in Jupyter, nbconvert's Markdown and HTML alike."""

    def __init__(self, title: str, body: str, level: int = 2) -> None:
        self.title = title
        self.body = body
        self.level = level

    @property
    def markdown(self) -> str:
        return f"{'#' * self.level} {text(self.title)}\n\n{self.body.strip()}\n"

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __str__(self) -> str:
        return self.markdown
