"""The notebooks have one source, scripts/build_notebooks.py: notebooks/*.ipynb must be exactly what it writes.

A notebook edited in Jupyter and committed as it is would drift from the script, and the next rebuild
would silently throw the edit away; this test makes the drift fail instead, naming the notebook.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from runbook_lib import config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build_notebooks.py"
NOTEBOOKS = ROOT / "notebooks"
FIX = (
    "edit scripts/build_notebooks.py and run `python scripts/build_notebooks.py` (a notebook edited in "
    "Jupyter must be carried back into the script: the script is the notebooks' only source)"
)


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("built-notebooks")
    written = _builder().build(out)
    return {path.name: path for path in written}


def _first_difference(committed: dict, expected: dict) -> str:
    """Where two notebooks differ, in words: the first cell (by id) or the notebook metadata."""
    got, want = committed.get("cells", []), expected.get("cells", [])
    for index, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            return f"cell {index} (id {b.get('id') or a.get('id')!r}) differs in {', '.join(keys)}"
    if len(got) != len(want):
        return f"it has {len(got)} cells, the script writes {len(want)}"
    if committed.get("metadata") != expected.get("metadata"):
        return "the notebook metadata differs"
    return "the JSON formatting differs (not written by nbformat as the script writes it)"


def test_the_notebook_paths_are_the_checkouts() -> None:
    assert config.notebooks_dir() == NOTEBOOKS


def test_the_script_writes_exactly_the_committed_notebooks(built: dict[str, Path]) -> None:
    committed = {path.name for path in NOTEBOOKS.glob("*.ipynb")}
    assert committed == set(built), (
        f"notebooks/ holds {sorted(committed - set(built))} that scripts/build_notebooks.py does not write, "
        f"and lacks {sorted(set(built) - committed)}: {FIX}"
    )
    differing = []
    for name, path in sorted(built.items()):
        have = (NOTEBOOKS / name).read_text(encoding="utf-8")
        want = path.read_text(encoding="utf-8")
        if have != want:
            differing.append(f"notebooks/{name}: {_first_difference(json.loads(have), json.loads(want))}")
    assert not differing, (
        "not what scripts/build_notebooks.py writes:\n  " + "\n  ".join(differing) + f"\nTo fix: {FIX}."
    )


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_committed_notebooks_have_no_outputs_or_execution_counts(name: str) -> None:
    nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    dirty = [
        f"cell {i} (id {c.get('id')!r})"
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"notebooks/{name} was committed executed ({', '.join(dirty)} have outputs or execution counts); {FIX}."
    )


def test_the_script_still_runs_from_the_command_line(tmp_path: Path) -> None:
    """`python scripts/build_notebooks.py OUT_DIR` (without OUT_DIR it rewrites notebooks/)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
