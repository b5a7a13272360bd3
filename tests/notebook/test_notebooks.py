"""The phase notebooks themselves: as committed, run by papermill directly, through the runner, and by nbval."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import psycopg
import pytest
from papermill.exceptions import PapermillExecutionError
from psycopg import conninfo

from runbook_lib import config
from runbook_lib.db import connection as database
from runbook_lib.db import ledger
from runbook_lib.errors import PhaseFailed
from runbook_lib.execution.session import open_session
from runbook_lib.notebook import runner
from runbook_lib.phases import apply

# Runs Jupyter kernels: notebook and report machinery, the same on any server (see pyproject's markers).
pytestmark = pytest.mark.kernel

NOTEBOOKS = config.notebooks_dir()
PHASES = ["preflight", "apply", "validate", "summary", "rollback"]
PASSWORD = "nb-s3cret-pw"


def not_applied_sentence(db: str, batch: int) -> str:
    return (
        f"Batch {batch} is not applied on {db}, so there is nothing to validate; "
        f"apply it first (`runbook apply {batch}`)."
    )


@pytest.mark.parametrize("phase", PHASES)
def test_committed_notebook_is_clean_and_parameterised(phase: str) -> None:
    nb = nbformat.read(str(NOTEBOOKS / f"{phase}.ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [], f"{phase}.ipynb cell has outputs: {cell.source[:60]!r}"
        assert cell.execution_count is None, f"{phase}.ipynb cell has an execution count: {cell.source[:60]!r}"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    assert re.search(r"^batch = 7\b", tagged[0].source, re.M) or phase == "summary"
    # the database travels in DATABASE_URL: a database_url parameter exists only to refuse a password
    # given that way (papermill writes parameters into the executed notebook), and defaults to None
    assert not re.search(r"^\s*(url|password)\s*=", tagged[0].source, re.M | re.I)
    assert re.search(r"^database_url = None\b", tagged[0].source, re.M) or phase in ("summary", "check")


def test_papermill_parameter_with_a_password_is_refused(crm_url: str, tmp_path: Path) -> None:
    from psycopg import conninfo

    url = conninfo.make_conninfo(crm_url, password="pw-in-a-parameter")
    out = tmp_path / "preflight.ipynb"
    with pytest.raises(PapermillExecutionError) as failed:
        papermill.execute_notebook(
            str(NOTEBOOKS / "preflight.ipynb"),
            str(out),
            kernel_name="python3",
            parameters={"batch": 7, "database_url": url, "reports_dir": str(tmp_path)},
            progress_bar=False,
        )
    assert failed.value.ename == "DatabaseError" and "DATABASE_URL" in failed.value.evalue
    assert "--engine runbook" in failed.value.evalue  # the way to give it as a parameter and keep it out
    assert "pw-in-a-parameter" not in failed.value.evalue
    assert not list(tmp_path.glob("*/*/*/preflight.json"))  # nothing ran, nothing recorded


def test_papermill_runs_apply_with_the_url_only_in_the_environment(
    crm_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = conninfo.make_conninfo(crm_url, password=PASSWORD)  # trust auth: any password is accepted
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("RUNBOOK_REPORTS_DIR", str(tmp_path / "default-reports"))
    out = tmp_path / "apply-6.ipynb"

    papermill.execute_notebook(
        str(NOTEBOOKS / "apply.ipynb"),
        str(out),
        parameters={
            "batch": 6,
            "reports_dir": str(tmp_path / "reports"),
            "migrations_dir": str(config.example_migrations_dir()),
        },
        progress_bar=False,
        kernel_name="python3",
    )

    text = out.read_text(encoding="utf-8")
    assert PASSWORD not in text
    assert url not in text and crm_url not in text
    assert database.redact(url) in text  # the notebook shows the target, password redacted
    assert "***" in database.redact(url)
    nb = nbformat.reads(text, as_version=4)
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    # the record went where reports_dir says, and the database did what batch 6 says
    records = list((tmp_path / "reports").rglob("apply.json"))
    assert len(records) == 1 and PASSWORD not in records[0].read_text(encoding="utf-8")
    assert not (tmp_path / "default-reports").exists()
    with psycopg.connect(crm_url) as conn:
        assert ledger.state(conn, 6).applied
        assert conn.execute('SELECT count(*) FROM "Lead" WHERE customer_id IS NULL').fetchone()[0] == 0


def test_papermill_cli_with_runbook_engine_takes_a_password_parameter_and_writes_it_nowhere(
    crm_url: str, tmp_path: Path
) -> None:
    """`papermill --engine runbook ... -p database_url URL`: the URL reaches the kernel, never a file."""
    url = conninfo.make_conninfo(crm_url, password=PASSWORD)  # trust auth: any password is accepted
    out = tmp_path / "apply-6.ipynb"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            "--engine",
            "runbook",
            "--no-progress-bar",
            str(NOTEBOOKS / "apply.ipynb"),
            str(out),
            "-p",
            "batch",
            "6",
            "-p",
            "database_url",
            url,
            "-p",
            "reports_dir",
            str(tmp_path / "reports"),
            "-p",
            "migrations_dir",
            str(config.example_migrations_dir()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert PASSWORD not in done.stdout + done.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert out in files and any(p.name == "apply.json" for p in files)
    for path in files:
        assert PASSWORD.encode() not in path.read_bytes(), f"password in {path}"
    nb = nbformat.read(str(out), as_version=4)
    [injected] = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert re.search(r"^database_url = None$", injected.source, re.M)
    assert database.redact(url) in injected.source and nb.metadata.papermill.parameters.database_url == database.redact(
        url
    )
    with psycopg.connect(crm_url) as conn:
        assert ledger.state(conn, 6).applied  # the notebook reached the database the parameter named


def test_notebooks_sharing_a_kernel_start_from_an_empty_namespace(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for phase, source in (
        ("preflight", "leftover = 41\nimport json"),
        (
            "apply",
            "assert 'leftover' not in dir() and 'json' not in dir(), dir()\n"
            "import sys\nassert 'json' in sys.modules  # imports stay: the point of sharing",
        ),
    ):
        nbformat.write(
            nbformat.v4.new_notebook(
                cells=[nbformat.v4.new_code_cell(source)],
                metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}},
            ),
            str(notebooks / f"{phase}.ipynb"),
        )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with runner.SharedKernel("", run_dir) as kernel:
        runner.execute(
            "preflight", run_dir / "preflight.ipynb", {}, database_url="", notebooks_dir=notebooks, kernel=kernel
        )
        sockets = Path(kernel.km.ip).parent
        assert sockets.is_dir() and sockets.stat().st_mode & 0o077 == 0  # the kernel's sockets: this user's only
        runner.execute("apply", run_dir / "apply.ipynb", {}, database_url="", notebooks_dir=notebooks, kernel=kernel)
    assert not sockets.exists()
    assert sorted(p.name for p in run_dir.iterdir()) == ["apply.ipynb", "preflight.ipynb"]  # no socket files here


def test_a_cell_timeout_in_a_shared_kernel_leaves_the_next_notebook_a_fresh_kernel(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    kernelspec = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
    for phase, source in (("apply", "import time\ntime.sleep(60)"), ("summary", "finished = True")):
        nbformat.write(
            nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)], metadata=kernelspec),
            str(notebooks / f"{phase}.ipynb"),
        )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with runner.SharedKernel("", run_dir) as kernel:
        with pytest.raises(PhaseFailed) as timed_out:
            runner.execute(
                "apply",
                run_dir / "apply.ipynb",
                {},
                database_url="",
                notebooks_dir=notebooks,
                kernel=kernel,
                cell_timeout_s=2,
            )
        assert timed_out.value.ename == "CellTimeoutError"
        # still sleeping in the old kernel, the next notebook would time out too; it runs in a new one
        done = runner.execute(
            "summary",
            run_dir / "summary.ipynb",
            {},
            database_url="",
            notebooks_dir=notebooks,
            kernel=kernel,
            cell_timeout_s=2,
        )
    assert not any(
        o.get("output_type") == "error"
        for c in nbformat.read(str(done.notebook), as_version=4).cells
        for o in c.get("outputs", [])
    )


def test_failing_notebook_raises_with_cell_error_name_and_sentence(
    crm_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", crm_url)
    params = {
        "batch": 7,
        "reports_dir": str(tmp_path / "reports"),
        "migrations_dir": str(config.example_migrations_dir()),
    }
    sentence = not_applied_sentence(database.database_name(crm_url), 7)

    with pytest.raises(PapermillExecutionError) as direct:
        papermill.execute_notebook(
            str(NOTEBOOKS / "validate.ipynb"),
            str(tmp_path / "direct.ipynb"),
            parameters=params,
            progress_bar=False,
            kernel_name="python3",
        )
    assert direct.value.ename == "NotApplied"
    assert direct.value.evalue == sentence

    out = tmp_path / "validate.ipynb"
    with pytest.raises(PhaseFailed) as failed:
        runner.execute("validate", out, params, database_url=crm_url)
    exc = failed.value
    assert (exc.phase, exc.ename, exc.evalue) == ("validate", "NotApplied", sentence)
    assert isinstance(exc.cell_index, int)
    executed = nbformat.read(str(out), as_version=4)
    assert "validate.run(session" in executed.cells[exc.cell_index].source  # the cell that failed
    assert str(exc) == f"validate failed in cell {exc.cell_index} of {out}: NotApplied: {sentence}"
    assert os.environ["DATABASE_URL"] == crm_url  # the runner puts the environment back
    with psycopg.connect(crm_url) as conn:
        assert not ledger.state(conn, 7).applied


def test_nbval_runs_the_notebooks_defaults_end_to_end(crm_url: str, tmp_path: Path) -> None:
    """preflight GO -> apply -> validate -> summary -> rollback of batch 7, each cell a passing nbval test."""
    apply.run(
        open_session(
            6, database_url=crm_url, reports_dir=tmp_path / "setup", migrations_dir=config.example_migrations_dir()
        )
    )
    root = config.project_root()
    notebooks = [f"notebooks/{phase}.ipynb" for phase in PHASES]
    code_cells = sum(
        1 for name in notebooks for c in nbformat.read(str(root / name), as_version=4).cells if c.cell_type == "code"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RUNBOOK_TEST"))}
    env.update(DATABASE_URL=crm_url, RUNBOOK_REPORTS_DIR=str(tmp_path / "reports"))
    # The notebooks' defaults find the project's migrations from where they run: a project whose
    # runbook.toml names the example's folder, the notebooks copied into it.
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "runbook.toml").write_text(f'migrations_dir = "{config.example_migrations_dir()}"\n')
    for name in notebooks:
        shutil.copy(root / name, project / name)

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-p",
            "no:cacheprovider",
            "-o",
            "testpaths=",
            "--rootdir",
            str(project),
            "-q",
            *notebooks,
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(rf"\b{code_cells} passed\b", done.stdout), done.stdout[-2000:]
    assert " failed" not in done.stdout
    # each notebook made its own run folder under RUNBOOK_REPORTS_DIR, for the database in DATABASE_URL
    batch_dir = tmp_path / "reports" / database.database_name(crm_url) / "7"
    written = {p.name for p in batch_dir.rglob("*.json")}
    assert written == {"preflight.json", "apply.json", "validate.json", "rollback.json"}
    preflight_record = json.loads(next(batch_dir.rglob("preflight.json")).read_text(encoding="utf-8"))
    assert preflight_record["verdict"]["status"] == "GO"
    # rollback was the last notebook: batch 7 is not applied and customer_id is nullable again
    with psycopg.connect(crm_url) as conn:
        states = ledger.states(conn)
        assert states[6].applied and not states[7].applied
        nullable = conn.execute(
            "SELECT is_nullable FROM information_schema.columns"
            " WHERE table_name = 'Lead' AND column_name = 'customer_id'"
        ).fetchone()[0]
        assert nullable == "YES"
        phases = [r[0] for r in conn.execute("SELECT phase FROM runbook.phase_run WHERE batch = 7 ORDER BY id")]
        assert phases == ["preflight", "apply", "validate", "rollback"]
