"""The command layer: every subcommand is a function of runbook_lib.commands, usable from Python, and
the defaults the CLI, the notebooks and the phase functions use are the one set in config.DEFAULTS."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from pathlib import Path

import nbformat
import pytest

from runbook_lib import cli, commands, config
from runbook_lib.config import DEFAULTS, Options
from runbook_lib.db.connection import redact
from runbook_lib.errors import BatchError, RunbookError
from runbook_lib.phases import apply, rollback, validate


def test_every_subcommand_is_a_command_function() -> None:
    parser = cli.build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    functions = {"example": "example_load"}
    for name in subcommands:
        assert callable(getattr(commands, functions.get(name, name), None)), f"no commands.{name}()"


def test_cli_defaults_are_the_config_defaults() -> None:
    args = cli.build_parser().parse_args(["apply", "7"])
    assert cli._options(args) == DEFAULTS
    args = cli.build_parser().parse_args(["apply", "7", "--lock-timeout", "50", "--strategy", "online"])
    assert cli._options(args) == dataclasses.replace(DEFAULTS, lock_timeout_ms=50, strategy="online")


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata  # only this test asks

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"runbook {metadata.version('runbook')}\n"


def test_help_states_each_option_default_and_what_batch_is(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["apply", "--help"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "the batch's number: `batch` in its batch.toml" in said
    for option, default in (
        ("--lock-timeout", DEFAULTS.lock_timeout_ms),
        ("--max-attempts", DEFAULTS.max_attempts),
        ("--wait-for-blockers", DEFAULTS.wait_for_blockers_s),
        ("--blocker-threshold", DEFAULTS.blocker_threshold_ms),
        ("--batch-ms", DEFAULTS.backfill_batch_ms),
        ("--strategy", DEFAULTS.strategy),
    ):
        help_text = said.split(option, 2)[2]  # the usage line names it first, the option's help second
        assert f"(default: {default})" in help_text.split(" --", 1)[0], option


@pytest.mark.parametrize(
    "phase, function", [("apply", apply.run), ("rollback", rollback.run), ("validate", validate.run)]
)
def test_notebook_parameters_and_phase_functions_use_the_defaults(phase: str, function) -> None:
    notebook = nbformat.read(config.notebooks_dir() / f"{phase}.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    values: dict = {}
    exec(cell.source, {}, values)  # the parameter cell is plain assignments
    signature = inspect.signature(function).parameters
    for name in config._PHASE_OPTIONS[phase]:
        assert values[name] == getattr(DEFAULTS, name), f"{phase}.ipynb: {name}"
        assert signature[name].default == getattr(DEFAULTS, name), f"{function.__module__}.run: {name}"


@pytest.mark.parametrize(
    "options, says",
    [
        (Options(strategy="fast"), "Unknown strategy 'fast'"),
        (Options(lock_timeout_ms=-1), "must be 0 or more"),
        (Options(max_attempts=0), "max_attempts at least 1"),
        (Options(dry_run="yes"), "must be True or False"),
        (Options(max_attempts="ten"), "must be a whole number"),
        (Options(wait_for_blockers_s=-1), "wait_for_blockers_s must be a number of seconds, 0 or more"),
        (Options(terminate_blockers_after_s="soon"), r"terminate_blockers_after_s must be .* or None \(off\)"),
    ],
)
def test_options_refuse_bad_values_naming_them(options: Options, says: str) -> None:
    with pytest.raises((RunbookError, BatchError), match=says):
        options.checked()


def test_options_give_a_notebook_only_what_differs_from_the_defaults() -> None:
    options = Options(dry_run=True, force=True, max_attempts=3)
    assert options.parameters("apply") == {"dry_run": True, "force": True, "max_attempts": 3}
    assert options.parameters("rollback") == {"dry_run": True, "max_attempts": 3}  # no force for a rollback
    assert options.parameters("validate") == {}
    assert Options(fail_on_not_run=True, dry_run=True).parameters("validate") == {"fail_on_not_run": True}


@pytest.mark.kernel
def test_a_run_driven_from_python(crm_url: str, tmp_path: Path) -> None:
    """What the CLI does, without it: status, run 6, status again, from the command functions alone."""
    target = commands.target(crm_url)
    assert not target.embedded and target.shown == redact(crm_url)
    before = {s.number: s.applied for s in commands.status(target, config.example_migrations_dir())}
    assert before == {6: False, 7: False}
    outcome = commands.run(
        target,
        6,
        migrations_dir=config.example_migrations_dir(),
        reports_dir=tmp_path / "reports",
        options=Options(lock_timeout_ms=500),
    )
    assert outcome.ok and outcome.batch == 6
    assert [p.phase for p in outcome.phases] == ["preflight", "apply", "validate", "summary"]
    assert outcome.summary_html is not None and outcome.summary_html.is_file()
    apply_record = json.loads((outcome.run_dir / "apply.json").read_text(encoding="utf-8"))
    assert apply_record["status"] == "applied" and apply_record["lock_timeout_ms"] == 500
    after = {s.number: s.applied for s in commands.status(target, config.example_migrations_dir())}
    assert after == {6: True, 7: False}


@pytest.mark.kernel
def test_run_of_an_applied_batch_has_nothing_to_run_unless_its_file_changed(
    empty_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`runbook run N` again (a CI job re-run) passes as `apply` and `fleet run` do; a changed file does not."""
    from runbook_lib.execution.session import open_session

    folder = tmp_path / "migrations" / "001_note"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text("CREATE TABLE note (id int PRIMARY KEY);\n")
    reports = tmp_path / "reports"
    common = [
        "--database-url",
        empty_db,
        "--migrations-dir",
        str(tmp_path / "migrations"),
        "--reports-dir",
        str(reports),
    ]
    apply.run(open_session(1, database_url=empty_db, migrations_dir=tmp_path / "migrations", reports_dir=reports))
    runs_before = sorted(reports.rglob("run.json"))

    assert cli.main(["run", "1", *common]) == 0
    said = capsys.readouterr().out
    assert re.search(
        r": batch 1 \(001_note\) was already applied at \S+ by \S+.* \(according to runbook's ledger "
        r"and Prisma's history\); nothing to run$",
        said.strip(),
    ), said
    assert cli.main(["run", "1", *common, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and doc["run_dir"] is None and "nothing to run" in doc["already_applied"]
    assert sorted(reports.rglob("run.json")) == runs_before  # no run folder for nothing

    (folder / "migration.sql").write_text("CREATE TABLE note (id int PRIMARY KEY, body text);\n")
    assert cli.main(["run", "1", *common]) == 1  # the phases run, and preflight says why not
    assert "migration.sql changed since batch 1 was applied" in capsys.readouterr().out
