"""runbook's papermill engine: when it writes the output notebook, and where a password parameter goes."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from runbook_lib.notebook import engine


def written(path: Path) -> list[list[dict]]:
    return [c.outputs for c in nbformat.read(str(path), as_version=4).cells]


def test_output_is_written_at_start_on_failure_and_at_the_end_but_not_after_every_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "SAVE_EVERY_S", 3600.0)
    nb = new_notebook(cells=[new_code_cell("a"), new_code_cell("b"), new_code_cell("c")])
    nb.metadata["papermill"] = {}
    out = tmp_path / "out.ipynb"
    manager = engine.ThrottledManager(nb, output_path=str(out), progress_bar=False)

    manager.notebook_start()
    assert out.exists() and written(out) == [[], [], []]  # a run killed from here on leaves the notebook

    manager.cell_start(nb.cells[0], 0)
    nb.cells[0].outputs.append(new_output("stream", name="stdout", text="first\n"))
    manager.cell_complete(nb.cells[0], 0)
    assert written(out) == [[], [], []]  # within SAVE_EVERY_S: not rewritten

    manager.cell_start(nb.cells[1], 1)
    nb.cells[1].outputs.append(new_output("error", ename="ValueError", evalue="boom", traceback=[]))
    manager.cell_exception(nb.cells[1], 1)
    manager.cell_complete(nb.cells[1], 1)
    on_failure = written(out)
    assert on_failure[0][0]["text"] == "first\n" and on_failure[1][0]["ename"] == "ValueError"

    nb.cells[2].outputs.append(new_output("stream", name="stdout", text="last\n"))
    manager.notebook_complete()
    final = nbformat.read(str(out), as_version=4)
    assert final.cells[2].outputs[0]["text"] == "last\n" and final.metadata.papermill["end_time"]


def test_a_notebook_is_rewritten_once_save_every_has_passed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "SAVE_EVERY_S", 0.0)
    nb = new_notebook(cells=[new_code_cell("a")])
    nb.metadata["papermill"] = {}
    out = tmp_path / "out.ipynb"
    manager = engine.ThrottledManager(nb, output_path=str(out), progress_bar=False)
    manager.notebook_start()
    manager.cell_start(nb.cells[0], 0)
    nb.cells[0].outputs.append(new_output("stream", name="stdout", text="seen\n"))
    manager.cell_complete(nb.cells[0], 0)
    assert written(out)[0][0]["text"] == "seen\n"


def test_runbook_engine_is_registered_with_papermill_by_its_entry_point() -> None:
    from papermill.engines import papermill_engines

    assert papermill_engines.get_engine("runbook") is engine.RunbookEngine


def test_a_skipped_write_is_made_up_so_a_long_cell_shows_as_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from jupyter_core.utils import ensure_event_loop

    monkeypatch.setattr(engine, "SAVE_EVERY_S", 0.2)
    nb = new_notebook(cells=[new_code_cell("quick"), new_code_cell("long")])
    nb.metadata["papermill"] = {}
    out = tmp_path / "out.ipynb"
    manager = engine.ThrottledManager(nb, output_path=str(out), progress_bar=False)
    manager.notebook_start()
    manager.cell_start(nb.cells[0], 0)
    manager.cell_complete(nb.cells[0], 0)
    manager.cell_start(nb.cells[1], 1)  # within SAVE_EVERY_S of the start: not written now
    assert nbformat.read(str(out), as_version=4).cells[1].metadata.papermill.get("status") != "running"

    ensure_event_loop().run_until_complete(asyncio.sleep(0.5))  # the long cell runs on the event loop

    assert nbformat.read(str(out), as_version=4).cells[1].metadata.papermill["status"] == "running"
    manager.cell_complete(nb.cells[1], 1)
    manager.notebook_complete()
    assert manager._pending is None  # nothing left to fire after the notebook is done


def test_what_the_engine_relies_on_in_papermill_and_nbclient_is_still_there() -> None:
    """papermill and nbclient as engine.py's docstring describes them; a release changing them fails here."""
    import inspect

    from nbclient import NotebookClient
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import (
        Engine,
        NBClientEngine,
        NotebookExecutionManager,
        papermill_engines,
    )
    from papermill.translators import translate_parameters

    def parameters(function) -> list[str]:
        return list(inspect.signature(function).parameters)

    def passes_keywords_on(function) -> bool:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(function).parameters.values())

    assert issubclass(NBClientEngine, Engine) and issubclass(engine.RunbookEngine, NBClientEngine)
    assert parameters(Engine.execute_notebook)[:2] == ["nb", "kernel_name"]
    assert passes_keywords_on(Engine.execute_notebook)
    assert parameters(NBClientEngine.execute_managed_notebook)[:2] == ["nb_man", "kernel_name"]
    assert passes_keywords_on(NBClientEngine.execute_managed_notebook)  # km reaches the notebook client
    assert "km" in parameters(PapermillNotebookClient.__init__)
    assert parameters(NotebookExecutionManager.notebook_start)[:1] == ["self"]
    assert parameters(NotebookExecutionManager.cell_exception)[:3] == ["self", "cell", "cell_index"]
    assert passes_keywords_on(NotebookExecutionManager.notebook_complete)
    assert passes_keywords_on(NotebookExecutionManager.save)
    assert parameters(papermill_engines.register) == ["name", "engine"]
    assert parameters(translate_parameters) == ["kernel_name", "language", "parameters", "comment"]
    # a client given a running kernel's manager asks it for a kernel client, then readies that one
    source = inspect.getsource(NotebookClient.async_start_new_kernel_client)
    assert "self.km.client()" in source and ".start_channels()" in source and ".wait_for_ready(" in source
    assert "if self.kc is None" in inspect.getsource(NotebookClient.setup_kernel)


def test_the_engine_runs_in_the_connected_client_and_writes_fewer_times_than_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import papermill
    from papermill.engines import NotebookExecutionManager

    from runbook_lib.notebook.runner import SharedKernel

    monkeypatch.setattr(engine, "SAVE_EVERY_S", 3600.0)
    writes = []
    save = NotebookExecutionManager.save
    monkeypatch.setattr(NotebookExecutionManager, "save", lambda self, **kw: (writes.append(1), save(self, **kw)))
    cells = [new_code_cell(f"print({i})") for i in range(6)]
    source = tmp_path / "in.ipynb"
    nbformat.write(
        new_notebook(
            cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
        ),
        str(source),
    )

    with SharedKernel("postgresql://unused", tmp_path) as kernel:
        connected = kernel.ready()
        monkeypatch.setattr(connected["km"], "client", lambda **kw: pytest.fail("a new kernel client was made"))
        papermill.execute_notebook(
            str(source),
            str(tmp_path / "out.ipynb"),
            kernel_name="python3",
            engine_name=engine.NAME,
            progress_bar=False,
            **connected,
        )
        assert connected["kc"].allow_stdin is False  # nbclient's setting reached the client it used

    assert [c.outputs[0]["text"] for c in nbformat.read(str(tmp_path / "out.ipynb"), as_version=4).cells] == [
        f"{i}\n" for i in range(6)
    ]
    assert len(writes) == 2  # at the start and at the end, not twice per cell


def test_a_connected_client_without_its_kernel_manager_is_refused(tmp_path: Path) -> None:
    nb = new_notebook(cells=[new_code_cell("a")])
    nb.metadata["papermill"] = {}
    manager = engine.ThrottledManager(nb, progress_bar=False)
    with pytest.raises(ValueError, match="kernel manager"):
        engine.RunbookEngine.execute_managed_notebook(manager, "python3", kc=object())


def test_the_engine_module_imports_before_papermill_and_still_registers() -> None:
    """papermill loads this module's entry point while it is itself imported (an import cycle)."""
    import subprocess
    import sys

    code = (
        "import runbook_lib.notebook.engine as e; from papermill.engines import papermill_engines as p; "
        "assert p.get_engine('runbook') is e.RunbookEngine"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
