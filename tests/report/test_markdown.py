"""Markdown for the summary: whatever a value holds, it stays text in the Markdown and in the HTML from it."""

from __future__ import annotations

import html

import pytest
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from runbook_lib.display import markdown as md


def test_squawk_messages_show_their_backtick_spans_as_code_and_the_rest_as_text() -> None:
    cell = md.text_with_code("Setting a column `NOT NULL` blocks <b>reads</b> | `a|b`")
    markdown = md.table(["Message"], [(cell,)], raw_columns=(0,))
    # plain Markdown: code spans and backslash escapes, no HTML
    assert markdown.splitlines()[-1] == r"| Setting a column `NOT NULL` blocks \<b\>reads\</b\> \| `a\|b` |"
    html = md.unescape_code_pipes(markdown2html_mistune(markdown))
    assert "<code>NOT NULL</code>" in html and "<code>a|b</code>" in html
    assert "&lt;b&gt;reads&lt;/b&gt;" in html and "<b>" not in html
    assert html.count("<td>") == 1  # the pipes did not split the cell


@pytest.mark.parametrize(
    "value",
    [
        "<script>alert(1)</script>",
        "a | b",
        "R&D &amp; co",
        "`tick`",
        "``two``",
        "back\\slash \\<b>",
        "*stars* and _under_",
        "[a link](javascript:alert)",
        "line\nbreak",
        "&#124;",
    ],
)
def test_any_value_reads_back_as_itself_in_text_and_in_code(value: str) -> None:
    """Whatever a value holds, the HTML from its Markdown shows it as written: as text and as code, in a table."""
    shown = " ".join(value.split()) if "\n" in value else value
    cell_text = md.table(["v"], [(value,)])
    cell_code = md.table(["v"], [(md.code(value),)], raw_columns=(0,))
    for markdown, wrap in ((cell_text, "<td>{}</td>"), (cell_code, "<td><code>{}</code></td>")):
        rendered = md.unescape_code_pipes(markdown2html_mistune(markdown))
        assert wrap.format(
            html.escape(shown if wrap.startswith("<td><code>") else value.replace("\n", " "), quote=False)
        ) in rendered.replace("&quot;", '"'), (markdown, rendered)
    assert "<code>" not in cell_code  # no HTML in the Markdown itself


def test_an_unpaired_backtick_is_plain_text() -> None:
    assert md.text_with_code("one ` only") == md.text("one ` only")
    assert "<code>" not in markdown2html_mistune(md.text_with_code("one ` only"))
