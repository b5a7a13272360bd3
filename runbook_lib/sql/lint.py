"""The squawk migration linter, run on a migration's SQL; its findings mapped to statements.

squawk (https://squawkhq.com, the `squawk-cli` wheel) is optional: when it is missing or fails,
`lint` says so in `LintResult.note` and never raises. Observed behaviour of squawk 2.x that this
module relies on: `--reporter json` prints a JSON list of findings on stdout; it reads the SQL
from stdin when no path is given; exit status 0 means no findings, 1 means findings (warnings
count), 2 means a usage error; lines and columns are 0-based and columns count UTF-8 bytes.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from runbook_lib.errors import AnalysisError
from runbook_lib.sql.parse import split_statements

INSTALL_HINT = "squawk not installed: pip install squawk-cli"

RUNBOOK_SETS_TIMEOUTS: tuple[str, ...] = ("require-lock-timeout", "require-statement-timeout")
"""Rules about settings that runbook's apply phase sets itself (lock_timeout, statement_timeout)."""

_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class LintFinding:
    """One squawk finding, with 1-based line and column and the statement it falls in."""

    statement_index: int | None
    line: int
    column: int
    rule: str
    level: str
    message: str
    help: str


@dataclass(frozen=True)
class LintResult:
    """squawk's findings on a migration, or why there are none (`available` False: not run)."""

    available: bool
    version: str | None
    findings: tuple[LintFinding, ...]
    note: str

    def for_statement(self, index: int) -> tuple[LintFinding, ...]:
        """The findings that fall in statement `index` (1-based)."""
        return tuple(f for f in self.findings if f.statement_index == index)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict, as the preflight record stores it."""
        return {
            "available": self.available,
            "version": self.version,
            "note": self.note,
            "findings": [vars(finding) for finding in self.findings],
        }


def find_squawk() -> str | None:
    """Path of the squawk executable: next to this Python (its virtualenv's bin) first, then PATH."""
    bin_dir = Path(sys.executable).parent
    for name in ("squawk", "squawk.exe"):
        candidate = bin_dir / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("squawk")


@functools.lru_cache(maxsize=8)
def _version(executable: str) -> str | None:
    try:
        completed = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    words = completed.stdout.split()
    return words[-1] if completed.returncode == 0 and words else None


def _line_starts(sql: str) -> list[int]:
    starts = [0]
    for position, char in enumerate(sql):
        if char == "\n":
            starts.append(position + 1)
    return starts


def _char_column(line_text: str, byte_column: int) -> int:
    """Convert a 0-based UTF-8 byte offset within a line to a 0-based character offset."""
    return len(line_text.encode("utf-8")[:byte_column].decode("utf-8", errors="ignore"))


def _statement_spans(
    sql: str, statements: Iterable[tuple[int, int, str]], line_starts: list[int]
) -> list[tuple[int, int, int]]:
    """(index, start offset, end offset) of each statement in `sql`."""
    spans = []
    for index, line, text in statements:
        from_offset = line_starts[line - 1] if 0 < line <= len(line_starts) else 0
        start = sql.find(text, from_offset)
        if start < 0:
            continue
        spans.append((index, start, start + len(text)))
    return spans


def _statement_at(
    offset: int, line: int, spans: Iterable[tuple[int, int, int]], statements: Iterable[tuple[int, int, str]]
) -> int | None:
    for index, start, end in spans:
        if start <= offset <= end:
            return index
    # Not inside any statement's text (e.g. on its terminating ';'): the last one starting on or before the line.
    candidates = [index for index, first_line, _ in statements if first_line <= line]
    return candidates[-1] if candidates else None


def _unavailable(version: str | None, note: str) -> LintResult:
    return LintResult(available=False, version=version, findings=(), note=note)


def _command(executable: str, server_major: int | None, assume_in_transaction: bool) -> list[str]:
    command = [executable, "--reporter", "json"]
    if server_major is not None:
        command.append(f"--pg-version={server_major}.0")
    if assume_in_transaction:
        command.append("--assume-in-transaction")
    return command


def _run(command: list[str], version: str | None, stdin: str | None = None) -> list | LintResult:
    """squawk's findings as JSON, or the LintResult that says why there are none."""
    try:
        completed = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return _unavailable(version, f"squawk did not finish within {_TIMEOUT_SECONDS} s; lint skipped")
    except OSError as exc:
        return _unavailable(version, f"squawk could not be started ({exc}); lint skipped")
    # 0: no findings, 1: findings; anything else (2: usage error, a signal) is a failure.
    try:
        raw_findings = json.loads(completed.stdout) if completed.returncode in (0, 1) else None
    except json.JSONDecodeError:
        raw_findings = None
    if not isinstance(raw_findings, list):
        detail = (completed.stderr.strip() or completed.stdout.strip() or "no output").splitlines()[0]
        return _unavailable(version, f"squawk failed (exit status {completed.returncode}): {detail}; lint skipped")
    return raw_findings


def lint(
    sql: str,
    *,
    server_major: int | None = None,
    statements: list[tuple[int, int, str]] | None = None,
    assume_in_transaction: bool = True,
    ignore_rules: Iterable[str] = RUNBOOK_SETS_TIMEOUTS,
) -> LintResult:
    """Run squawk on `sql` and map each finding to the statement it falls in.

    `server_major` is passed as squawk's --pg-version. `statements` is split_statements(sql),
    computed when not given. `assume_in_transaction` tells squawk the file runs inside one
    transaction, as runbook's apply does by default. Findings of `ignore_rules` are dropped:
    by default the timeout rules, since apply sets lock_timeout and statement_timeout itself.
    """
    executable = find_squawk()
    if executable is None:
        return _unavailable(None, INSTALL_HINT)
    version = _version(executable)
    command = [*_command(executable, server_major, assume_in_transaction), "--stdin-filepath", "migration.sql"]
    raw = _run(command, version, stdin=sql)
    if isinstance(raw, LintResult):
        return raw
    return _result(sql, raw, version, statements, server_major, assume_in_transaction, ignore_rules)


def lint_files(
    paths: list[Path],
    *,
    server_major: int | None = None,
    assume_in_transaction: bool = True,
    ignore_rules: Iterable[str] = RUNBOOK_SETS_TIMEOUTS,
) -> dict[Path, LintResult]:
    """`lint` for many files in one squawk run: a release of hundreds of migrations, not hundreds of processes."""
    executable = find_squawk()
    if executable is None:
        return {path: _unavailable(None, INSTALL_HINT) for path in paths}
    version = _version(executable)
    if not paths:
        return {}
    raw = _run(_command(executable, server_major, assume_in_transaction) + [str(p) for p in paths], version)
    if isinstance(raw, LintResult):
        return {path: raw for path in paths}
    by_file: dict[str, list] = {}
    for finding in raw:
        by_file.setdefault(str(finding.get("file") or ""), []).append(finding)
    results = {}
    for path in paths:
        with path.open(encoding="utf-8", newline="") as handle:  # as squawk read it: CRLF kept
            sql = handle.read()
        results[path] = _result(
            sql, by_file.get(str(path), []), version, None, server_major, assume_in_transaction, ignore_rules
        )
    return results


def _result(
    sql: str,
    raw_findings: list,
    version: str | None,
    statements: list[tuple[int, int, str]] | None,
    server_major: int | None,
    assume_in_transaction: bool,
    ignore_rules: Iterable[str],
) -> LintResult:
    """squawk's findings for one file, each mapped to the statement it falls in."""
    ignored = set(ignore_rules)
    raw_findings = [raw for raw in raw_findings if str(raw.get("rule_name") or "unknown") not in ignored]
    if statements is None and raw_findings:  # parsed only to place a finding: most files have none
        try:
            statements = split_statements(sql)
        except AnalysisError:
            statements = []
    statements = statements or []
    lines = sql.split("\n")
    line_starts = _line_starts(sql)
    spans = _statement_spans(sql, statements, line_starts)

    findings = []
    for raw in raw_findings:
        rule = str(raw.get("rule_name") or "unknown")
        line0 = max(0, int(raw.get("line") or 0))
        line_text = lines[line0] if line0 < len(lines) else ""
        column0 = _char_column(line_text, max(0, int(raw.get("column") or 0)))
        offset = (line_starts[line0] if line0 < len(line_starts) else len(sql)) + column0
        findings.append(
            LintFinding(
                statement_index=_statement_at(offset, line0 + 1, spans, statements),
                line=line0 + 1,
                column=column0 + 1,
                rule=rule,
                level=str(raw.get("level") or "warning").lower(),
                message=str(raw.get("message") or ""),
                help=str(raw.get("help") or ""),
            )
        )
    findings.sort(key=lambda f: (f.line, f.column, f.rule))

    parts = [f"squawk {version or '(unknown version)'}: {len(findings)} finding{'s' if len(findings) != 1 else ''}"]
    if server_major is not None:
        parts.append(f"rules for PostgreSQL {server_major}")
    if assume_in_transaction:
        parts.append("assuming the file runs in one transaction")
    if ignored:
        why = " (runbook sets these timeouts itself)" if ignored == set(RUNBOOK_SETS_TIMEOUTS) else ""
        parts.append(f"ignoring {', '.join(sorted(ignored))}{why}")
    return LintResult(available=True, version=version, findings=tuple(findings), note="; ".join(parts))
