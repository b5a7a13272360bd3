"""The reports site: `reports/index.html` lists every run (batches, releases, fleet runs), newest first,
and `publish` copies it with the pages it links into a folder ready for any static host.

The index reads run.json and the few small fields of each record it shows (verdict, apply status, X/Y,
longest write block, who), without building the full records: it is regenerated after every run.
A run whose record cannot be read is listed as "unreadable record", never a crash.
"""

from __future__ import annotations

import html
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from runbook_lib.errors import RecordError, RunbookError
from runbook_lib.names import worst_verdict
from runbook_lib.report import fleet_record, records
from runbook_lib.report.fleet_record import FLEET_FOLDER

INDEX = "index.html"
UNREADABLE = "unreadable record"
# `scheme://user:<password>@`: a password in a URL; redacted URLs carry *** (or %2A%2A%2A) instead.
_PASSWORD_IN_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@\"'<>]+:([^\s/@\"'<>]+)@")
_REDACTED = {
    "***",
    "%2A%2A%2A",
    "%2a%2a%2a",
    "&#42;&#42;&#42;",
    r"\*\*\*",
}  # the last: Markdown-escaped (display.markdown)


@dataclass
class Entry:
    """One row of the site index."""

    kind: str  # batch | release | fleet
    path: Path  # the run folder, relative to the reports dir
    database: str  # the folder name: what the filter offers
    batch: str
    url: str = ""  # the redacted URL (or the number of targets of a fleet run)
    name: str = ""  # the batch's name
    when: str = ""
    status: str = ""
    verdict: str = ""
    passed: int | None = None
    total: int | None = None
    longest_write_block_s: float | None = None
    who: str = ""
    summary: str = ""  # link, relative to the reports dir
    audit: str = ""
    problem: str = ""  # why the record could not be read

    @property
    def tests(self) -> str:
        return f"{self.passed}/{self.total}" if self.total is not None and self.passed is not None else ""


def _fields(folder: Path, phase: str) -> dict | None:
    """The raw JSON of `<phase>.json`, checked as RunFolder.read checks it, without building the record."""
    return records.RunFolder(folder).read_data(phase)


def _get(data: dict[str, Any] | None, *keys: str, default: Any = None) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def _link(reports: Path, folder: Path, name: str) -> str:
    return (folder / name).relative_to(reports).as_posix() if (folder / name).exists() else ""


def _phase_figures(folder: Path) -> tuple[str, str, int | None, int | None, float | None, str, str]:
    """verdict, apply status, passed, total, longest write block, who, batch name of one run folder."""
    pre, app, val = (_fields(folder, p) for p in ("preflight", "apply", "validate"))
    verdict = _get(pre, "verdict", "status", default="") or ""
    status = _get(app, "status", default="") or ""
    passed, total = records.tally(_get(val, "tests", default=None)) or (None, None)  # X/Y: the tests that ran
    block = _get(app, "longest_write_block_s")
    who = next((u for u in (_get(r, "connection", "user") for r in (app, val, pre)) if u), "")
    name = next((n for n in (_get(r, "batch", "name") for r in (pre, app, val)) if n), "")
    return verdict, status, passed, total, block, who, name


def _run_entry(reports: Path, folder: Path) -> Entry:
    rel = folder.relative_to(reports)
    entry = Entry("batch", rel, rel.parts[0], rel.parts[1], when=folder.name)
    try:
        run = records.RunFolder(folder).read("run", records.RunRecord)
        assert run is not None  # the folder was listed for its run.json
        entry.url, entry.when = run.database, run.started_at
        failure = run.failure
        if run.release:
            entry.kind, entry.batch = "release", "release"
            figures = [_phase_figures(child.path) for child in records.RunFolder(folder).children()]
            entry.verdict = worst_verdict(f[0] for f in figures)
            statuses = [f[1] for f in figures if f[1]]
            entry.status = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
            counted = [(f[2], f[3]) for f in figures if f[2] is not None and f[3] is not None]  # tally: both or none
            if counted:
                entry.passed, entry.total = sum(p for p, _ in counted), sum(t for _, t in counted)
            blocks = [f[4] for f in figures if f[4] is not None]
            entry.longest_write_block_s = max(blocks) if blocks else None
            entry.who = next((f[5] for f in figures if f[5]), "")
            entry.name = f"{len(figures)} migration(s)"
        else:
            (
                entry.verdict,
                entry.status,
                entry.passed,
                entry.total,
                entry.longest_write_block_s,
                entry.who,
                entry.name,
            ) = _phase_figures(folder)
        if failure is not None:
            entry.status = f"FAILED in {failure.phase}" + (f" ({entry.status})" if entry.status else "")
        elif run.rolled_back:
            entry.status = "rolled back"
        entry.status = entry.status or "ok"
    except RecordError as exc:
        entry.status, entry.problem = UNREADABLE, str(exc)
    entry.summary = _link(reports, folder, "summary.html")
    entry.audit = _link(reports, folder, INDEX)
    return entry


def _fleet_entry(reports: Path, folder: Path) -> Entry:
    rel = folder.relative_to(reports)
    entry = Entry("fleet", rel, FLEET_FOLDER, rel.parts[1], when=folder.name)
    try:
        record = records.RunFolder(folder).read(FLEET_FOLDER, fleet_record.FleetRecord)
        assert record is not None
        entry.when, entry.name = record.started_at, f"{record.mode} on {len(record.targets)} target(s)"
        entry.url = ", ".join(t.name for t in record.targets)
        statuses = [t.status for t in record.targets]
        entry.status = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses)) or "no target"
        entry.verdict = worst_verdict(t.verdict for t in record.targets)
        counted = [t for t in record.targets if t.validation_total is not None]
        if counted:
            entry.passed = sum(t.validation_passed or 0 for t in counted)
            entry.total = sum(t.validation_total or 0 for t in counted)
        blocks = [t.longest_write_block_s for t in record.targets if t.longest_write_block_s is not None]
        entry.longest_write_block_s = max(blocks) if blocks else None
    except RecordError as exc:
        entry.status, entry.problem = UNREADABLE, str(exc)
    entry.summary = _link(reports, folder, "fleet.html")
    entry.audit = _link(reports, folder, "fleet.md")
    return entry


def entries(reports_dir: Path | str) -> list[Entry]:
    """Every run folder under the reports dir, newest first."""
    reports = Path(reports_dir)
    found: list[Entry] = []
    for folder in sorted(reports.glob("*/*/*")):
        if not folder.is_dir():
            continue
        if folder.parts[-3] == FLEET_FOLDER and (folder / f"{FLEET_FOLDER}.json").exists():
            found.append(_fleet_entry(reports, folder))
        elif (folder / "run.json").exists():
            found.append(_run_entry(reports, folder))
    return sorted(found, key=lambda e: (e.when, e.path.name), reverse=True)


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _href(link: str) -> str:
    return _esc(quote(link))


def _row(e: Entry) -> str:
    block = f"{e.longest_write_block_s * 1000:.1f} ms" if e.longest_write_block_s is not None else ""
    links = []
    if e.summary:
        links.append(f'<a href="{_href(e.summary)}">{"fleet report" if e.kind == "fleet" else "summary"}</a>')
    if e.audit:
        links.append(f'<a href="{_href(e.audit)}">{"Markdown" if e.kind == "fleet" else "audit trail"}</a>')
    status_class = "failed" if e.status == UNREADABLE or "FAIL" in e.status.upper() else "ok"
    title = f' title="{_esc(e.problem)}"' if e.problem else ""
    batch = f"{e.batch} {e.name}".strip()
    return (
        f'<tr data-database="{_esc(e.database)}" data-batch="{_esc(e.batch)}">'
        f"<td>{_esc(e.when)}</td><td>{_esc(e.database)}<br><small>{_esc(e.url)}</small></td>"
        f"<td>{_esc(e.kind)}</td><td>{_esc(batch)}</td>"
        f'<td class="{status_class}"{title}>{_esc(e.status)}</td><td>{_esc(e.verdict)}</td>'
        f"<td>{_esc(e.tests)}</td><td>{_esc(block)}</td><td>{_esc(e.who)}</td>"
        f"<td>{' '.join(links)}</td></tr>"
    )


_FILTER = """<script>
(function () {
  var db = document.getElementById('filter-database'), batch = document.getElementById('filter-batch');
  function apply() {
    var rows = document.querySelectorAll('#runs tbody tr'), shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var ok = (!db.value || rows[i].dataset.database === db.value) &&
               (!batch.value || rows[i].dataset.batch === batch.value);
      rows[i].hidden = !ok; if (ok) shown++;
    }
    document.getElementById('shown').textContent = shown;
  }
  db.addEventListener('change', apply); batch.addEventListener('change', apply);
  document.getElementById('filters').hidden = false;
  apply();
})();
</script>"""


def page(found: list[Entry]) -> str:
    def options(values: list[str], every: str) -> str:
        return f'<option value="">{every}</option>' + "".join(
            f'<option value="{_esc(v)}">{_esc(v)}</option>' for v in values
        )

    databases = sorted({e.database for e in found})
    batches = sorted({e.batch for e in found}, key=lambda b: (not b.isdigit(), int(b) if b.isdigit() else 0, b))
    rows = "\n".join(_row(e) for e in found) or '<tr><td colspan="10">No run yet.</td></tr>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>runbook: every run</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; }}
.ok {{ color: #176f2c; }} .failed {{ color: #a40e26; }} small {{ color: #666; }}
</style></head><body>
<h1>runbook: every run</h1>
<p>{len(found)} run(s), newest first: batches, releases and fleet runs.</p>
<form id="filters" hidden>
<label>Database <select id="filter-database">{options(databases, "every database")}</select></label>
<label>Batch <select id="filter-batch">{options(batches, "every batch")}</select></label>
<span><span id="shown">{len(found)}</span> shown</span>
</form>
<noscript><p>Filtering needs JavaScript; every run is listed below.</p></noscript>
<table id="runs"><thead><tr><th>When</th><th>Database</th><th>Kind</th><th>Batch</th><th>Status</th><th>Verdict</th>
<th>Tests (X/Y)</th><th>Longest write block</th><th>Who</th><th>Reports</th></tr></thead>
<tbody>
{rows}
</tbody></table>
{_FILTER}
</body></html>
"""


def write_index(reports_dir: Path | str) -> Path:
    """`<reports_dir>/index.html`, replaced atomically (runs on other workers may write it too)."""
    reports = Path(reports_dir)
    target = reports / INDEX
    tmp = reports / f".{INDEX}.{os.getpid()}.tmp"
    tmp.write_text(page(entries(reports)), encoding="utf-8")
    tmp.replace(target)
    return target


def refresh(reports_dir: Path | str) -> Path | None:
    """write_index after a run: a site that cannot be written never fails the run it lists."""
    try:
        return write_index(reports_dir)
    except OSError:
        return None


# --- publish ---------------------------------------------------------------------------------------


@dataclass
class Published:
    directory: Path
    index: Path
    runs: int = 0
    summaries: int = 0
    audit_copies: int = 0
    notebooks: int = 0
    files: list[Path] = field(default_factory=list)


def _is_summary(rel: Path) -> bool:
    return rel.name in ("summary.html", "summary.md", "fleet.html", "fleet.md") or "summary_files" in rel.parts


def _wanted(folder: Path, with_notebooks: bool) -> list[Path]:
    suffixes = {".html", ".md"} | ({".ipynb"} if with_notebooks else set())
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not p.name.startswith(".")
        and (p.suffix in suffixes or "summary_files" in p.relative_to(folder).parts)
    )


def password_in(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(m.group(1) not in _REDACTED for m in _PASSWORD_IN_URL.finditer(text))


def publish(
    reports_dir: Path | str, directory: Path | str, *, with_notebooks: bool = False, force: bool = False
) -> Published:
    """A self-contained static copy of the site: index, summaries, audit copies (notebooks when asked)."""
    reports, dest = Path(reports_dir).resolve(), Path(directory).resolve()
    if not reports.is_dir():
        raise RunbookError(
            f"The reports folder {reports} does not exist; pass --reports-dir with the folder runs wrote."
        )
    if dest == reports or reports in dest.parents:
        raise RunbookError(f"{dest} is inside the reports folder {reports}; publish to a folder outside it.")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())) and not force:
        raise RunbookError(f"{dest} is not empty; publish to an empty folder, or pass --force to write into it.")
    write_index(reports)
    found = entries(reports)
    sources = [reports / INDEX]
    for e in found:
        sources += _wanted(reports / e.path, with_notebooks)
    leaking = [p for p in sources if password_in(p)]
    if leaking:
        raise RunbookError(
            f"{leaking[0]} holds what looks like a password in a URL; nothing was published "
            "(remove the file or run it again with the password in PGPASSWORD)."
        )
    result = Published(dest, dest / INDEX, runs=len(found))
    for src in sources:
        rel = src.relative_to(reports)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        result.files.append(target)
        if src.suffix == ".ipynb":
            result.notebooks += 1
        elif _is_summary(rel):
            result.summaries += 1
        elif rel != Path(INDEX):
            result.audit_copies += 1
    return result
