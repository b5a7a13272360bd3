"""What `runbook run 7` costs on top of its SQL, where the time goes, and the floor it is compared with.

On a fresh copy of the demo database (the example at its default size, batch 6 applied through the
library) each run measures:
  - `runbook run 7` end to end (the installed CLI, a process of its own), and the same through
    benchmarks/_instrumented_run.py, which wraps the CLI's notebook runs and renders with clocks and
    splits the wall time into: process start and imports, kernel start (per notebook), in-kernel
    imports and connection, SQL (from the records: preflight gates, apply statements, the validation
    phase), the rest of runbook's work in the phase cells, displays, the summary notebook, writing
    records (re-measured from the records themselves), rendering (nbconvert) the run waited for (the
    audit copies render on a background thread while the next notebook runs), other;
  - psql running the same SQL: `psql -X -q -v ON_ERROR_STOP=1 -1 -f migration.sql`, then rollback.sql;
and once, the floor: papermill executing an empty notebook (runbook's IPC kernel manager) and nbconvert
(runbook's template) of an empty notebook, each in a fresh process and warm in one process, and the
import costs of the pieces.

    python benchmarks/overhead.py            # 5 runs
    python benchmarks/overhead.py --runs 1   # a quick look

Writes benchmarks/results/overhead.json; benchmarks/report.py turns it into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the project on sys.path)
from common import DEFAULT_STATE, RESULTS_DIR, header, psql_binary, server_url, spread
from psycopg import sql

from runbook_lib import config
from runbook_lib.db import connection as database
from runbook_lib.db import example
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply
from runbook_lib.report import records
from runbook_lib.report.records import (
    ExecutionResult,
    PreflightResult,
    ValidationResult,
)

PY = sys.executable
BENCH = Path(__file__).resolve().parent
RUNBOOK = str(Path(PY).parent / "runbook")
TEMPLATE_DB = "bench_overhead_template"
RUN_DB = "bench_overhead_run"
BATCH7 = config.example_migrations_dir() / "007_tighten_constraints"
PHASES = ("preflight", "apply", "validate", "summary")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fresh_database(server: str, name: str, template: str | None = None) -> str:
    with database.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(stmt)
    return database.with_database(server, name)


def prepare_template(server: str, reports: Path, leads: int) -> dict:
    url = fresh_database(server, TEMPLATE_DB)
    with database.connect(url) as conn:
        loaded = example.load(conn, leads=leads)
        conn.commit()
    apply.run(open_session(6, database_url=url, reports_dir=reports))
    with database.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    return {"leads": loaded.leads, "jobs": loaded.jobs, "customers": loaded.customers}


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return time.monotonic() - started, done


def check(done: subprocess.CompletedProcess, what: str) -> None:
    if done.returncode:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


# -- one instrumented run, split ----------------------------------------------------------------------


def _cells(notebook: Path) -> list[dict]:
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("papermill", {})
        tags = cell.metadata.get("tags", [])
        cells.append(
            {
                "id": cell.get("id", ""),
                "source": cell.source,
                "duration": meta.get("duration") or 0.0,
                # the parameters cells, and the shared kernel's reset cell (notebook.runner.RESET_TAG) before them:
                # papermill's and runbook's bookkeeping, not the notebook's own cells
                "parameters": "parameters" in tags or "injected-parameters" in tags or "runbook-reset" in tags,
            }
        )
    return cells


def records_write_seconds(run_dir: Path, reps: int = 30) -> float:
    """How long writing this run's records takes: each <phase>.json serialized and written as the phases do."""
    folder = records.RunFolder(run_dir)
    loaded = [
        (p, folder.read(p, cls))
        for p, cls in (
            ("preflight", PreflightResult),
            ("apply", ExecutionResult),
            ("validate", ValidationResult),
            ("run", records.RunRecord),
        )
    ]
    scratch = records.RunFolder(Path(tempfile.mkdtemp(prefix="bench-records-")))
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        for phase, record in loaded:
            if record is not None:
                scratch.write(phase, record)
        times.append(time.perf_counter() - started)
    shutil.rmtree(scratch.path, ignore_errors=True)
    return statistics.median(times)


def split(timings: dict, run_dir: Path, wall: float) -> dict:
    spans = timings["spans"]
    notebooks = [s for s in spans if s["what"] == "notebook"]
    renders = [s for s in spans if s["what"].startswith("render")]
    first_nb = min(s["start"] for s in notebooks)
    parts: dict[str, float] = {}
    parts["process start and CLI imports"] = timings["imported"] - timings["spawned"]
    parts["CLI setup (target, run folder, kernel launch)"] = first_nb - timings["imported"]

    kernel = imports = phase_cells = displays = summary_cells = 0.0
    per_notebook = {}
    for span in notebooks:
        phase = span["detail"]
        cells = _cells(run_dir / f"{phase}.ipynb")
        code = [c for c in cells if not c["parameters"]]
        cell_total = sum(c["duration"] for c in cells)
        execute = span["end"] - span["start"]
        kernel += execute - cell_total
        params = sum(c["duration"] for c in cells if c["parameters"])
        per_notebook[phase] = {
            "execute_s": execute,
            "cells_s": cell_total,
            "kernel_and_papermill_s": execute - cell_total,
            "cells": [{"id": c["id"], "s": c["duration"]} for c in cells],
        }
        per_notebook[phase]["import_cell_s"] = code[0]["duration"]
        if phase == "summary":
            # summary-02 imports the summary module and loads the records; the rest build sections.
            imports += code[0]["duration"] + params
            summary_cells += sum(c["duration"] for c in code[1:])
            continue
        imports += code[0]["duration"] + params  # `from runbook_lib.execution.session import ...; open_session(...)`
        phase_cells += code[1]["duration"]  # the phase call: preflight.run / apply.run / validate.run
        displays += sum(c["duration"] for c in code[2:])

    folder = records.RunFolder(run_dir)
    pre = folder.read("preflight", PreflightResult)
    app = folder.read("apply", ExecutionResult)
    val = folder.read("validate", ValidationResult)
    gates = sum(g.duration_ms for g in pre.gates) / 1000 if pre else 0.0
    statements = sum(s.duration_s for s in app.statements) if app else 0.0
    validation = val.duration_s if val else 0.0
    writing = records_write_seconds(run_dir)
    sql_total = gates + statements + validation
    parts["kernel start and papermill (4 notebooks)"] = kernel
    parts["in-kernel imports and connection (4 notebooks)"] = imports
    parts["SQL: preflight gates + apply statements + validation"] = sql_total
    parts["runbook work in the phase cells (checks, lint, snapshots, ledger)"] = phase_cells - sql_total - writing
    parts["writing records (re-measured)"] = writing
    parts["displays (tables in the notebooks)"] = displays
    parts["summary notebook (building the report)"] = summary_cells
    rendering = sum(s["end"] - s["start"] for s in renders)
    background = sum(_overlap(r, notebooks) for r in renders)
    parts["rendering, waited for (nbconvert after the last notebook: summary HTML + Markdown, index)"] = (
        rendering - background
    )
    parts["other (kernel shutdown, process exit, run.json, papermill bookkeeping)"] = wall - sum(parts.values())
    return {
        "wall_s": wall,
        "parts": parts,
        "sql": {
            "preflight_gates_s": gates,
            "apply_statements_s": statements,
            "validation_phase_s": validation,
            "total_s": sql_total,
        },
        "phase_records": {
            "preflight_s": pre.duration_s if pre else None,
            "apply_s": app.duration_s if app else None,
            "validate_s": validation,
        },
        "notebooks": per_notebook,
        "renders": [{"what": s["what"], "detail": s["detail"], "s": s["end"] - s["start"]} for s in renders],
        "rendering_s": rendering,
        "rendering_in_background_s": background,
    }


def _overlap(span: dict, others: list[dict]) -> float:
    """How much of `span` ran while one of `others` did (the render thread works during the next notebook)."""
    return sum(max(0.0, min(span["end"], o["end"]) - max(span["start"], o["start"])) for o in others)


def run_instrumented(url: str, reports: Path) -> dict:
    timings_file = reports / "timings.json"
    env = {**os.environ, "BENCH_SPAWNED_AT": repr(time.monotonic())}
    wall, done = timed(
        [
            PY,
            str(BENCH / "_instrumented_run.py"),
            str(timings_file),
            "run",
            "7",
            "--database-url",
            url,
            "--reports-dir",
            str(reports),
        ],
        env=env,
    )
    check(done, "instrumented runbook run 7")
    timings = json.loads(timings_file.read_text())
    run_dir = next((reports / RUN_DB / "7").iterdir())
    return split(timings, run_dir, wall)


def run_plain(url: str, reports: Path) -> float:
    wall, done = timed([RUNBOOK, "run", "7", "--database-url", url, "--reports-dir", str(reports)])
    check(done, "runbook run 7")
    return wall


def run_psql(url: str) -> dict:
    base = [psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-d", url, "-f"]
    apply_s, done = timed([*base, str(BATCH7 / "migration.sql")])
    check(done, "psql -f migration.sql")
    rollback_s, done = timed([*base, str(BATCH7 / "rollback.sql")])
    check(done, "psql -f rollback.sql")
    noop_s, done = timed([psql_binary(), "-X", "-q", "-d", url, "-c", "SELECT 1"])
    check(done, "psql -c 'SELECT 1'")
    return {"migration_s": apply_s, "rollback_s": rollback_s, "connect_select1_s": noop_s}


# -- the floor -------------------------------------------------------------------------------------------

_EMPTY_NB = """
import nbformat, sys
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")])
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbformat.write(nb, sys.argv[1])
"""

_PAPERMILL_ONCE = """
import sys, papermill
from runbook_lib.notebook.runner import _kernel_manager_class
papermill.execute_notebook(sys.argv[1], sys.argv[2], kernel_name="python3", progress_bar=False,
                           kernel_manager_class=_kernel_manager_class())
"""

_PAPERMILL_WARM = """
import json, sys, time, papermill
from runbook_lib.notebook.runner import _kernel_manager_class
times = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    papermill.execute_notebook(sys.argv[1], sys.argv[2], kernel_name="python3", progress_bar=False,
                               kernel_manager_class=_kernel_manager_class())
    times.append(time.perf_counter() - t)
print(json.dumps(times))
"""

_NBCONVERT_ONCE = """
import sys
from pathlib import Path
from runbook_lib.report import render
render.audit_copy(Path(sys.argv[1]))
"""

_NBCONVERT_WARM = """
import json, sys, time
from pathlib import Path
from runbook_lib.report import render
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    render.audit_copy(Path(sys.argv[1]))
    times.append(time.perf_counter() - t)
print(json.dumps(times))
"""

IMPORTS = {
    "python -c pass": "pass",
    "import runbook_lib.cli (the CLI)": "import runbook_lib.cli",
    "import papermill": "import papermill",
    "import nbconvert HTMLExporter": "from nbconvert import HTMLExporter",
    "import ipykernel (the kernel)": "import ipykernel.kernelapp",
    "import what a phase notebook imports": "import runbook_lib.execution.session, runbook_lib.phases.preflight, "
    "runbook_lib.phases.apply, runbook_lib.phases.validate",
    "import what the summary notebook imports": "import runbook_lib.report.summary, runbook_lib.report.chart",
    "import pandas": "import pandas",
}


def floor(runs: int, work: Path) -> dict:
    empty = work / "empty.ipynb"
    executed = work / "empty-out.ipynb"
    subprocess.run([PY, "-c", _EMPTY_NB, str(empty)], check=True)
    fresh_pm, fresh_nbc = [], []
    for _ in range(runs):
        wall, done = timed([PY, "-c", _PAPERMILL_ONCE, str(empty), str(executed)])
        check(done, "papermill of an empty notebook")
        fresh_pm.append(wall)
        wall, done = timed([PY, "-c", _NBCONVERT_ONCE, str(executed)])
        check(done, "nbconvert of an empty notebook")
        fresh_nbc.append(wall)
    _, done = timed([PY, "-c", _PAPERMILL_WARM, str(empty), str(executed), str(runs + 1)])
    check(done, "papermill warm")
    warm_pm = json.loads(done.stdout)[1:]  # the first call pays the imports
    _, done = timed([PY, "-c", _NBCONVERT_WARM, str(executed), str(runs + 1)])
    check(done, "nbconvert warm")
    warm_nbc = json.loads(done.stdout)[1:]
    imports = {}
    for label, code in IMPORTS.items():
        times = []
        for _ in range(runs):
            wall, done = timed([PY, "-c", code])
            check(done, label)
            times.append(wall)
        imports[label] = spread(times)
    return {
        "papermill_empty_fresh_process_s": spread(fresh_pm),
        "papermill_empty_warm_call_s": spread(warm_pm),
        "nbconvert_empty_fresh_process_s": spread(fresh_nbc),
        "nbconvert_empty_warm_call_s": spread(warm_nbc),
        "imports_fresh_process_s": imports,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--leads", type=int, default=1000, help="the example's size (default: the CLI's default)")
    parser.add_argument("--server-url")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "overhead.json")
    args = parser.parse_args(argv)
    if not Path(RUNBOOK).exists():
        raise SystemExit(f"{RUNBOOK} is missing: install the project (make install) and run this with its Python.")

    server = server_url(args.server_url, args.state_dir)
    work = args.state_dir / "overhead"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.time()
    out = header("overhead", argv, server)
    log("preparing the demo database (example + batch 6)")
    out["database"] = prepare_template(server, work / "reports-template", args.leads)
    runs = []
    for i in range(args.runs):
        reports = work / f"run-{i + 1}"
        # The plain and the instrumented run alternate which goes first (caches, the machine's noise).
        for which in ("plain", "instrumented") if i % 2 == 0 else ("instrumented", "plain"):
            url = fresh_database(server, RUN_DB, TEMPLATE_DB)
            if which == "plain":
                plain = run_plain(url, reports / "plain")
            else:
                measured = run_instrumented(url, reports / "instrumented")
        url = fresh_database(server, RUN_DB, TEMPLATE_DB)
        psql = run_psql(url)
        runs.append({"plain_wall_s": plain, "instrumented": measured, "psql": psql})
        log(
            f"run {i + 1}: runbook run 7 {plain:.2f} s (instrumented {measured['wall_s']:.2f} s, "
            f"SQL {measured['sql']['total_s'] * 1000:.0f} ms); psql migration {psql['migration_s'] * 1000:.0f} ms, "
            f"rollback {psql['rollback_s'] * 1000:.0f} ms"
        )
    log("measuring the floor")
    out["floor"] = floor(args.runs, work)
    out["runs"] = runs
    parts = list(runs[0]["instrumented"]["parts"])
    out["summary"] = {
        "runbook_run_wall_s": spread([r["plain_wall_s"] for r in runs]),
        "instrumented_wall_s": spread([r["instrumented"]["wall_s"] for r in runs]),
        "parts_s": {p: spread([r["instrumented"]["parts"][p] for r in runs]) for p in parts},
        "sql_s": {k: spread([r["instrumented"]["sql"][k] for r in runs]) for k in runs[0]["instrumented"]["sql"]},
        "psql_s": {k: spread([r["psql"][k] for r in runs]) for k in runs[0]["psql"]},
        "rendering_s": spread([r["instrumented"]["rendering_s"] for r in runs]),
        "rendering_in_background_s": spread([r["instrumented"]["rendering_in_background_s"] for r in runs]),
        "per_notebook_s": {
            phase: {
                k: spread([r["instrumented"]["notebooks"][phase][k] for r in runs])
                for k in ("execute_s", "cells_s", "kernel_and_papermill_s")
            }
            for phase in PHASES
        },
    }
    floor_s = out["floor"]["papermill_empty_fresh_process_s"]["median"]
    sql_s = out["summary"]["sql_s"]["total_s"]["median"]
    whole = out["summary"]["runbook_run_wall_s"]["median"]
    out["target"] = {
        "rule": "whole run <= 2 x (floor of a single notebook execution + its SQL time)",
        "floor_single_notebook_s": floor_s,
        "sql_s": sql_s,
        "limit_s": 2 * (floor_s + sql_s),
        "whole_run_s": whole,
        "ratio": whole / (floor_s + sql_s),
        "met": whole <= 2 * (floor_s + sql_s),
    }
    out["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out["elapsed_s"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    t = out["target"]
    log(
        f"runbook run 7: {whole:.2f} s median; floor {floor_s:.2f} s + SQL {sql_s:.3f} s -> limit {t['limit_s']:.2f} "
        f"s: {'met' if t['met'] else 'NOT met'} ({t['ratio']:.1f}x); wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
