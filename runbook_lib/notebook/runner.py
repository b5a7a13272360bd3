"""Executing the phase notebooks with papermill's Python API into the run folder.

The database URL reaches the kernel through the environment (DATABASE_URL), never as a parameter,
so it is never written into the executed notebook.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook_lib import config
from runbook_lib.config import url_in_environment
from runbook_lib.errors import PhaseFailed, RunbookError
from runbook_lib.execution import live

if TYPE_CHECKING:  # for the annotations alone (start-up time: jupyter_client and nbformat load when notebooks run)
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.manager import AsyncKernelManager
    from nbformat import NotebookNode

PHASE_NOTEBOOKS = {
    "preflight": "preflight.ipynb",
    "apply": "apply.ipynb",
    "validate": "validate.ipynb",
    "rollback": "rollback.ipynb",
    "summary": "summary.ipynb",
}


@dataclass(frozen=True)
class NotebookRun:
    phase: str
    notebook: Path  # the executed copy in the run folder
    seconds: float


KERNEL_MODULE = "runbook_lib.notebook.kernel"  # what a shared kernel runs instead of ipykernel_launcher


@functools.cache
def _kernel_manager_class(runbook_kernel: bool = False) -> type[AsyncKernelManager]:
    """Kernels talk over IPC sockets (files only this user can reach), not unencrypted loopback TCP.

    The sockets go in a private temporary directory, not the working directory: the kernel and this
    process may have different ones, and a run folder is no place for them. With `runbook_kernel`, this
    environment's python3 kernel starts as KERNEL_MODULE (runbook_lib.notebook.kernel says what it changes).
    """
    # start-up time: jupyter_client and traitlets load only for commands that run notebooks
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum, default

    class IpcKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _private_socket_prefix(self) -> str:
            return os.path.join(tempfile.mkdtemp(prefix="runbook-kernel-"), "ipc")

        async def _async_cleanup_resources(self, restart: bool = False) -> None:  # what shutdown_kernel calls
            await super()._async_cleanup_resources(restart=restart)
            if not restart:
                shutil.rmtree(os.path.dirname(self.ip), ignore_errors=True)

    class RunbookKernelManager(IpcKernelManager):
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            cmd = super().format_kernel_cmd(extra_arguments)
            # this Python's own ipykernel (the python3 kernelspec as installed); any other kernelspec is left as it is
            if cmd[:3] == [sys.executable, "-m", "ipykernel_launcher"]:
                cmd[1:3] = ["-m", KERNEL_MODULE]
            return cmd

    return RunbookKernelManager if runbook_kernel else IpcKernelManager


class SharedKernel:
    """One kernel for all the notebooks of a run: started once, its namespace reset between notebooks.

    A kernel start and the imports of runbook_lib, pandas and psycopg cost about a second per notebook;
    `runbook run` executes four. One client stays connected too: a new one waits for a fifth of a second
    of silence on the kernel's output before it is ready. A kernel that died is replaced.
    """

    START_TIMEOUT_S = 60.0

    def __init__(self, database_url: str, cwd: Path, *, live_file: Path | None = None) -> None:
        self.database_url = database_url
        self.cwd = cwd
        self.live_file = live_file
        self.km: AsyncKernelManager | None = None
        self.kc: AsyncKernelClient | None = None

    def _start(self) -> None:
        from jupyter_client.utils import (
            run_sync,  # start-up time: only when a kernel runs
        )

        # the kernel inherits both: the URL (the notebook never sees it) and where its live events go
        with (
            url_in_environment(self.database_url),
            live.to_file(self.live_file) if self.live_file else contextlib.nullcontext(),
        ):
            self.km = _kernel_manager_class(runbook_kernel=True)(kernel_name="python3")
            run_sync(self.km.start_kernel)(cwd=str(self.cwd))

    def ready(self) -> dict[str, Any]:
        """The kernel manager and a connected client for the next notebook (papermill keywords)."""
        from jupyter_client.utils import (
            run_sync,  # start-up time: only when a kernel runs
        )

        if self.km is None or not run_sync(self.km.is_alive)():
            self.close()
            self._start()
        if self.kc is None:
            run_sync(self._connect)()
        return {"km": self.km, "kc": self.kc}

    async def _connect(self) -> None:
        """A client whose two channels both hear the kernel (the kernel is up, and no output will be missed)."""
        km = self.km
        assert km is not None  # ready() started the kernel first
        self.kc = km.client()  # in the event loop: its sockets belong to it
        self.kc.start_channels()
        deadline = time.monotonic() + self.START_TIMEOUT_S
        while not await self._answered(self.kc.kernel_info()):
            if not await km.is_alive():
                raise RuntimeError("The kernel died while starting; run again (a kernel start failure is rare).")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"The kernel did not start within {self.START_TIMEOUT_S:.0f} s; the machine may be overloaded."
                )

    async def _answered(self, msg_id: str) -> bool:
        """The request's reply on the shell channel, then the kernel going idle after it on IOPub.

        IOPub is a subscription that connects late: output published before it did is lost, and
        nbclient would wait for it (jupyter_client checks the same, then waits for 0.2 s of quiet).
        """
        kc = self.kc
        assert kc is not None  # asked by _connect, which connected it
        try:
            while (await kc.get_shell_msg(timeout=1.0))["parent_header"].get("msg_id") != msg_id:
                pass
            while True:
                msg = await kc.get_iopub_msg(timeout=0.5)
                if (
                    msg["parent_header"].get("msg_id") == msg_id
                    and msg["msg_type"] == "status"
                    and msg["content"].get("execution_state") == "idle"
                ):
                    return True
        except queue.Empty:
            return False

    def close(self) -> None:
        from jupyter_client.utils import (
            run_sync,  # start-up time: only when a kernel runs
        )

        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        if self.km is not None:
            with contextlib.suppress(Exception):  # already gone
                run_sync(self.km.shutdown_kernel)(now=True)
            self.km = None

    def __enter__(self) -> SharedKernel:
        self._start()  # launched now, it boots while this process imports papermill
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


RESET_TAG = "runbook-reset"


def _with_reset_cell(path: Path) -> NotebookNode:
    import nbformat  # start-up time: only when a notebook runs

    nb = nbformat.read(str(path), as_version=4)
    cell = nbformat.v4.new_code_cell(
        "import runbook_lib.notebook.namespace\nrunbook_lib.notebook.namespace.fresh_namespace()"
    )
    cell.metadata["tags"] = [RESET_TAG]
    nb.cells.insert(0, cell)
    nb.metadata.setdefault("papermill", {})["input_path"] = str(path)
    return nb


def notebook_path(phase: str, notebooks_dir: Path | None = None) -> Path:
    path = (notebooks_dir or config.notebooks_dir()) / PHASE_NOTEBOOKS[phase]
    if not path.is_file():
        fix = f"restore it from the repository (git checkout {path.name})" if config.checkout() else "reinstall runbook"
        raise RunbookError(f"The {phase} notebook {path} is missing; {fix}.")
    return path


def execute(
    phase: str,
    output: Path,
    parameters: dict[str, Any],
    *,
    database_url: str,
    cell_timeout_s: int = 3600,
    notebooks_dir: Path | None = None,
    kernel: SharedKernel | None = None,
) -> NotebookRun:
    """Run one phase notebook; any failure (cell error, cell timeout, dead kernel) raises PhaseFailed.

    With `kernel`, the notebook runs in that shared kernel (which holds the database URL already).
    """
    # start-up time: papermill (and the engine, which imports it) load only when a notebook runs
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from runbook_lib.notebook import engine

    engine.register()

    source: Any = notebook_path(phase, notebooks_dir)
    if kernel is not None:
        source = _with_reset_cell(source)
    started = time.perf_counter()
    try:
        with url_in_environment(database_url):
            papermill.execute_notebook(
                source if kernel is not None else str(source),
                str(output),
                parameters=parameters,
                kernel_name="python3",
                engine_name=engine.NAME,
                progress_bar=False,
                cwd=str(output.parent),
                execution_timeout=cell_timeout_s,
                **(kernel.ready() if kernel is not None else {"kernel_manager_class": _kernel_manager_class()}),
            )
    except PapermillExecutionError as exc:
        cell = _failed_cell(output, exc.cell_index)
        raise PhaseFailed(phase, str(output), cell, exc.ename, _clean(exc.evalue), exc.source) from None
    except Exception as exc:  # nbclient's CellTimeoutError, DeadKernelError, kernel start failures
        if kernel is not None:
            kernel.close()  # a timed-out cell still runs in it: the next notebook gets a fresh kernel
        name = type(exc).__name__
        raise PhaseFailed(phase, str(output), None, name, _clean(str(exc))) from None
    return NotebookRun(phase, output, round(time.perf_counter() - started, 3))


def _failed_cell(notebook: Path, fallback: int) -> int:
    """The failed cell's index in the notebook as written: papermill inserts two error-banner cells before it."""
    import nbformat  # start-up time: only when a notebook runs

    try:
        cells = nbformat.read(str(notebook), as_version=4).cells
    except Exception:  # unreadable output: papermill's index is the best we have
        return fallback
    for index, cell in enumerate(cells):
        if (
            any(o.get("output_type") == "error" for o in cell.get("outputs", []))
            or cell.get("metadata", {}).get("papermill", {}).get("exception") is True
        ):
            return index
    return fallback


def _clean(text: str) -> str:
    return " ".join(str(text).split())
