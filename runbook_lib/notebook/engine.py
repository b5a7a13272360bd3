"""runbook's papermill engine: papermill's own (nbclient) with the changes a migration run needs.

`papermill --engine runbook notebooks/apply.ipynb out.ipynb -p batch 7` (runbook's own runs use it too):

- A `database_url` parameter with a password moves into the kernel's environment (DATABASE_URL) before
  papermill writes the output notebook; the notebook keeps `database_url = None` and the redacted URL.
  With papermill's default engine no runbook code runs before that first write, so a password given
  with `-p` would land in the file (the notebook then refuses to run).
- A client already connected to a running kernel (`kc=`, runbook's shared kernel) is used as it is:
  nbclient would connect a new one per notebook and wait for a fifth of a second of silence first.
- While cells run, the output notebook is written at most every SAVE_EVERY_S seconds instead of twice
  per cell (each write re-serializes the whole notebook: a quarter of a second over a `runbook run`).
  It is always written when the notebook starts, when it ends and when it fails; a skipped write is
  made up a second later, so a long cell shows as running (and papermill's autosave covers its output).
- Run from papermill's command line, a runbook notebook stopped at a pause that waits for an approval exits with
  code 3 and the pause's sentence (papermill's own exit codes are 0, 1 and 138).

Built on papermill's engine hooks, no copied bodies. What it relies on (tests/notebook/test_engine.py checks it):
papermill.engines.NBClientEngine (execute_notebook builds a NotebookExecutionManager and calls its
notebook_start, then the classmethod execute_managed_notebook, which passes `km` and other keywords on to
nbclient), NotebookExecutionManager.save/cell_exception/notebook_complete, papermill_engines.register and
papermill.translators.translate_parameters; from nbclient, that a client given a kernel manager with a
running kernel gets its kernel client from `km.client()`, then calls start_channels() and wait_for_ready().
"""

from __future__ import annotations


def __getattr__(name: str) -> None:
    """None for RunbookEngine while it is not defined yet; register() at the end puts the real one in.

    papermill loads its entry points (this module's RunbookEngine) while it is itself being imported: if
    this module is imported first, papermill asks for RunbookEngine from the import lines below.
    """
    if name == "RunbookEngine":
        return None
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# below __getattr__ on purpose: papermill may import this module from these lines
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402  (papermill's command line is a click command: how a pause is told from a failure)
from jupyter_core.utils import ensure_event_loop  # noqa: E402
from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines  # noqa: E402
from papermill.translators import translate_parameters  # noqa: E402

from runbook_lib.config import url_in_environment  # noqa: E402
from runbook_lib.errors import AwaitingApproval  # noqa: E402

NAME = "runbook"
SAVE_EVERY_S = 1.0
URL_PARAMETER = "database_url"


class ThrottledManager(NotebookExecutionManager):
    """papermill's execution manager, writing on start, completion and failure, else every SAVE_EVERY_S.

    A write skipped by the throttle is made up SAVE_EVERY_S later on the event loop the cells run in,
    so a long cell (an apply of minutes) shows in the file as running soon after it starts.
    """

    _written_at = float("-inf")
    _force = True  # the next save writes, whenever the last one was
    _pending: Any = None  # the made-up write, scheduled on the event loop

    def save(self, **kwargs: Any) -> None:
        if self._force or time.monotonic() - self._written_at >= SAVE_EVERY_S:
            self._write(**kwargs)
        elif self._pending is None:
            self._pending = ensure_event_loop().call_later(SAVE_EVERY_S, self._write)
        self._force = False

    def _write(self, **kwargs: Any) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        super().save(**kwargs)
        self._written_at = time.monotonic()

    def notebook_complete(self, **kwargs: Any) -> None:
        self._force = True
        super().notebook_complete(**kwargs)

    def cell_exception(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
        self._force = True  # the failing cell's complete() writes it, error and all
        super().cell_exception(cell, cell_index, **kwargs)


def throttled(nb_man: NotebookExecutionManager) -> ThrottledManager:
    """papermill's manager, just written by notebook_start, from now on a ThrottledManager."""
    nb_man.__class__ = ThrottledManager
    assert isinstance(nb_man, ThrottledManager)
    nb_man._written_at = time.monotonic()
    nb_man._force = False
    return nb_man


class RunbookEngine(NBClientEngine):
    """papermill's nbclient engine; the changes above happen in its two hooks, around papermill's own."""

    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str, **kwargs: Any) -> Any:
        with _url_in_environment(nb, kernel_name):
            done = super().execute_notebook(nb, kernel_name, **kwargs)
        _exit_if_paused(done)
        return done

    @classmethod
    def execute_managed_notebook(
        cls, nb_man: NotebookExecutionManager, kernel_name: str, km: Any = None, kc: Any = None, **kwargs: Any
    ) -> Any:
        if kc is not None:
            if km is None:
                raise ValueError("A connected kernel client (kc) needs its kernel manager (km) too.")
            km = _Connected(km, kc)
        return super().execute_managed_notebook(throttled(nb_man), kernel_name, km=km, **kwargs)


class _Connected:
    """A kernel manager handing nbclient the client runbook connected already, instead of a new one.

    nbclient takes no client (`kc` is no trait; its constructor sets it to None): it asks its `km` for one.
    """

    def __init__(self, km: Any, kc: Any) -> None:
        self._km = km
        self._kc = kc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._km, name)

    def client(self, **kwargs: Any) -> _Ready:
        return _Ready(self._kc)


class _Ready:
    """A connected kernel client whose start_channels() and wait_for_ready() are done already."""

    def __init__(self, kc: Any) -> None:
        object.__setattr__(self, "_kc", kc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kc, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._kc, name, value)  # nbclient's allow_stdin = False: no input() waiting for an answer

    def start_channels(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        pass


def _exit_if_paused(nb: Any) -> None:
    """From papermill's command line, a runbook notebook stopped at a pause ends with AwaitingApproval's exit code
    (3) and its one sentence, not exit 1 and a traceback: a job tells "waiting for an approval" from "failed".

    Only there: a Python caller of papermill.execute_notebook gets papermill's PapermillExecutionError as before.
    The output notebook is written already (the manager's notebook_complete).
    """
    paused = next(
        (
            o
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.get("outputs", [])
            if o.get("output_type") == "error" and o.get("ename") == AwaitingApproval.__name__
        ),
        None,
    )
    if paused is None:
        return
    context = click.get_current_context(silent=True)
    if context is None or context.command.name != "papermill":
        return
    print(f"runbook: paused: {paused.get('evalue', '')}", file=sys.stderr)
    raise SystemExit(AwaitingApproval.exit_code)


def register() -> None:
    """Make the engine known to papermill in this process, installed entry point or not."""
    papermill_engines.register(NAME, RunbookEngine)


@contextmanager
def _url_in_environment(nb: Any, kernel_name: str) -> Iterator[None]:
    """While the kernel starts and runs: a password-bearing URL parameter in DATABASE_URL, not in `nb`."""
    parameters = dict(nb.metadata.get("papermill", {}).get("parameters") or {})
    url = parameters.get(URL_PARAMETER)
    if not isinstance(url, str) or not url:
        yield
        return
    # imported here: psycopg would slow every papermill command, which imports this module at start
    from runbook_lib.db.connection import has_password, redact

    if not has_password(url):
        yield
        return
    shown = redact(url)
    parameters[URL_PARAMETER] = None
    nb.metadata.papermill["parameters"] = {**parameters, URL_PARAMETER: shown}
    for cell in nb.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            language = nb.metadata.get("kernelspec", {}).get("language", "python")
            cell.source = translate_parameters(kernel_name, language, parameters, "Parameters") + (
                f"# {URL_PARAMETER}: {shown} (its password moved to DATABASE_URL by runbook's papermill engine)\n"
            )
    with url_in_environment(url):
        yield


register()  # replaces the None papermill got if it was imported by this module (see __getattr__)
