"""Executed notebooks rendered with nbconvert: the shareable summary (HTML, Markdown) and audit copies."""

from __future__ import annotations

import functools
import gc
import html
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runbook_lib.display import markdown as md

if TYPE_CHECKING:  # for the annotations alone (start-up time: nbconvert and nbformat are heavy)
    from nbconvert import HTMLExporter, MarkdownExporter
    from nbformat import NotebookNode

    from runbook_lib.report.records import RunRecord

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class RenderedSummary:
    html: Path
    markdown: Path


def _read(notebook: Path) -> NotebookNode:
    import nbformat  # start-up time: only when a report is rendered

    nb = nbformat.read(str(notebook), as_version=4)
    # papermill's parameter cells and error banners are bookkeeping, not report content.
    hidden = {"injected-parameters", "papermill-error-cell-tag", "remove", "runbook-reset"}
    nb.cells = [c for c in nb.cells if not hidden & set(c.metadata.get("tags", []))]
    return nb


def _self_contained(html: str) -> str:
    """Drop CSS comments (JupyterLab's theme cites its sources by URL): the file names no external address.
    And the backslash of a pipe escaped in a table's code span (display.markdown), which the renderer keeps."""

    def strip(match: re.Match) -> str:
        return re.sub(r"/\*.*?\*/", "", match.group(0), flags=re.S)

    return md.unescape_code_pipes(re.sub(r"<style[^>]*>.*?</style>", strip, html, flags=re.S))


@dataclass(frozen=True)
class _Exporters:
    audit: HTMLExporter  # HTML with the code: what exactly ran
    summary_html: HTMLExporter  # HTML without code or prompts
    summary_md: MarkdownExporter


@functools.cache
def _exporters() -> _Exporters:
    """Made once per process: each new exporter compiles its Jinja templates again (a tenth of a second)."""
    from nbconvert import (  # start-up time: nbconvert is heavy
        HTMLExporter,
        MarkdownExporter,
    )

    # embed_images stays off: it re-parses each inline HTML tag alone, turning <code>x</code> into <code></code>x
    html = {"template_name": "runbook", "extra_template_basedirs": [str(TEMPLATES)]}
    hidden = {"exclude_input": True, "exclude_input_prompt": True, "exclude_output_prompt": True}
    return _Exporters(HTMLExporter(**html), HTMLExporter(**html, **hidden), MarkdownExporter(**hidden))


def warm() -> None:
    """Import nbconvert and compile every template now, by rendering an empty notebook with each exporter."""
    import nbformat  # start-up time: only when a report is rendered

    exporters = _exporters()
    for exporter in (exporters.audit, exporters.summary_html, exporters.summary_md):
        exporter.from_notebook_node(nbformat.v4.new_notebook())


def summary(executed: Path, out_dir: Path, *, title: str = "Migration summary") -> RenderedSummary:
    """summary.html (code hidden, self-contained) and summary.md from the executed summary notebook."""
    nb = _read(executed)
    exporters = _exporters()
    body, _ = exporters.summary_html.from_notebook_node(nb, resources={"metadata": {"name": title}})
    html_path = out_dir / "summary.html"
    html_path.write_text(_self_contained(body), encoding="utf-8")

    text, resources = exporters.summary_md.from_notebook_node(
        nb, resources={"metadata": {"name": "summary"}, "output_files_dir": "summary_files"}
    )
    for name, data in (resources.get("outputs") or {}).items():  # the timeline chart, beside summary.md
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    md_path = out_dir / "summary.md"
    md_path.write_text(re.sub(r"\n{3,}", "\n\n", text).strip() + "\n", encoding="utf-8")
    return RenderedSummary(html_path, md_path)


def audit_copy(executed: Path) -> Path:
    """The executed phase notebook as HTML with its code: what exactly ran."""
    body, _ = _exporters().audit.from_notebook_node(_read(executed), resources={"metadata": {"name": executed.stem}})
    target = executed.with_suffix(".html")
    target.write_text(_self_contained(body), encoding="utf-8")
    return target


class Renderer:
    """Renders on one background thread, so nbconvert works while the kernel runs the next notebook.

    Created when a run starts, it imports nbconvert and compiles the templates during the kernel's start.
    Then the process's objects are frozen until the renderer closes: nbconvert's, papermill's, and the rest
    loaded by then stay for the whole run anyway, and Python's full collections while the notebooks run and
    render (tens of milliseconds each, one of them in the summary's render that the run waits for) need
    not walk them again.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runbook-render")
        self._frozen = False
        self._pending: list[Future] = [self._pool.submit(self._warm)]

    def _warm(self) -> None:
        warm()
        if gc.get_freeze_count() == 0:  # none frozen by another (a host process's own): ours to unfreeze at close
            gc.freeze()
            self._frozen = True

    def _unfreeze(self) -> None:
        if self._frozen:
            gc.unfreeze()
            self._frozen = False

    def audit_copy(self, executed: Path) -> None:
        self._pending.append(self._pool.submit(audit_copy, executed))

    def summary(self, executed: Path, out_dir: Path, *, title: str) -> Future[RenderedSummary]:
        return self._pool.submit(summary, executed, out_dir, title=title)

    def close(self) -> None:
        """Wait for every render; the first that failed raises here."""
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pool.shutdown()
            self._unfreeze()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._pool.shutdown(cancel_futures=True)
            self._unfreeze()


def index(run_dir: Path, record: RunRecord) -> Path:
    """index.html: the run at a glance, linking the summary and each phase's executed notebook."""
    esc = lambda value: html.escape(str(value), quote=True)  # noqa: E731
    rows = []
    for phase in record.phases:
        audit = Path(phase.notebook).with_suffix(".html").name
        status = "ok" if phase.ok else f"FAILED in cell {phase.cell_index}: {phase.error_name}: {phase.error_message}"
        rows.append(
            f'<tr><td><a href="{esc(audit)}">{esc(phase.phase)}</a></td>'
            f'<td class="{"ok" if phase.ok else "failed"}">{esc(status)}</td>'
            f"<td>{phase.seconds:.1f} s</td></tr>"
        )
    summary = (
        '<p><a href="summary.html">Migration summary</a> (<a href="summary.md">Markdown</a>)</p>'
        if (run_dir / "summary.html").exists()
        else "<p>No summary was rendered.</p>"
    )
    rolled = (
        "<p>Validation failed and the batch was rolled back (--rollback-on-failure).</p>" if record.rolled_back else ""
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>runbook run {esc(record.run_id)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; }}
.ok {{ color: #176f2c; }} .failed {{ color: #a40e26; }}
</style></head><body>
<h1>Batch {esc(record.batch)}: run {esc(record.run_id)}</h1>
<p>Database: {esc(record.database)}<br>Started: {esc(record.started_at)}</p>
{summary}{rolled}
<table><tr><th>Phase (executed notebook, with code)</th><th>Status</th><th>Duration</th></tr>
{"".join(rows)}
</table></body></html>
"""
    target = run_dir / "index.html"
    target.write_text(page, encoding="utf-8")
    return target
