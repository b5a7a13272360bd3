"""The shared kernel's process (runbook_lib.notebook.kernel): ipykernel as a notebook sees it, minus the debugger and
the history file, with pandas and the session module loaded before the first cell."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill
from nbformat.v4 import new_code_cell, new_notebook

from runbook_lib.notebook import engine
from runbook_lib.notebook.runner import KERNEL_MODULE, SharedKernel

PROBE = """\
import json, os, sys
loaded = {m: m in sys.modules for m in ("pandas", "runbook_lib.execution.session")}
import pandas, ipykernel.debugger
print(json.dumps({
    "argv0": sys.argv[0],
    "loaded": loaded,
    "max_columns": pandas.get_option("display.max_columns"),
    "hist_file": str(get_ipython().history_manager.hist_file),
    "debugger": ipykernel.debugger._is_debugpy_available,
    "cwd": os.getcwd(),
    "url": os.environ.get("DATABASE_URL"),
}))"""


def test_the_shared_kernel_is_runbooks_kernel_and_a_cell_sees_what_it_would_in_ipykernel(tmp_path: Path) -> None:
    source = tmp_path / "in.ipynb"
    nbformat.write(
        new_notebook(
            cells=[new_code_cell(PROBE)],
            metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}},
        ),
        str(source),
    )
    with SharedKernel("postgresql://unused", tmp_path) as kernel:
        papermill.execute_notebook(
            str(source),
            str(tmp_path / "out.ipynb"),
            kernel_name="python3",
            engine_name=engine.NAME,
            progress_bar=False,
            **kernel.ready(),
        )
    seen = json.loads(nbformat.read(str(tmp_path / "out.ipynb"), as_version=4).cells[0].outputs[0]["text"])

    assert Path(seen["argv0"]).with_suffix("").parts[-3:] == tuple(KERNEL_MODULE.split("."))
    assert seen["loaded"] == {"pandas": True, "runbook_lib.execution.session": True}  # before the first cell
    assert seen["max_columns"] == 20  # pandas' setting in a Jupyter kernel (0 in a terminal): loaded as in a cell
    assert seen["hist_file"] == ":memory:"  # nothing written to ~/.ipython
    assert seen["debugger"] is False
    assert Path(seen["cwd"]) == tmp_path and seen["url"] == "postgresql://unused"  # as ipykernel_launcher would be
