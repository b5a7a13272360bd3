"""Markdown pieces for reports: every value escaped, so data can never become markup.

Plain Markdown, as a person reads summary.md in a terminal or a pull request: backslash escapes and code
spans, never HTML. The one thing Markdown cannot say the same way everywhere is a pipe inside a code span
inside a table: GitHub's tables take it escaped (`\\|`), nbconvert's renderer then shows the backslash, so
the rendered HTML drops it again (`unescape_code_pipes`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

# CommonMark's escapable characters that could turn data into markup here: a tag or an entity, a code
# span, a table cell's end, a link. Emphasis needs two runs of `*` (or of `_` at a word's edge) to pair:
# those are escaped only where there are two, so `count(*)`, a redacted `***` and `_prisma_migrations`
# read as written. A backslash is doubled only before punctuation, where it would escape it.
_MARKUP = re.compile(r"[<>&`|\[]")
_STARS = re.compile(r"\*+")
_EDGE_UNDERSCORES = re.compile(r"(?<![A-Za-z0-9_])_+|_+(?![A-Za-z0-9_])")
_ESCAPING_BACKSLASH = re.compile(r"\\(?=[!-/:-@\[-`{-~])")


def text(value: Any) -> str:
    """A value safe inside Markdown text and table cells (and so inside the HTML rendered from it)."""
    if value is None:
        return ""
    if isinstance(value, float):
        value = f"{value:g}"
    escaped = _ESCAPING_BACKSLASH.sub(r"\\\\", str(value))
    escaped = _MARKUP.sub(lambda m: "\\" + m.group(0), escaped)
    for runs in (_STARS, _EDGE_UNDERSCORES):
        if len(runs.findall(escaped)) >= 2:
            escaped = runs.sub(lambda m: "".join("\\" + c for c in m.group(0)), escaped)
    return escaped.replace("\r", " ").replace("\n", " ")


def code(value: Any) -> str:
    """Inline code that survives any content: a backtick run longer than any inside it."""
    content = " ".join(str(value).split())
    if not content:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", content)), default=0) + 1)
    padded = f" {content} " if content.startswith("`") or content.endswith("`") else content
    return f"{fence}{padded}{fence}"


_CODE = re.compile(r"<code>(.*?)</code>", re.S)


def unescape_code_pipes(rendered: str) -> str:
    """The HTML of Markdown whose table cells escape the pipes in their code spans: without the backslash."""
    return _CODE.sub(lambda m: "<code>" + m.group(1).replace("\\|", "|") + "</code>", rendered)


def text_with_code(value: Any) -> str:
    """Prose that marks code with backticks (squawk's messages): the `spans` as code, the rest as text."""
    parts = str(value).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: no code spans
        return text(value)
    return "".join(code(part) if i % 2 else text(part) for i, part in enumerate(parts))


_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})")
_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def prose(markdown: str) -> str:
    """A person's Markdown (a README's section) kept as written, its HTML escaped: outside code blocks and
    code spans, a `<` (a tag) or an `&` that would start an entity becomes text."""
    out, fence = [], None
    for line in markdown.splitlines():
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and opened.group(2)[0] == fence[0] and len(opened.group(2)) >= len(fence):
                fence = None
            out.append(line)
            continue
        if opened:
            fence = opened.group(2)
            out.append(line)
            continue
        pieces, last = [], 0
        for span in _SPAN.finditer(line):
            pieces.append(_escape_html(line[last : span.start()]))
            pieces.append(span.group(0))
            last = span.end()
        pieces.append(_escape_html(line[last:]))
        out.append("".join(pieces))
    return "\n".join(out)


def _escape_html(fragment: str) -> str:
    return re.sub(r"&(?=#?[A-Za-z0-9]+;)", r"\\&", fragment.replace("<", "\\<"))


def block(sql: str, language: str = "sql") -> str:
    fence = "```"
    while fence in sql:
        fence += "`"
    return f"{fence}{language}\n{sql.rstrip()}\n{fence}"


_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, raw_columns: Sequence[int] = ()) -> str:
    """A table; a raw column's cells are Markdown already (text and code spans), their code's pipes escaped."""
    lines = ["| " + " | ".join(text(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    count = 0
    for row in rows:
        cells = [_UNESCAPED_PIPE.sub(r"\\|", str(c)) if i in raw_columns else text(c) for i, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
        count += 1
    if count == 0:
        lines.append("| " + " | ".join(["none"] + [""] * (len(headers) - 1)) + " |")
    return "\n".join(lines)


class Sections(list):
    """Several sections shown as one output (a notebook cell shows one object)."""

    @property
    def markdown(self) -> str:
        return "\n".join(section.markdown for section in self)

    def _repr_markdown_(self) -> str:
        return self.markdown


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
