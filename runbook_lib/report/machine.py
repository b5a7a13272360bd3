"""`--format json` and `--format markdown`: what a script or a pull request reads instead of the terminal.

The JSON document is one object on stdout carrying FORMAT_VERSION (raised when a documented key is renamed,
removed or changes meaning; docs/json.md lists the keys per command) with the phase records' data exactly as
the run folder holds it. The Markdown is a pull-request comment of a preflight that must fit GitHub's
comment limit, so each section is cut, with a note, when the whole would not fit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runbook_lib import names
from runbook_lib.report import records
from runbook_lib.report.terminal import FolderRecords

# 2: a test's, gate's or check's `outcome` is passed / failed / not_run (it was the text of what happened, now
# `observed`), and `passed` is gone; X/Y counts the tests that ran.
FORMAT_VERSION = 2
GITHUB_COMMENT_LIMIT = 65_536  # characters GitHub accepts in one issue or pull-request comment


def plain(value: Any) -> Any:
    """A dataclass (or list of them) as JSON data, the same shape the run folder's records have."""
    data = json.loads(records.to_json(value))
    if isinstance(data, dict):
        data.pop("schema_version", None)
    return data


def document(command: str, ok: bool, **fields: Any) -> str:
    """The one JSON document a command prints: format_version, command, ok, then the command's own keys."""
    return json.dumps(
        {"format_version": FORMAT_VERSION, "command": command, "ok": ok, **fields},
        indent=2,
        ensure_ascii=False,
        default=str,
    )


def run_fields(run_dir: Path, summary_html: Path | None, summary_md: Path | None) -> dict[str, Any]:
    """A run folder's records: run.json, each phase's record, and for a release each migration's."""
    folder = records.RunFolder.open(run_dir)
    run_data = _raw(folder, "run")
    out: dict[str, Any] = {
        "run_dir": str(run_dir),
        "summary_html": str(summary_html) if summary_html else None,
        "summary_md": str(summary_md) if summary_md else None,
        "run": run_data,
        "failure": next((p for p in (run_data or {}).get("phases", []) if not p.get("ok")), None),
    }
    if run_data and run_data.get("release"):
        out["release"] = _raw(folder, "release")
        out["migrations"] = [
            {"folder": child.path.name, "records": FolderRecords.read(child).raw} for child in folder.children()
        ]
    else:
        out["records"] = FolderRecords.read(folder).raw
    return out


def _raw(folder: records.RunFolder, name: str) -> dict[str, Any] | None:
    return folder.read_data(name)


# --- the pull-request comment of a preflight ------------------------------------------------------


def _cell(text: object, width: int = 160) -> str:
    flat = " ".join(str(text).split()).replace("|", "\\|")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _rows(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(_cell(c) for c in row) + " |" for row in rows
    ]


def preflight_sections(result: records.PreflightResult) -> list[tuple[str, list[str]]]:
    """(title, lines) of each section: verdict, locks per statement, lint, estimates, blockers."""
    verdict = result.verdict
    icon = {names.GO: "✅", names.WARN: "⚠️", names.NOGO: "⛔"}.get(verdict.status, "")
    head = [f"## {icon} runbook preflight: batch {result.batch.number} {result.batch.name}: **{verdict.status}**", ""]
    head += [f"- {_cell(r, 1000)}" for r in verdict.reasons] or ["No reason to wait: every check passed."]
    estimates = {c.statement_index: c for c in result.lock_costs}
    locks = _rows(
        ("#", "line", "statement", "locks", "blocks writes", "estimate"),
        [
            (
                s.index,
                s.line,
                s.kind,
                s.lock_summary or "no table lock",
                "yes" if s.blocks_writes else "no",
                f"{estimates[s.index].estimate_ms:.1f} ms" if s.index in estimates else "-",
            )
            for s in result.statements
        ],
    )
    lint = result.lint
    lint_lines = (
        _rows(
            ("statement", "line", "rule", "level", "message"),
            [(f.statement_index or "-", f.line, f.rule, f.level, f.message) for f in lint.findings],
        )
        if lint and lint.findings
        else [f"squawk found nothing{'' if lint is None or lint.available else ': ' + lint.note}."]
    )
    costs = (
        _rows(
            ("#", "statement", "table", "lock", "rows", "estimate", "online alternative"),
            [
                (
                    c.statement_index,
                    c.kind,
                    c.table,
                    c.mode,
                    c.rows_estimate,
                    f"{c.estimate_ms:.1f} ms",
                    c.alternative or "-",
                )
                for c in result.lock_costs
            ],
        )
        if result.lock_costs
        else ["No statement blocks writes while it scans or rewrites a table."]
    )
    blockers = (
        _rows(
            ("pid", "user", "application", "state", "transaction age", "locks", "reason"),
            [
                (b.pid, b.user, b.application, b.state, f"{b.transaction_age_s:.0f} s", b.locks, b.reason)
                for b in result.blockers
            ],
        )
        if result.blockers
        else ["No session holds a lock the migration would wait for."]
    )
    return [
        ("", head),
        ("### Locks per statement", locks),
        ("### Lint (squawk)", lint_lines),
        ("### Lock estimates", costs),
        ("### Blockers", blockers),
    ]


def _block(title: str, lines: list[str]) -> str:
    return "\n".join(([title, ""] if title else []) + lines) + "\n\n"


def _shares(sizes: list[int], budget: int) -> list[int]:
    """Each section's share of the budget: small ones whole, the rest split evenly among the big ones."""
    shares = [0] * len(sizes)
    left, todo = budget, sorted(range(len(sizes)), key=lambda i: sizes[i])
    while todo:
        i = todo.pop(0)
        shares[i] = min(sizes[i], left // (len(todo) + 1))
        left -= shares[i]
    return shares


def _cut_section(title: str, lines: list[str], share: int, note: str) -> str:
    kept = [title, ""] if title else []
    for i, line in enumerate(lines):
        if len(_block("", [*kept, line])) + len(note) + 12 > share:
            kept.append(note.format(n=len(lines) - i))
            break
        kept.append(line)
    block = _block("", kept)
    return block if len(block) <= share else ""


def preflight_markdown(result: records.PreflightResult, limit: int = GITHUB_COMMENT_LIMIT) -> str:
    """The comment, each section cut with a note when the whole would exceed `limit` characters.

    Small sections stay whole and the big ones share what is left, so a migration of thousands of
    statements still shows its lint, estimates and blockers.
    """
    sections = preflight_sections(result)
    footer = f"\n<sub>runbook preflight, run {result.run_id}; the full report is in the run folder.</sub>\n"
    note = "\n_{n} more row(s) left out to fit GitHub's comment size limit; the run folder has them all._"
    blocks = [_block(title, lines) for title, lines in sections]
    budget = limit - len(footer) - 1
    if sum(len(b) for b in blocks) > budget:
        shares = _shares([len(b) for b in blocks], budget)
        blocks = [
            b if len(b) <= share else _cut_section(title, lines, share, note)
            for b, share, (title, lines) in zip(blocks, shares, sections, strict=True)
        ]
    return ("".join(blocks).rstrip("\n") + "\n" + footer)[:limit]
