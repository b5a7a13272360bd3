"""Markdown for the summary: whatever a value holds, it stays text in the Markdown and in the HTML from it."""

from __future__ import annotations

from nbconvert.filters.markdown_mistune import markdown2html_mistune

from runbook_lib.report import markdown as md


def test_squawk_messages_show_their_backtick_spans_as_code_and_the_rest_as_text() -> None:
    cell = md.text_with_code("Setting a column `NOT NULL` blocks <b>reads</b> | `a|b`")
    html = markdown2html_mistune(md.table(["Message"], [(cell,)], raw_columns=(0,)))
    assert "<code>NOT NULL</code>" in html and "<code>a|b</code>" in html
    assert "&lt;b&gt;reads&lt;/b&gt;" in html and "<b>" not in html
    assert html.count("<td>") == 1  # the pipes did not split the cell


def test_an_unpaired_backtick_is_plain_text() -> None:
    assert md.text_with_code("one ` only") == md.text("one ` only")
    assert "<code>" not in markdown2html_mistune(md.text_with_code("one ` only"))
