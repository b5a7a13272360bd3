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

papermill loads its entry points while it is itself being imported, so this module imports papermill
only inside functions: `RunbookEngine` is the interface papermill calls (execute_notebook,
nb_kernel_name, nb_language), built on NBClientEngine at first use.
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager

NAME = "runbook"
SAVE_EVERY_S = 1.0
URL_PARAMETER = "database_url"


class RunbookEngine:
    """What papermill calls on an engine; the work is done by _engine(), an NBClientEngine."""

    @classmethod
    def execute_notebook(cls, nb, kernel_name, **kwargs):
        with _url_in_environment(nb, kernel_name):
            return _engine().execute_notebook(nb, kernel_name, **kwargs)

    @classmethod
    def nb_kernel_name(cls, nb, name=None):
        return _engine().nb_kernel_name(nb, name)

    @classmethod
    def nb_language(cls, nb, language=None):
        return _engine().nb_language(nb, language)


def register() -> None:
    """Make the engine known to papermill in this process, installed entry point or not."""
    from papermill.engines import papermill_engines

    papermill_engines.register(NAME, RunbookEngine)


@functools.cache
def manager_class():
    """papermill's execution manager, writing on start, completion and failure, else every SAVE_EVERY_S.

    A write skipped by the throttle is made up SAVE_EVERY_S later on the event loop the cells run in,
    so a long cell (an apply of minutes) shows in the file as running soon after it starts.
    """
    from jupyter_core.utils import ensure_event_loop
    from papermill.engines import NotebookExecutionManager

    class ThrottledManager(NotebookExecutionManager):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._written_at = float("-inf")
            self._force = True
            self._pending = None  # the made-up write, scheduled on the event loop

        def save(self, **kwargs):
            if self._force or time.monotonic() - self._written_at >= SAVE_EVERY_S:
                self._write(**kwargs)
            elif self._pending is None:
                self._pending = ensure_event_loop().call_later(SAVE_EVERY_S, self._write)
            self._force = False

        def _write(self, **kwargs) -> None:
            if self._pending is not None:
                self._pending.cancel()
                self._pending = None
            super().save(**kwargs)
            self._written_at = time.monotonic()

        def notebook_complete(self, **kwargs):
            self._force = True
            return super().notebook_complete(**kwargs)

        def cell_exception(self, cell, cell_index=None, **kwargs):
            self._force = True  # the failing cell's complete() writes it, error and all
            return super().cell_exception(cell, cell_index, **kwargs)

    return ThrottledManager


@functools.cache
def _engine():
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    class Engine(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=True, log_output=False,
                             autosave_cell_every=30, **kwargs):
            # papermill's Engine.execute_notebook, with the throttled manager
            nb_man = manager_class()(nb, output_path=output_path, progress_bar=progress_bar,
                                     log_output=log_output, autosave_cell_every=autosave_cell_every)
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, kc=None, **kwargs):
            # NBClientEngine's own, but for `kc`: the notebook client takes no client in its constructor.
            kwargs = remove_args(["input_path"], **kwargs)
            safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
            final_kwargs = merge_kwargs(
                safe_kwargs, timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                startup_timeout=start_timeout, kernel_name=kernel_name, log=logger,
                log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file,
            )
            client = PapermillNotebookClient(nb_man, **final_kwargs)
            if kc is not None:
                client.kc = kc
            return client.execute()

    return Engine


@contextmanager
def _url_in_environment(nb, kernel_name: str):
    """While the kernel starts and runs: a password-bearing URL parameter in DATABASE_URL, not in `nb`."""
    parameters = dict(nb.metadata.get("papermill", {}).get("parameters") or {})
    url = parameters.get(URL_PARAMETER)
    if not isinstance(url, str) or not url:
        yield
        return
    from runbook_lib.db.connection import has_password, redact
    from runbook_lib.notebook.runner import url_in_environment

    if not has_password(url):
        yield
        return
    from papermill.translators import translate_parameters

    shown = redact(url)
    parameters[URL_PARAMETER] = None
    nb.metadata.papermill["parameters"] = {**parameters, URL_PARAMETER: shown}
    for cell in nb.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            language = nb.metadata.get("kernelspec", {}).get("language", "python")
            cell.source = translate_parameters(kernel_name, language, parameters, "Parameters") + (
                f"# {URL_PARAMETER}: {shown} (its password moved to DATABASE_URL by runbook's papermill engine)\n")
    with url_in_environment(url):
        yield
