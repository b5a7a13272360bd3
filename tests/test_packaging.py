"""The wheel: built from the project, installed into a fresh virtualenv, it runs the example from an empty directory.

The notebooks and the example live in the checkout's notebooks/ and examples/crm/ (papermill runs
them from there); pyproject.toml's package-dir maps them into the wheel as runbook_lib/notebook/ipynb
and runbook_lib/db/example_crm, and runbook_lib/config.py finds them there when there is no checkout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

from runbook_lib.db import connection as database

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]

# What a build reads from the project (pyproject.toml names README.md as the readme).
SOURCES = ("pyproject.toml", "README.md", "runbook_lib", "notebooks", "examples")


def test_every_subpackage_is_listed_and_the_data_folders_exist() -> None:
    """pyproject lists its packages (two are mapped data folders, three more hold data): a new subpackage must
    be added there."""
    code = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "runbook_lib").rglob("__init__.py")}
    code.add("runbook_lib")  # a namespace package: no __init__.py
    mapped = SETUPTOOLS["package-dir"]
    # folders of data files only, listed so that setuptools does not warn of each on every install
    data = {
        "runbook_lib.db.example_crm.migrations",
        "runbook_lib.report.templates.runbook",
        "runbook_lib.report.templates.runbook.static",
    }
    assert all(SETUPTOOLS["package-data"][name] == ["*/*" if name.endswith("migrations") else "*"] for name in data)
    assert set(SETUPTOOLS["packages"]) == code | set(mapped) | data, (
        "pyproject.toml's [tool.setuptools] packages must list every package of runbook_lib "
        f"(missing: {sorted(code - set(SETUPTOOLS['packages']))})"
    )
    assert mapped == {"runbook_lib.notebook.ipynb": "notebooks", "runbook_lib.db.example_crm": "examples/crm"}
    for folder in mapped.values():
        assert (ROOT / folder).is_dir()
    # no second copy inside the package folder: the mapping is the only way in
    assert not (ROOT / "runbook_lib" / "notebook" / "ipynb").exists()
    assert not (ROOT / "runbook_lib" / "db" / "example_crm").exists()


def _run(args: list, *, cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(map(str, args))} exited {done.returncode}\n--- stdout\n{done.stdout[-4000:]}\n"
        f"--- stderr\n{done.stderr[-4000:]}"
    )
    return done


@pytest.mark.slow
@pytest.mark.kernel
def test_the_installed_wheel_runs_the_example_from_an_empty_directory(tmp_path: Path, make_database) -> None:
    timings: dict[str, float] = {}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "RUNBOOK_REPORTS_DIR", "RUNBOOK_HOME", "VIRTUAL_ENV", "DATABASE_URL")
    }

    # Built from a copy of the project, so the build's build/ and *.egg-info stay out of the checkout.
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        else:
            shutil.copy2(ROOT / name, src / name)
    venv = tmp_path / "venv"
    python, runbook = venv / "bin" / "python", venv / "bin" / "runbook"

    started = time.perf_counter()
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path, env=env, timeout=300)
    timings["venv"] = time.perf_counter() - started

    started = time.perf_counter()
    built = _run(
        [python, "-m", "pip", "wheel", "-v", "--no-deps", "-w", tmp_path / "dist", src],
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    # every data folder is in pyproject's packages: no BuildBackendWarning per folder on each install
    assert "absent from the `packages` configuration" not in built.stdout + built.stderr
    timings["wheel"] = time.perf_counter() - started
    (wheel,) = (tmp_path / "dist").glob("runbook-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        assert f"runbook_lib/notebook/ipynb/{notebook.name}" in names
    for path in (ROOT / "examples" / "crm").rglob("*"):
        if path.is_file():
            assert f"runbook_lib/db/example_crm/{path.relative_to(ROOT / 'examples' / 'crm').as_posix()}" in names
    for path in (ROOT / "runbook_lib").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            assert path.relative_to(ROOT).as_posix() in names

    started = time.perf_counter()
    _run([python, "-m", "pip", "install", "--quiet", wheel], cwd=tmp_path, env=env, timeout=900)
    timings["install"] = time.perf_counter() - started

    empty = tmp_path / "empty"
    empty.mkdir()
    probe = _run(
        [
            python,
            "-c",
            "import json, runbook_lib.config as c; print(json.dumps({'file': c.__file__, "
            "'checkout': str(c.checkout()), 'notebooks': str(c.notebooks_dir()), 'example': str(c.example_dir()), "
            "'reports': str(c.default_reports_dir()), 'state': str(c.state_dir())}))",
        ],
        cwd=empty,
        env=env,
        timeout=60,
    )
    where = json.loads(probe.stdout)
    site = venv.resolve()
    for key in ("file", "notebooks", "example"):
        assert Path(where[key]).resolve().is_relative_to(site), (key, where)
    assert where["checkout"] == "None"
    assert Path(where["reports"]).resolve() == empty.resolve() / "reports"
    assert Path(where["state"]).resolve() == empty.resolve() / ".runbook"

    url = make_database()
    env["DATABASE_URL"] = url
    started = time.perf_counter()
    _run([runbook, "example", "load"], cwd=empty, env=env, timeout=300)
    _run([runbook, "run", "6"], cwd=empty, env=env, timeout=600)
    _run([runbook, "run", "7"], cwd=empty, env=env, timeout=600)
    timings["runs"] = time.perf_counter() - started

    db = database.database_name(url)
    for number in (6, 7):
        (run_dir,) = (empty / "reports" / db / str(number)).iterdir()
        assert (run_dir / "summary.html").is_file()
        executed = json.loads((run_dir / "apply.ipynb").read_text(encoding="utf-8"))
        source = executed["metadata"]["papermill"]["input_path"]
        if isinstance(source, dict):  # papermill records the notebook object runbook's shared kernel passes it
            source = source["metadata"]["papermill"]["input_path"]
        source = Path(source).resolve()
        assert source.is_relative_to(site / "lib") and source.parent.name == "ipynb", source
    # DATABASE_URL: no embedded server state; `example load` made the empty folder the example's project
    assert sorted(p.name for p in empty.iterdir()) == ["reports", "runbook.toml"]
    project = (empty / "runbook.toml").read_text(encoding="utf-8")
    named = Path(re.search(r'migrations_dir = "(.+)"', project).group(1))
    assert named.resolve().is_relative_to(site) and named.name == "migrations", project
    print("wheel test timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
