"""Executed notebooks rendered with nbconvert: the shareable summary (HTML, Markdown) and audit copies."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class RenderedSummary:
    html: Path
    markdown: Path


def _read(notebook: Path):
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    # papermill's parameter cells and error banners are bookkeeping, not report content.
    hidden = {"injected-parameters", "papermill-error-cell-tag", "remove"}
    nb.cells = [c for c in nb.cells if not hidden & set(c.metadata.get("tags", []))]
    return nb


def _self_contained(html: str) -> str:
    """Drop CSS comments (JupyterLab's theme cites its sources by URL): the file names no external address."""

    def strip(match: re.Match) -> str:
        return re.sub(r"/\*.*?\*/", "", match.group(0), flags=re.S)

    return re.sub(r"<style[^>]*>.*?</style>", strip, html, flags=re.S)


def summary(executed: Path, out_dir: Path, *, title: str = "Migration summary") -> RenderedSummary:
    """summary.html (code hidden, self-contained) and summary.md from the executed summary notebook."""
    from nbconvert import HTMLExporter, MarkdownExporter

    nb = _read(executed)
    html_exporter = HTMLExporter(
        template_name="runbook", extra_template_basedirs=[str(TEMPLATES)],
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True, embed_images=True,
    )
    body, _ = html_exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    html_path = out_dir / "summary.html"
    html_path.write_text(_self_contained(body), encoding="utf-8")

    md_exporter = MarkdownExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    text, _ = md_exporter.from_notebook_node(nb)
    md_path = out_dir / "summary.md"
    md_path.write_text(re.sub(r"\n{3,}", "\n\n", text).strip() + "\n", encoding="utf-8")
    return RenderedSummary(html_path, md_path)


def audit_copy(executed: Path) -> Path:
    """The executed phase notebook as HTML with its code: what exactly ran."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="runbook", extra_template_basedirs=[str(TEMPLATES)], embed_images=True)
    body, _ = exporter.from_notebook_node(_read(executed), resources={"metadata": {"name": executed.stem}})
    target = executed.with_suffix(".html")
    target.write_text(_self_contained(body), encoding="utf-8")
    return target
