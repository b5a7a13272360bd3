"""Prisma Client regeneration: `prisma generate` after a successful apply, opt-in (`--prisma-generate`).

A migration changes the tables; the application's generated client (node_modules/.prisma/client: the
types and queries Prisma generates from schema.prisma) follows only when `prisma generate` runs again.
With `Options.prisma_generate`, `notebook.chain.run_phases` calls `after_apply` in the parent process
(never in a notebook kernel, never in a fleet run: `runbook fleet` does not take the option) once the
apply succeeded (not a dry run, not a failed or rolled-back apply). It runs the project's own Prisma CLI,
`node_modules/.bin/prisma` found from the migrations folder up, with `--schema` pointing at the project's
schema.prisma (or schema folder) when there is one, and records what happened in `prisma_generate.json`
(`PrismaGenerate`): the command line, the CLI's version, the exit code, the duration and the output
(cut, passwords masked). A failure (non-zero exit, timeout, no node) is a WARN, never a failed migration.
Without the option, or without a Prisma CLI or node, nothing runs and the record says why not.

`section_markdown` renders the summary's "Prisma Client Regeneration" section, `terminal_lines` the
headline's line. docs/prisma-generate.md.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from runbook_lib.db import connection
from runbook_lib.orm import prisma_schema

#: The record's name in the run folder: prisma_generate.json.
RECORD = "prisma_generate"
TITLE = "Prisma Client Regeneration"
TIMEOUT_S = 120.0  # `prisma generate` of a large schema takes seconds; a hang is cut off, as a WARN
VERSION_TIMEOUT_S = 30.0
OUTPUT_LIMIT = 4000  # characters of output kept in the record: the head and the tail, the middle cut
CLI = Path("node_modules") / ".bin" / "prisma"
RUN_HINT = "npx prisma generate"

# the reasons it did not run, each spelled once
NOT_REQUESTED = "--prisma-generate was not given"
DRY_RUN = "a dry run: nothing was applied"
APPLY_FAILED = "the apply did not succeed"
APPLY_NOT_RUN = "the apply did not run"
ROLLED_BACK = "the batch was rolled back (--rollback-on-failure)"
NO_NODE = "node is not on PATH; the Prisma CLI runs on Node.js"


@dataclass
class PrismaGenerate:
    """prisma_generate.json: whether `prisma generate` ran after the apply, and what it said.

    `ran` False: `reason` says why not, and command/version/output are empty (nothing was produced).
    `warning`: a sentence when this is a WARN (it failed, or it was asked for and could not run).
    """

    ran: bool
    command: str = ""  # as run, from `cwd`: node_modules/.bin/prisma generate --schema prisma/schema.prisma
    version: str = ""  # `prisma --version`'s "prisma" line (or its first line)
    exit_code: int | None = None  # None: it did not run, or was cut off at the timeout
    seconds: float = 0.0
    output: str = ""  # stdout and stderr, cut to OUTPUT_LIMIT, passwords masked
    reason: str = ""  # why it did not run
    warning: str = ""  # a WARN for the headline and the summary; "" when it ran cleanly or was not asked for
    cwd: str = ""  # the project directory it ran in (the folder holding node_modules)
    schema: str = ""  # the --schema given ("" when none was found: Prisma's own defaults)

    @property
    def ok(self) -> bool:
        return self.ran and self.exit_code == 0


# --- finding the project's Prisma CLI, schema and node ---------------------------------------------


def find_cli(start: Path | str) -> Path | None:
    """node_modules/.bin/prisma, from `start` (the migrations folder) up; None when there is none."""
    here = Path(start).resolve()
    for directory in (here, *here.parents):
        candidate = directory / CLI
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_node(path: str | None = None) -> str | None:
    """node on `path` (default: PATH); the Prisma CLI is a Node.js script."""
    return shutil.which("node", path=path if path is not None else os.environ.get("PATH"))


# --- masking and cutting the output ---------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@", re.I)
_KEY_PASSWORD = re.compile(r"(\bpassword\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)", re.I)


def clean_output(text: str, *urls: str | None, limit: int = OUTPUT_LIMIT) -> str:
    """The output without colour codes, with the passwords of `urls` and of any URL or password=... in it as
    ***, cut to `limit` characters (the head and the tail kept: the error is usually at the end)."""
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    text = connection.mask(text, *urls, os.environ.get("DATABASE_URL"))
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _KEY_PASSWORD.sub(r"\1***", text)
    text = text.strip("\n")
    if len(text) > limit:
        head = limit // 4
        tail = limit - head
        cut = len(text) - head - tail
        text = f"{text[:head]}\n… ({cut} characters cut) …\n{text[-tail:]}"
    return text


# --- running it -------------------------------------------------------------------------------------


def _environment(database_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if database_url:
        env["DATABASE_URL"] = database_url  # what schema.prisma's env("DATABASE_URL") names: the database migrated
    env.setdefault("PRISMA_HIDE_UPDATE_MESSAGE", "1")  # no update check, no notice in the output
    env.setdefault("NO_COLOR", "1")
    return env


def _execute(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int | None, str, float]:
    """(exit code, stdout+stderr, seconds); exit code None when cut off at `timeout` (its process group killed)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: node and whatever it started
        out, _ = proc.communicate()
        code = None
    return code, (out or b"").decode("utf-8", "replace"), round(time.perf_counter() - started, 3)


def version_line(text: str) -> str:
    """`prisma --version`'s "prisma : 6.1.0" line, else its first non-empty line."""
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    for line in lines:
        if re.match(r"prisma\s*:", line, re.I):
            return re.sub(r"\s*:\s*", " ", line, count=1)
        if re.match(r"prisma\s+(cli\s+)?v?\d", line, re.I):
            return line
    return lines[0] if lines else ""


def _shown(path: Path, cwd: Path) -> str:
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


def not_run(reason: str, *, warning: bool = False) -> PrismaGenerate:
    """The record of a generate that did not run; with `warning`, asked for and impossible: a WARN."""
    return PrismaGenerate(
        False, reason=reason, warning=f"prisma generate was not run: {reason}; run `{RUN_HINT}`" if warning else ""
    )


def run(migrations_dir: Path | str, *, database_url: str | None = None, timeout: float = TIMEOUT_S) -> PrismaGenerate:
    """`prisma generate` with the project's CLI (found from `migrations_dir` up), in the project's folder.

    Never raises for what the CLI does: no CLI or no node is a record that says so, a failure or a timeout a
    record with its warning.
    """
    cli = find_cli(migrations_dir)
    if cli is None:
        return not_run(
            f"no Prisma CLI ({CLI}) found from {Path(migrations_dir).resolve()} up; "
            "npm install --save-dev prisma installs it",
            warning=True,
        )
    if find_node() is None:
        return not_run(NO_NODE, warning=True)
    cwd = cli.parent.parent.parent  # <project>/node_modules/.bin/prisma
    schema = prisma_schema.project_schema(migrations_dir)  # None: the CLI finds it (package.json, prisma.config.ts)
    argv = [str(cli), "generate", *(["--schema", str(schema)] if schema else [])]
    shown = shlex.join([_shown(cli, cwd), "generate", *(["--schema", _shown(schema, cwd)] if schema else [])])
    env = _environment(database_url)
    try:
        code, said, _ = _execute([str(cli), "--version"], cwd, env, min(timeout, VERSION_TIMEOUT_S))
        version = version_line(said) if code == 0 else ""
        code, output, seconds = _execute(argv, cwd, env, timeout)
    except OSError as exc:  # not executable after all, a bad interpreter line
        return PrismaGenerate(
            True,
            shown,
            "",
            None,
            0.0,
            "",
            "",
            f"prisma generate could not start ({exc}); run `{RUN_HINT}`",
            str(cwd),
            _shown(schema, cwd) if schema else "",
        )
    output = clean_output(output, database_url)
    if code is None:
        warning = f"prisma generate did not finish within {timeout:g} s and was stopped; run `{RUN_HINT}`"
    elif code != 0:
        last = next((line for line in reversed(output.splitlines()) if line.strip()), "no output")
        warning = f"prisma generate failed (exit {code}): {last.strip()}; run `{RUN_HINT}`"
    else:
        warning = ""
    return PrismaGenerate(
        True, shown, version, code, seconds, output, "", warning, str(cwd), _shown(schema, cwd) if schema else ""
    )


def after_apply(
    requested: bool,
    *,
    dry_run: bool,
    apply_ok: bool | None,
    rolled_back: bool,
    migrations_dir: Path | str,
    database_url: str | None = None,
    timeout: float = TIMEOUT_S,
) -> PrismaGenerate:
    """What the chain records once its phases are done: `run` when asked for and the apply succeeded, else why
    not. `apply_ok` None: the apply did not run (preflight stopped the run)."""
    if not requested:
        return not_run(NOT_REQUESTED)
    if dry_run:
        return not_run(DRY_RUN)
    if apply_ok is None:
        return not_run(APPLY_NOT_RUN)
    if not apply_ok:
        return not_run(APPLY_FAILED)
    if rolled_back:
        return not_run(ROLLED_BACK)
    try:
        return run(migrations_dir, database_url=database_url, timeout=timeout)
    except OSError as exc:  # a folder it could not read: a WARN, as any failure of the generate
        return not_run(f"the project could not be read ({exc})", warning=True)


# --- showing it -------------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def terminal_lines(record: PrismaGenerate | None) -> list[str]:
    """The headline's line: `WARN: ...` on a failure (or asked for and impossible), the version and duration
    when it ran cleanly, nothing when it was not asked for."""
    if record is None:
        return []
    if record.warning:
        return [f"WARN: {record.warning}"]
    if record.ok:
        return [f"prisma generate: ok ({record.version or 'prisma'}, {duration(record.seconds)})"]
    return []


def _fence(text: str) -> str:
    """A fence longer than any run of backticks in `text`."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


IMPACT = (
    "What it changes: the generated types in node_modules/.prisma/client follow the schema: see Application Impact."
)


def section_markdown(
    record: PrismaGenerate | None, project_hint: str | Path | None = None, *, heading: bool = True
) -> str:
    """The summary's "Prisma Client Regeneration" section, plain Markdown (no HTML).

    `project_hint`: the project's folder (where to run the command), named in the text when given. Output is
    shown only when the command ran: a record that did not run shows why, and the command to run. `heading`
    False: the body alone, for a caller that writes the "## Prisma Client Regeneration" itself.
    """
    lines = [f"## {TITLE}", ""] if heading else []
    where = f" in `{project_hint}`" if project_hint else ""
    if record is None:
        record = not_run("no record of it in this run folder")
    if record.ran:
        status = (
            "exit 0"
            if record.exit_code == 0
            else "stopped at the timeout"
            if record.exit_code is None
            else f"exit {record.exit_code}"
        )
        if record.warning:
            lines += [f"**WARN**: {record.warning.rstrip('.')}.", ""]
        lines += [
            f"- Command: `{record.command}`" + (f" (in `{record.cwd}`)" if record.cwd else ""),
            f"- Prisma CLI: {record.version or 'unknown (prisma --version said nothing readable)'}",
            f"- Duration: {duration(record.seconds)}",
            f"- Exit: {status}",
            "",
        ]
        if record.output:
            fence = _fence(record.output)
            lines += ["Output:", "", f"{fence}text", record.output, fence, ""]
        else:
            lines += ["Output: none.", ""]
        if not record.ok:
            lines += [
                f"The migration itself is applied; regenerate the client{where}:",
                "",
                "```bash",
                RUN_HINT,
                "```",
                "",
            ]
    else:
        warn = "**WARN**: " if record.warning else ""  # asked for, and it could not run
        lines += [f"{warn}Not run ({record.reason}). Run{where}:", "", "```bash", RUN_HINT, "```", ""]
    lines += [IMPACT, ""]
    return "\n".join(lines)
