"""The kernel runbook runs its notebooks in: ipykernel, started as `python -m ipykernel_launcher` starts it, minus
two costs a notebook that papermill executes never needs back, plus the imports every runbook notebook makes.

    python -m runbook_lib.notebook.kernel -f CONNECTION_FILE   (runner's kernel manager launches this)

- No debugger: ipykernel imports debugpy (a third of its start) for JupyterLab's visual debugger, which never
  attaches to a kernel runbook runs; its kernel_info leaves the "debugger" feature out.
- The IPython history in memory: IPython writes every cell to the SQLite file under ~/.ipython from a thread,
  committing once per cell, and each next cell waits for that commit (milliseconds, on every cell of every
  notebook; more when several kernels share the file). In, Out and _i keep working; a migration's cells no
  longer land in the user's IPython history.
- pandas and the session module (what each phase notebook's first cells import) load before the kernel answers,
  while the runbook process is still importing papermill; a failed import here is left for that cell to report.
  The garbage collector stays off while the kernel loads, and what is loaded by then is frozen: the full
  collections during the notebooks no longer walk pandas and the rest each time.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import sys
from pathlib import Path

PRELOAD = ("pandas", "runbook_lib.execution.session")
SETTINGS = ("--HistoryManager.hist_file=:memory:",)


def main(argv: list[str]) -> None:
    # As ipykernel_launcher: the working directory (the run folder) is no place to import from while the kernel
    # loads; IPython puts it back in sys.path for the notebook's cells.
    if sys.path[0] == "" or Path(sys.path[0]) == Path.cwd():
        del sys.path[0]
    gc.disable()  # no collections while the modules load (what they allocate stays): enabled again below
    # ipykernel then finds no debugger, as when debugpy is not installed: a None in sys.modules makes its import
    # fail, which typeshed does not model (it types sys.modules as holding modules only)
    sys.modules.setdefault("debugpy", None)  # type: ignore[arg-type]
    from ipykernel.kernelapp import IPKernelApp  # the kernel itself: only in the kernel's process

    app = IPKernelApp.instance()
    app.initialize([*argv, *SETTINGS])
    # Imported as a cell imports them, with get_ipython() among the builtins: pandas looks for it to tell a kernel
    # from a terminal, and shapes its text tables by that.
    with app.shell.builtin_trap if app.shell is not None else contextlib.nullcontext():
        for name in PRELOAD:
            # a failed import is not this process's to report: the notebook's own fails the same way, in a cell
            with contextlib.suppress(Exception):
                importlib.import_module(name)
    gc.freeze()  # what loaded so far lives as long as the kernel: later collections need not walk it again
    gc.enable()
    app.start()


if __name__ == "__main__":
    main(sys.argv[1:])
