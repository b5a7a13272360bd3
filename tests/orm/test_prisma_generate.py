"""`--prisma-generate`: the project's `prisma generate` after a successful apply, recorded in prisma_generate.json.

The Prisma CLI from npm fetches its engine from a host this machine cannot reach, so the command path is tested
with a stand-in: <project>/node_modules/.bin/prisma, a small sh script that prints a version for --version and
Prisma's "Generated Prisma Client" line for generate (or fails), and logs how it was called. A fake `node` on PATH
stands for Node.js (the real CLI is a Node script); `prisma_generate.find_node` is what a test replaces to have none.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from pathlib import Path

import psycopg
import pytest
from incli import cli

from runbook_lib import config
from runbook_lib.db import ledger
from runbook_lib.orm import prisma_generate as pg
from runbook_lib.orm import prisma_schema
from runbook_lib.report import records

GENERATED = "✔ Generated Prisma Client (v6.2.1) to ./node_modules/@prisma/client in 42ms"

STAND_IN = f"""#!/bin/sh
echo "$PWD|$*" >> "$PWD/prisma-calls.log"
case "$1" in
  --version)
    echo "Environment variables loaded from .env"
    echo "prisma                  : 6.2.1"
    echo "@prisma/client          : 6.2.1"
    ;;
  generate)
    echo "Prisma schema loaded from $3"
    echo "datasource: $DATABASE_URL"
    echo "{GENERATED}"
    ;;
esac
"""

FAILING = """#!/bin/sh
echo "$PWD|$*" >> "$PWD/prisma-calls.log"
case "$1" in
  --version) echo "prisma                  : 6.2.1" ;;
  generate)
    echo "Prisma schema loaded from $3"
    echo "Error: Prisma schema validation - (get-dmmf wasm)" >&2
    echo "error: Type \\"Customr\\" is neither a built-in type, nor refers to another model" >&2
    exit 1
    ;;
esac
"""

SLOW = """#!/bin/sh
case "$1" in
  --version) echo "prisma                  : 6.2.1" ;;
  generate) echo "starting"; sleep 30 ;;
esac
"""


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def fake_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `node` first on PATH: the stand-in needs none, but runbook looks for it as the real CLI needs it."""
    bin_dir = tmp_path / "bin"
    _executable(bin_dir / "node", "#!/bin/sh\necho v22.0.0\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return bin_dir


def make_project(root: Path, script: str | None = STAND_IN) -> Path:
    """<root>/prisma/{migrations,schema.prisma} from the example, and node_modules/.bin/prisma; the migrations."""
    migrations = root / "prisma" / "migrations"
    shutil.copytree(config.example_migrations_dir(), migrations)
    shutil.copy(config.example_dir() / "schema.prisma", root / "prisma" / "schema.prisma")
    if script is not None:
        _executable(root / "node_modules" / ".bin" / "prisma", script)
    return migrations


def calls(root: Path) -> list[str]:
    log = root / "prisma-calls.log"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def record_of(run_dir: Path) -> pg.PrismaGenerate:
    found = records.RunFolder.open(run_dir).read(pg.RECORD, pg.PrismaGenerate)
    assert found is not None, f"no {pg.RECORD}.json in {run_dir}"
    return found


def applied(url: str, number: int) -> bool:
    with psycopg.connect(url) as conn:
        return ledger.state(conn, number).applied


def run_dir_of(out: str) -> Path:
    line = next(line for line in out.splitlines() if line.startswith("run folder: "))
    return Path(line.removeprefix("run folder: ").removesuffix(" (index.html)"))


# --- through the command line, against the example CRM ------------------------------------------------


@pytest.mark.kernel
def test_run_with_prisma_generate_records_the_cli_its_version_and_output(crm_url, tmp_path, fake_node) -> None:
    project = tmp_path / "project"
    migrations = make_project(project)

    done = cli(
        "run",
        6,
        "--database-url",
        crm_url,
        "--migrations-dir",
        migrations,
        "--reports-dir",
        tmp_path / "reports",
        "--prisma-generate",
    )

    assert done.code == 0, done.err + done.out
    assert applied(crm_url, 6)
    rec = record_of(done.run_dir)
    assert rec.ran and rec.ok and rec.exit_code == 0 and not rec.warning and not rec.reason
    assert rec.command == "node_modules/.bin/prisma generate --schema prisma/schema.prisma"
    assert rec.version == "prisma 6.2.1"
    assert 0 < rec.seconds < 30
    assert GENERATED in rec.output
    assert rec.cwd == str(project.resolve()) and rec.schema == "prisma/schema.prisma"
    # in the project's folder, in the parent process, after the apply: --version, then generate
    assert [c.split("|") for c in calls(project)] == [
        [str(project.resolve()), "--version"],
        [str(project.resolve()), f"generate --schema {project.resolve() / 'prisma' / 'schema.prisma'}"],
    ]
    assert "prisma generate: ok (prisma 6.2.1," in done.out
    # the record was there before the summary rendered, and the summary still renders
    assert done.summary_md.is_file()


@pytest.mark.kernel
def test_a_failing_generate_is_a_warn_and_the_migration_stays_applied(crm_url, tmp_path, fake_node) -> None:
    project = tmp_path / "project"
    migrations = make_project(project, FAILING)

    done = cli(
        "apply",
        6,
        "--database-url",
        crm_url,
        "--migrations-dir",
        migrations,
        "--reports-dir",
        tmp_path / "reports",
        "--prisma-generate",
    )

    assert done.code == 0, done.err + done.out  # the exit code says the migration, not the generate
    assert applied(crm_url, 6)
    rec = record_of(run_dir_of(done.out))
    assert rec.ran and not rec.ok and rec.exit_code == 1
    assert "is neither a built-in type" in rec.output and "Prisma schema loaded from" in rec.output
    assert rec.warning.startswith('prisma generate failed (exit 1): error: Type "Customr"')
    assert "WARN: prisma generate failed (exit 1)" in done.out
    assert "npx prisma generate" in done.out


@pytest.mark.kernel
@pytest.mark.parametrize("case", ["no flag", "dry run", "no node"])
def test_nothing_runs_and_the_record_says_why(case, crm_url, tmp_path, fake_node, monkeypatch) -> None:
    project = tmp_path / "project"
    migrations = make_project(project)
    argv = ["apply", 6, "--database-url", crm_url, "--migrations-dir", migrations, "--reports-dir", tmp_path / "r"]
    if case != "no flag":
        argv.append("--prisma-generate")
    if case == "dry run":
        argv.append("--dry-run")
    if case == "no node":
        monkeypatch.setattr(pg, "find_node", lambda path=None: None)

    done = cli(*argv)

    assert done.code == 0, done.err + done.out
    assert calls(project) == []  # the stand-in was never called
    rec = record_of(run_dir_of(done.out))
    assert not rec.ran and rec.exit_code is None and rec.output == "" and rec.command == "" and rec.version == ""
    expected = {"no flag": pg.NOT_REQUESTED, "dry run": pg.DRY_RUN, "no node": pg.NO_NODE}[case]
    assert rec.reason == expected
    assert applied(crm_url, 6) is (case != "dry run")
    if case == "no node":  # asked for and impossible: a WARN
        assert f"WARN: prisma generate was not run: {pg.NO_NODE}" in done.out
    else:
        assert "prisma generate" not in done.out and not rec.warning


@pytest.mark.kernel
def test_deploy_generates_once_for_the_release(crm_url, tmp_path, fake_node) -> None:
    project = tmp_path / "project"
    migrations = make_project(project)

    done = cli(
        "deploy",
        "--to",
        6,
        "--database-url",
        crm_url,
        "--migrations-dir",
        migrations,
        "--reports-dir",
        tmp_path / "reports",
        "--prisma-generate",
    )

    assert done.code == 0, done.err + done.out
    assert applied(crm_url, 6) and not applied(crm_url, 7)
    rec = record_of(run_dir_of(done.out))  # the release's folder, not a migration's
    assert rec.ok and GENERATED in rec.output
    assert [c.split("|")[1].split()[0] for c in calls(project)] == ["--version", "generate"]


def test_fleet_refuses_the_flag(tmp_path) -> None:
    toml = tmp_path / "fleet.toml"
    toml.write_text('[[target]]\nname = "a"\nurl_env = "RB_NONE"\n', encoding="utf-8")

    done = cli("fleet", "run", 6, "--targets", toml, "--prisma-generate")

    assert done.code == 2
    assert done.err.strip() == "runbook: unrecognized arguments: --prisma-generate; see `runbook --help`."


def test_no_prisma_cli_found_is_recorded(tmp_path, fake_node) -> None:
    migrations = make_project(tmp_path / "project", script=None)

    rec = pg.after_apply(True, dry_run=False, apply_ok=True, rolled_back=False, migrations_dir=migrations)

    assert not rec.ran and rec.reason.startswith("no Prisma CLI (node_modules/.bin/prisma) found from ")
    assert rec.warning


# --- the module ---------------------------------------------------------------------------------------


def test_find_node_follows_path(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert pg.find_node(str(empty)) is None
    node = _executable(tmp_path / "bin" / "node", "#!/bin/sh\n")
    assert pg.find_node(str(node.parent)) == str(node)


def test_the_cli_is_found_from_the_migrations_folder_up(tmp_path) -> None:
    migrations = make_project(tmp_path / "project")
    cli_path = tmp_path / "project" / "node_modules" / ".bin" / "prisma"
    assert pg.find_cli(migrations) == cli_path.resolve()
    assert pg.find_cli(tmp_path) is None


def test_the_schema_file_or_folder(tmp_path) -> None:
    migrations = make_project(tmp_path / "a")
    assert prisma_schema.project_schema(migrations) == (tmp_path / "a" / "prisma" / "schema.prisma").resolve()
    folder = tmp_path / "b" / "prisma" / "schema"  # prismaSchemaFolder: migrations next to the datasource's file
    (folder / "migrations").mkdir(parents=True)
    (folder / "base.prisma").write_text("datasource db {}\n", encoding="utf-8")
    assert prisma_schema.project_schema(folder / "migrations") == folder.resolve()
    (tmp_path / "c" / "migrations").mkdir(parents=True)
    assert prisma_schema.project_schema(tmp_path / "c" / "migrations") is None


def test_a_hanging_generate_is_stopped_at_the_timeout(tmp_path, fake_node) -> None:
    migrations = make_project(tmp_path / "project", SLOW)

    rec = pg.run(migrations, timeout=1)

    assert rec.ran and rec.exit_code is None and 1 <= rec.seconds < 10
    assert "starting" in rec.output
    assert rec.warning.startswith("prisma generate did not finish within 1 s")


# Passwords made up when the tests run: none is committed.
SECRET, OTHER, THIRD = (secrets.token_hex(6) for _ in range(3))


def url_with(user: str, password: str, host: str, scheme: str = "postgresql") -> str:
    """A URL with its password in it, as a user might write one (the password made up at run time)."""
    return f"{scheme}://{user}:{password}@{host}/crm"


def test_the_output_is_masked_and_cut() -> None:
    url = url_with("app", SECRET, "db.internal:5432")
    said = (
        f"\x1b[32mloaded\x1b[0m DATABASE_URL={url}\nother {url_with('u', OTHER, 'h', 'postgres')}\n"
        f"password={THIRD}\n" + "x" * 10_000 + "\nError: the end"
    )
    clean = pg.clean_output(said, url)
    for secret in (SECRET, OTHER, THIRD, "\x1b["):
        assert secret not in clean
    assert "postgresql://app:***@db.internal:5432/crm" in clean
    assert len(clean) < pg.OUTPUT_LIMIT + 100 and "characters cut" in clean and clean.endswith("Error: the end")


def test_the_database_password_is_masked_in_the_record(tmp_path, fake_node) -> None:
    migrations = make_project(tmp_path / "project")
    rec = pg.run(migrations, database_url=url_with("app", SECRET, "localhost"))
    assert rec.ok and "datasource: postgresql://app:***@localhost/crm" in rec.output
    assert SECRET not in records.to_json(rec)


def test_version_line() -> None:
    assert (
        pg.version_line("Environment variables loaded\nprisma                  : 6.2.1\n@prisma/client : 6.2.1")
        == "prisma 6.2.1"
    )
    assert pg.version_line("6.2.1\n") == "6.2.1"
    assert pg.version_line("") == ""


def test_section_markdown_when_it_ran() -> None:
    rec = pg.PrismaGenerate(
        True,
        "node_modules/.bin/prisma generate --schema prisma/schema.prisma",
        "prisma 6.2.1",
        0,
        1.234,
        "Prisma schema loaded from prisma/schema.prisma\n" + GENERATED,
        cwd="/srv/app",
        schema="prisma/schema.prisma",
    )
    text = pg.section_markdown(rec, "/srv/app")
    assert text.startswith("## Prisma Client Regeneration\n")
    assert "- Prisma CLI: prisma 6.2.1" in text and "- Duration: 1.2 s" in text and "- Exit: exit 0" in text
    assert f"```text\nPrisma schema loaded from prisma/schema.prisma\n{GENERATED}\n```" in text
    assert "Not run" not in text and "WARN" not in text and "<" not in text
    assert "Application Impact" in text


def test_section_markdown_when_it_failed_keeps_its_fence_outside_the_output() -> None:
    rec = pg.PrismaGenerate(
        True,
        "node_modules/.bin/prisma generate",
        "prisma 6.2.1",
        1,
        0.5,
        "Error: see ```here```",
        warning="prisma generate failed (exit 1): Error; run `x`",
    )
    text = pg.section_markdown(rec, None)
    assert "**WARN**: prisma generate failed (exit 1)" in text and "- Exit: exit 1" in text
    assert "````text\nError: see ```here```\n````" in text
    assert "```bash\nnpx prisma generate\n```" in text


def test_section_markdown_when_not_run() -> None:
    text = pg.section_markdown(pg.not_run(pg.NOT_REQUESTED), "/srv/app")
    assert f"Not run ({pg.NOT_REQUESTED}). Run in `/srv/app`:\n\n```bash\nnpx prisma generate\n```" in text
    assert "node_modules/.prisma/client" in text and "Application Impact" in text
    assert "Output" not in text and "Duration" not in text and "WARN" not in text and "<" not in text
    assert f"**WARN**: Not run ({pg.NO_NODE}). Run:" in pg.section_markdown(pg.not_run(pg.NO_NODE, warning=True))
    assert not pg.section_markdown(pg.not_run(pg.DRY_RUN), heading=False).startswith("#")


def test_terminal_lines() -> None:
    assert pg.terminal_lines(None) == []
    assert pg.terminal_lines(pg.not_run(pg.NOT_REQUESTED)) == []
    assert pg.terminal_lines(pg.not_run(pg.NO_NODE, warning=True)) == [
        f"WARN: prisma generate was not run: {pg.NO_NODE}; run `npx prisma generate`"
    ]
    ok = pg.PrismaGenerate(True, "c", "prisma 6.2.1", 0, 0.25, GENERATED)
    assert pg.terminal_lines(ok) == ["prisma generate: ok (prisma 6.2.1, 250 ms)"]
