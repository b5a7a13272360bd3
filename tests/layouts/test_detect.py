"""Which layout a folder holds, and runbook.toml's layout keys: found from the files or named, refused when
ambiguous or unknown (never read as an empty history), the tool's settings reaching its migrations."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runbook_lib import batch, config
from runbook_lib.errors import BatchError, ProjectError
from runbook_lib.layouts import detect


def _golang(root: Path, versions: list[int]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for v in versions:
        (root / f"{v}_step.up.sql").write_text(f"CREATE TABLE t{v} (id int);\n")
        (root / f"{v}_step.down.sql").write_text(f"DROP TABLE t{v};\n")
    return root


def test_each_layout_is_found_from_its_files(tmp_path: Path) -> None:
    golang = _golang(tmp_path / "g", [1, 2, 10])
    assert detect.layout_of(golang) == "golang-migrate"
    found = batch.scan(golang)
    assert [b.name for b in found.batches] == ["1_step", "2_step", "10_step"]  # numeric, not 1, 10, 2
    assert [b.number for b in found.batches] == [1, 2, 3] and found.batches[2].depends_on == (2,)
    assert found.batches[0].file("rollback.sql").name == "1_step.down.sql"

    flyway = tmp_path / "f"
    flyway.mkdir()
    (flyway / "V1.0.0.10__later.sql").write_text("CREATE TABLE b (id int);\n")
    (flyway / "V1.0.0.3.1__first.sql").write_text("CREATE TABLE a (id int);\n")
    assert [b.name for b in batch.discover(flyway)] == ["V1.0.0.3.1__first", "V1.0.0.10__later"]

    drizzle = tmp_path / "d"
    (drizzle / "meta").mkdir(parents=True)
    (drizzle / "0001_b.sql").write_text("CREATE TABLE b (id int);\n")
    (drizzle / "0000_a.sql").write_text("CREATE TABLE a (id int);\n")
    (drizzle / "0002_draft.sql").write_text("CREATE TABLE draft (id int);\n")
    entries = [
        {"idx": i, "version": "7", "when": 1700000000000 + i, "tag": t, "breakpoints": True}
        for i, t in enumerate(["0001_b", "0000_a"])
    ]
    (drizzle / "meta" / "_journal.json").write_text(
        json.dumps({"version": "7", "dialect": "postgresql", "entries": entries})
    )
    scanned = batch.scan(drizzle)
    assert [b.name for b in scanned.batches] == ["0001_b", "0000_a"]  # the journal's order
    assert "0002_draft.sql" in scanned.note and "drizzle does not run" in scanned.note


def test_a_folder_runbook_cannot_read_is_refused_and_an_empty_one_is_empty(tmp_path: Path) -> None:
    odd = tmp_path / "odd"
    odd.mkdir()
    for n in range(3):
        (odd / f"{n}-x.sql").write_text("SELECT 1;\n")
    with pytest.raises(
        BatchError,
        match=r"holds 3 \.sql file\(s\) but no migration runbook can read .* name "
        r"the layout in runbook.toml",
    ):
        batch.scan(odd)
    mixed = _golang(tmp_path / "mixed", [1])
    (mixed / "V2__b.sql").write_text("SELECT 1;\n")
    with pytest.raises(BatchError, match=r"holds 2 golang-migrate migration\(s\) and 1 flyway migration\(s\)"):
        batch.scan(mixed)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "migration_lock.toml").write_text('provider = "postgresql"\n')  # a Prisma project with none yet
    assert batch.scan(empty).empty


def test_runbook_toml_names_the_layout_and_the_tools_settings(tmp_path: Path) -> None:
    project = tmp_path / "app"
    folder = project / "db"
    folder.mkdir(parents=True)
    (folder / "V1__create.sql").write_text("CREATE TABLE ${prefix}_t (id int);\n")
    (project / "runbook.toml").write_text(
        'migrations_dir = "db"\nlayout = "flyway"\n\n[flyway]\nplaceholders = { prefix = "app" }\nschemas = ["app"]\n'
    )
    found = batch.discover(folder)
    assert found[0].migration_sql == "CREATE TABLE app_t (id int);\n"  # substituted; the checksum is the file's
    assert found[0].settings.schemas == ("app",) and found[0].layout == "flyway"
    assert config.find_project_file(project).migrations_dir == folder.resolve()

    (project / "runbook.toml").write_text('layout = "flyway"\n\n[flyway]\nplaceholder = { prefix = "app" }\n')
    with pytest.raises(
        ProjectError,
        match=r"runbook.toml line 4: unknown key 'placeholder' in \[flyway\]; its keys "
        r"are locations, placeholders",
    ):
        config.find_project_file(project)
    (project / "runbook.toml").write_text('layout = "golang-migrate"\n\n[flyway]\nschemas = ["app"]\n')
    with pytest.raises(ProjectError, match=r"\[flyway\] settings, but layout = 'golang-migrate'"):
        config.find_project_file(project)
    (project / "runbook.toml").write_text('layout = "liquibase"\n')
    with pytest.raises(ProjectError, match="layout must be one of 'runbook', 'prisma', 'golang-migrate'"):
        config.find_project_file(project)


@pytest.mark.parametrize("where", ["db/migrations", "db/migration", "src/main/resources/db/migration", "drizzle"])
def test_each_tools_usual_folder_is_found(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _golang(tmp_path / where, [1])
    monkeypatch.chdir(tmp_path)
    assert config.find_migrations_dir() == folder
    assert os.path.samefile(config.migrations_dir(), folder)
