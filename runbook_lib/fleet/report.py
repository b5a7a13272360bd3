"""The fleet report: fleet.html and fleet.md from fleet.json, one row per target, totals at the top.

Self-contained (no external address, no script), every value escaped, URLs only as the redacted form
the worker returned; each row links its target's summary (or its run folder) by a relative path.
It reads only `report.fleet_record`, so rendering (or re-rendering a fleet.json) needs no Dask.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from runbook_lib.display import markdown as md
from runbook_lib.report.fleet_record import (
    ALREADY_APPLIED,
    APPLIED,
    DRY_RUN,
    FAILED,
    GO,
    NOGO,
    NOT_RUN,
    PREFLIGHT,
    SKIPPED,
    WARN,
    FleetRecord,
    TargetResult,
)


def headline(record: FleetRecord) -> str:
    if record.mode == PREFLIGHT:
        if record.count(NOGO, FAILED, NOT_RUN):
            return NOGO
        return WARN if record.count(WARN) else GO
    if record.ok:
        return "COMPLETED"
    return "STOPPED" if record.stopped else "INCOMPLETE"


def totals(record: FleetRecord) -> list[tuple[str, int]]:
    order = (
        (GO, WARN, NOGO, ALREADY_APPLIED, FAILED, NOT_RUN)
        if record.mode == PREFLIGHT
        else (APPLIED, DRY_RUN, ALREADY_APPLIED, SKIPPED, FAILED, NOT_RUN)
    )
    rows = [("targets", len(record.targets))]
    rows += [(status, record.count(status)) for status in order if record.count(status) or status in (FAILED, NOT_RUN)]
    return rows


def _link(target: TargetResult, reports: Path, folder: Path) -> tuple[str, str]:
    """(label, path relative to the fleet folder) of what best shows this target's run, or ("", "")."""
    candidates = []
    if target.summary:
        candidates.append(("summary", target.summary))
    if target.run_dir:
        candidates.append(("run folder", f"{target.run_dir}/index.html"))
    for label, rel in candidates:
        path = reports / rel
        if path.exists():
            return label, Path(os.path.relpath(path, folder)).as_posix()
    return "", ""


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _lock(value: float | None) -> str:
    return "" if value is None else f"{value * 1000:.0f} ms"


def _note(target: TargetResult) -> str:
    note = target.message
    if target.attempts > 1:
        note = (f"task retried: started {target.attempts} times (a worker died under it); " + note).rstrip("; ")
    return note


def _columns(record: FleetRecord) -> list[str]:
    if record.mode == PREFLIGHT:
        return ["wave", "target", "verdict", "reasons", "duration", "database", "report", "note"]
    return [
        "wave",
        "target",
        "status",
        "verdict",
        "lock attempts",
        "apply",
        "longest write-blocking lock",
        "validation",
        "duration",
        "database",
        "report",
        "note",
    ]


def _cells(record: FleetRecord, t: TargetResult) -> list[str]:
    if record.mode == PREFLIGHT:
        return [
            t.wave,
            t.name,
            t.status,
            "; ".join(t.reasons),
            _seconds(t.seconds if t.finished_at else None),
            t.database,
        ]
    return [
        t.wave,
        t.name,
        t.status,
        t.verdict,
        str(t.apply_attempts or ""),
        _seconds(t.apply_seconds),
        _lock(t.longest_write_block_s),
        t.validation,
        _seconds(t.seconds if t.finished_at else None),
        t.database,
    ]


def _facts(record: FleetRecord) -> list[tuple[str, str]]:
    rows = [
        ("Fleet run", record.fleet_run_id),
        ("Batch", "every pending migration (a release)" if record.batch == "pending" else str(record.batch)),
        ("Targets file", record.targets_file),
        ("Waves", " then ".join(record.waves)),
        ("Engine", record.engine),
        ("Started", record.started_at),
        ("Duration", f"{record.seconds:.1f} s"),
    ]
    if record.mode != PREFLIGHT:
        rows.append(("Strategy", record.strategy or "direct"))
        rows.append(("Max failures", str(record.max_failures) if record.max_failures else "no limit"))
    if record.stopped:
        rows.append(("Stopped", record.stopped))
    return rows


def _title(record: FleetRecord) -> str:
    kind = "fleet preflight" if record.mode == PREFLIGHT else "fleet run"
    what = "Release" if record.batch == "pending" else f"Batch {record.batch}"
    return f"{what} {kind}: {headline(record)}"


def markdown(record: FleetRecord, folder: Path, reports: Path) -> str:
    parts = [f"# {md.text(_title(record))}", ""]
    parts.append(md.table(["total", "count"], totals(record)))
    parts += ["", md.table(["fact", "value"], _facts(record)), "", "## Targets", ""]
    rows = []
    for t in record.targets:
        label, href = _link(t, reports, folder)
        link = f"[{md.text(label)}]({md.text(href)})" if href else ""
        rows.append([md.text(c) for c in _cells(record, t)] + [link, md.text(_note(t))])
    parts.append(md.table(_columns(record), rows, raw_columns=range(len(_columns(record)))))
    return "\n".join(parts).strip() + "\n"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.2rem; }
td, th { border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; }
.APPLIED, .GO, .ALREADY_APPLIED, .DRY_RUN { color: #176f2c; }
.FAILED, .NO-GO, .SKIPPED_NO-GO { color: #a40e26; font-weight: bold; }
.WARN, .NOT_RUN { color: #8a5a00; }
"""


def _css_class(status: str) -> str:
    return status.replace(" (", "_").replace(")", "").replace(" ", "_")


def page(record: FleetRecord, folder: Path, reports: Path) -> str:
    esc = lambda value: html.escape(str(value), quote=True)  # noqa: E731
    totals_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in totals(record))
    facts_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in _facts(record))
    head = "".join(f"<th>{esc(c)}</th>" for c in _columns(record))
    body = []
    for t in record.targets:
        cells = _cells(record, t)
        tds = [f"<td>{esc(c)}</td>" for c in cells]
        tds[2] = f'<td class="{esc(_css_class(t.status))}">{esc(t.status)}</td>'
        label, href = _link(t, reports, folder)
        tds.append(f'<td><a href="{esc(href)}">{esc(label)}</a></td>' if href else "<td></td>")
        tds.append(f"<td>{esc(_note(t))}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(_title(record))}</title>
<style>{_STYLE}</style></head><body>
<h1 class="{esc(_css_class(headline(record)))}">{esc(_title(record))}</h1>
<table>{totals_rows}</table>
<table>{facts_rows}</table>
<h2>Targets</h2>
<table><tr>{head}</tr>
{chr(10).join(body)}
</table></body></html>
"""


def write(record: FleetRecord, folder: Path, reports: Path) -> tuple[Path, Path]:
    """fleet.html and fleet.md in the fleet run folder."""
    html_path, md_path = folder / "fleet.html", folder / "fleet.md"
    html_path.write_text(page(record, folder, reports), encoding="utf-8")
    md_path.write_text(markdown(record, folder, reports), encoding="utf-8")
    return html_path, md_path
