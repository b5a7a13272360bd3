"""A runbook notebook in a real kernel: cell by cell (nbclient), killed in the middle of a backfill and run again
from the top, stopped at a pause under papermill and resumed, and run by nbval."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import papermill
import psycopg
import pytest
from incli import cli
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError
from nbformat.v4 import new_code_cell

from runbook_lib import commands, config, names
from runbook_lib.db import approvals
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply

pytestmark = pytest.mark.kernel

_STATE = {  # what batch 6 leaves, without its timestamps (NOW() differs between two databases)
    "customers": 'SELECT id, name, email FROM "Customer" ORDER BY id',
    "leads": 'SELECT id, customer_id FROM "Lead" ORDER BY id',
    "jobs": 'SELECT id, customer_id FROM "Job" ORDER BY id',
    "backup": 'SELECT kind, row_id, previous_customer_id FROM "_runbook_backfill_006" ORDER BY kind, row_id',
}


def _state(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        return {name: conn.execute(query).fetchall() for name, query in _STATE.items()}


def _cell(nb, cell_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.get("id") == cell_id)


def test_a_kernel_killed_mid_backfill_then_run_all_ends_as_one_transaction_would(
    crm_url: str, make_database, crm_template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", crm_url)
    written = commands.notebook(
        commands.target(crm_url),
        6,
        migrations_dir=config.example_migrations_dir(),
        reports_dir=tmp_path / "reports",
        options=config.Options(strategy="online", backfill_rows_per_s=40),
    )
    nb = nbformat.read(str(written.notebook), as_version=4)
    steps = [c for c in nb.cells if "step" in c.metadata.get("tags", [])]
    assert [c.source for c in steps] == [f"book.step({n})" for n in range(1, 7)]  # a cell per step of the plan
    nb.cells.insert(_cell(nb, "target"), new_code_cell("import os\nprint(os.getpid())"))
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    killed: list[dict] = []
    with client.setup_kernel():
        for index in range(_cell(nb, "step-02")):
            client.execute_cell(nb.cells[index], index)
        pid = int(next(c for c in nb.cells if "getpid" in c.source).outputs[0]["text"])
        out_of_order = nb.cells[_cell(nb, "step-04")]
        with pytest.raises(CellExecutionError, match=r"StepRefused: Step 4 of batch 6's apply cannot run yet: step 2"):
            client.execute_cell(out_of_order, _cell(nb, "step-04"))
        twice = _cell(nb, "step-01")
        client.execute_cell(nb.cells[twice], twice)
        assert "step 1 of batch 6's apply was done at" in nb.cells[twice].outputs[-1]["data"]["text/plain"]

        def kill_mid_backfill() -> None:
            with psycopg.connect(crm_url, autocommit=True) as conn:
                for _ in range(600):
                    row = conn.execute(
                        "SELECT backfill FROM runbook.phase_run WHERE batch = 6 AND phase = 'apply'"
                        " AND status = 'running' ORDER BY id DESC LIMIT 1"
                    ).fetchone()
                    if row and row[0] and row[0].get("step") == 2 and row[0].get("rows", 0) > 0:
                        killed.append(row[0])
                        os.kill(pid, signal.SIGKILL)
                        return
                    time.sleep(0.02)

        watcher = threading.Thread(target=kill_mid_backfill)
        watcher.start()
        with pytest.raises((DeadKernelError, CellExecutionError, RuntimeError)):
            client.execute_cell(nb.cells[_cell(nb, "step-02")], _cell(nb, "step-02"))
        watcher.join()
    assert killed, "the backfill of step 2 was never seen under way"
    report = commands.status(commands.target(crm_url), config.example_migrations_dir())
    assert next(r for r in report.rows if r.number == 6).part_applied.startswith("its apply stopped after step 1 of 6")

    # Restart kernel and run all: the same notebook from the top, in a new kernel
    again = nbformat.read(str(written.notebook), as_version=4)
    NotebookClient(again, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = again.cells[_cell(again, "step-02")].outputs[-1]["data"]["text/plain"]
    assert shown.startswith("Step 2 committed in")
    with psycopg.connect(crm_url) as conn:
        statuses = [
            r[0]
            for r in conn.execute(
                "SELECT status FROM runbook.phase_run WHERE batch = 6 AND phase = 'apply' ORDER BY id"
            )
        ]
    assert statuses == ["paused", "interrupted"] + ["paused"] * 4 + ["succeeded"]  # steps 1, 2 (killed), 2-5, 6
    merged = written.run_dir / "apply.json"
    assert '"resumed_after"' in merged.read_text()  # step 2's backfill went on after the key it had committed
    reference = make_database(crm_template)
    apply.run(
        open_session(
            6,
            database_url=reference,
            reports_dir=tmp_path / "reference",
            migrations_dir=config.example_migrations_dir(),
        )
    )  # direct: one transaction
    assert _state(crm_url) == _state(reference)


def test_papermill_stops_at_the_pause_and_the_same_notebook_resumes_to_the_summary(
    crm_url: str, make_database, crm_template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", crm_url)
    apply.run(
        open_session(
            6, database_url=crm_url, reports_dir=tmp_path / "setup", migrations_dir=config.example_migrations_dir()
        )
    )
    done = cli(
        "notebook",
        "7",
        "--strategy",
        "online",
        "--migrations-dir",
        config.example_migrations_dir(),
        "--reports-dir",
        tmp_path / "reports",
        "--format",
        "json",
    )
    assert done.code == 0, done.err
    path = Path(done.json["notebook"])
    assert path.name == "runbook.ipynb" and done.json["steps"] == 11 and done.json["pauses"] == [5]

    # papermill's command line, with runbook's engine: the pause is exit code 3 and one sentence, not a failure
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RUNBOOK_TEST"))}
    first = subprocess.run(
        [
            str(Path(sys.executable).parent / "papermill"),
            "--engine",
            "runbook",
            "--no-progress-bar",
            str(path),
            str(tmp_path / "first.ipynb"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert first.returncode == 3, first.stderr[-3000:]
    assert "runbook: paused: Step 5 of batch 7 waits for an approval" in first.stderr
    assert "Traceback" not in first.stderr
    stopped = nbformat.read(str(tmp_path / "first.ipynb"), as_version=4)
    assert any(o.get("ename") == "AwaitingApproval" for o in stopped.cells[_cell(stopped, "step-05")].outputs)
    status = cli("status", "--migrations-dir", config.example_migrations_dir())
    assert re.search(r"7\s+007_tighten_constraints\s+PAUSED: step 4 of 11 committed; a runbook notebook", status.out)

    papermill.execute_notebook(
        str(path), str(tmp_path / "second.ipynb"), parameters={"approve": "all"}, progress_bar=False
    )
    summary = (path.parent / "summary.md").read_text()
    assert re.search(
        r"Pause before step 5 \(batch.toml's pause_before marks statement 4\) \| approved by \S+ "
        r"\(approve = \"all\"\)",
        summary,
    )
    assert summary.startswith("# Batch 7 Migration Summary: COMPLETED")
    assert "Validation: 18/18 tests passed." in summary
    # the same summary `runbook run` makes: the same sections, in the same order
    other = make_database(crm_template)
    apply.run(
        open_session(
            6, database_url=other, reports_dir=tmp_path / "setup2", migrations_dir=config.example_migrations_dir()
        )
    )
    ran = cli(
        "run",
        "7",
        "--strategy",
        "online",
        "--migrations-dir",
        config.example_migrations_dir(),
        "--reports-dir",
        tmp_path / "run",
        "--database-url",
        other,
    )
    assert ran.code == 0, ran.err
    assert re.findall(r"^## .*$", summary, re.M) == re.findall(r"^## .*$", ran.summary_md.read_text(), re.M)


def test_nbval_runs_the_notebook_once_its_pause_is_approved(
    crm_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply.run(
        open_session(
            6, database_url=crm_url, reports_dir=tmp_path / "setup", migrations_dir=config.example_migrations_dir()
        )
    )
    written = commands.notebook(
        commands.target(crm_url),
        7,
        migrations_dir=config.example_migrations_dir(),
        reports_dir=tmp_path / "reports",
        options=config.Options(strategy="online"),
    )
    session = open_session(
        7, database_url=crm_url, run_dir=written.run_dir, migrations_dir=config.example_migrations_dir()
    )
    approvals.approve(
        crm_url,
        run_id=written.run_dir.name,
        batch=7,
        batch_name=session.batch.name,
        checksum=session.batch.checksum,
        step=5,
        by="carol",
        how="approved ahead, in a change ticket",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RUNBOOK_TEST"))}
    env["DATABASE_URL"] = crm_url
    code_cells = sum(1 for c in nbformat.read(str(written.notebook), as_version=4).cells if c.cell_type == "code")
    ran = subprocess.run(
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
            str(written.run_dir),
            "-q",
            str(written.notebook),
        ],
        cwd=written.run_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    assert re.search(rf"\b{code_cells} passed\b", ran.stdout), ran.stdout[-2000:]
    with psycopg.connect(crm_url) as conn:
        assert conn.execute("SELECT message FROM runbook.phase_run WHERE phase = 'approval'").fetchone()[0] == (
            "step 5 approved by carol; how: approved ahead, in a change ticket"
        )
    applied = (written.run_dir / "apply.json").read_text()
    assert '"by": "carol"' in applied and f'"status": "{names.APPLIED}"' in applied


def test_a_release_notebook_runs_under_papermill_to_the_release_summary(
    crm_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", crm_url)
    done = cli(
        "notebook",
        "pending",
        "--strategy",
        "online",
        "--migrations-dir",
        config.example_migrations_dir(),
        "--reports-dir",
        tmp_path / "reports",
    )
    assert done.code == 0, done.err
    assert "release on " in done.out and "17 step(s) in 2 section(s)" in done.out
    assert "before step 5 of migration 7" in done.out
    path = Path(re.search(r"^notebook: (\S+)$", done.out, re.M).group(1))
    nb = nbformat.read(str(path), as_version=4)
    assert [c.source for c in nb.cells if "step" in c.metadata.get("tags", [])][:2] == [
        "release.step(6, 1)",
        "release.step(6, 2)",
    ]
    with pytest.raises(papermill.PapermillExecutionError) as stopped:  # a Python caller: papermill's own error
        papermill.execute_notebook(str(path), str(tmp_path / "first.ipynb"), progress_bar=False)
    assert stopped.value.ename == "AwaitingApproval"
    papermill.execute_notebook(
        str(path), str(tmp_path / "second.ipynb"), parameters={"approve": "all"}, progress_bar=False
    )
    summary = (path.parent / "summary.md").read_text()
    assert summary.startswith("# Release Migration Summary: COMPLETED"), summary[:300]
    assert "2/2 migrations applied" in summary
    assert re.search(r"\| 5 \| batch.toml's pause_before marks statement 4 \| \S+ \| approve = \"all\" \|", summary)
    assert "2 migrations checked each before its own first step, in a runbook notebook" in summary
    with psycopg.connect(crm_url) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM runbook.phase_run WHERE phase = 'approval' AND status = 'approved'"
                " AND run_id = %s",
                (f"{path.parent.name}/0007",),
            ).fetchone()[0]
            == 1
        )
