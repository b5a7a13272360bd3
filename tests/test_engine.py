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
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "SAVE_EVERY_S", 3600.0)
    nb = new_notebook(cells=[new_code_cell("a"), new_code_cell("b"), new_code_cell("c")])
    nb.metadata["papermill"] = {}
    out = tmp_path / "out.ipynb"
    manager = engine.manager_class()(nb, output_path=str(out), progress_bar=False)

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
    manager = engine.manager_class()(nb, output_path=str(out), progress_bar=False)
    manager.notebook_start()
    manager.cell_start(nb.cells[0], 0)
    nb.cells[0].outputs.append(new_output("stream", name="stdout", text="seen\n"))
    manager.cell_complete(nb.cells[0], 0)
    assert written(out)[0][0]["text"] == "seen\n"


def test_runbook_engine_is_registered_with_papermill_by_its_entry_point() -> None:
    from papermill.engines import papermill_engines

    assert papermill_engines.get_engine("runbook") is engine.RunbookEngine


def test_a_skipped_write_is_made_up_so_a_long_cell_shows_as_running(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from jupyter_core.utils import ensure_event_loop

    monkeypatch.setattr(engine, "SAVE_EVERY_S", 0.2)
    nb = new_notebook(cells=[new_code_cell("quick"), new_code_cell("long")])
    nb.metadata["papermill"] = {}
    out = tmp_path / "out.ipynb"
    manager = engine.manager_class()(nb, output_path=str(out), progress_bar=False)
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
