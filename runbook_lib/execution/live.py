"""Live progress from inside a phase: the statement that runs long, the session apply waits for, a backfill's rows.

The records say what happened once a phase is over; a VALIDATE on a large table, a wait for a blocker or a
backfill takes minutes before that. Events go to two places: the notebook's output (one line updated in place,
for an engineer stepping through in Jupyter) and, when the runner asks for it (RUNBOOK_LIVE names a file in the
run folder), a JSON-lines file the terminal tails (`notebook.progress`). Nothing here is a record: the file is
removed when the chain ends.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runbook_lib.config import environment_variable

FILE_VARIABLE = "RUNBOOK_LIVE"  # set by the runner in the kernel's environment; absent in Jupyter
FILE_NAME = "live.jsonl"

STATEMENT, WAITING, BACKFILL = "statement", "waiting", "backfill"
MIN_INTERVAL_S = 0.25  # one event per kind per quarter second at most: a tail, not a log


@dataclass
class Event:
    """One line a person reads, with the figures behind it when there are any."""

    kind: str
    text: str
    done: float | None = None
    total: float | None = None
    unit: str = ""
    final: bool = False  # the thing it describes is over: the terminal clears its line
    at: float = field(default_factory=time.time)

    @classmethod
    def from_json(cls, line: str) -> Event | None:
        try:
            data = json.loads(line)
            return cls(**{k: data[k] for k in data if k in cls.__dataclass_fields__})
        except (ValueError, TypeError):
            return None  # a line being written as we read it


class _Feed:
    """Where events go in this process: the run folder's file (when named) and the notebook's display."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._handle = None

    def emit(self, event: Event) -> None:
        with self._lock:
            previous = self._last.get(event.kind)
            if not event.final and previous is not None and event.at - previous < MIN_INTERVAL_S:
                return
            self._last[event.kind] = event.at
            if event.final:
                self._last.pop(event.kind, None)
            path = os.environ.get(FILE_VARIABLE)
            if path:
                try:
                    with open(path, "a", encoding="utf-8") as out:
                        out.write(json.dumps(asdict(event)) + "\n")
                except OSError:
                    pass  # progress is a courtesy: a full disk must not fail the migration
            self._display(event)

    def _display(self, event: Event) -> None:
        """The notebook's view: one output line, updated in place (outside a kernel, nothing)."""
        try:
            # only inside a kernel, where IPython is loaded already; the CLI never pays for it
            from IPython import get_ipython
            from IPython.display import display  # same reason
        except ImportError:
            return
        shell = get_ipython()
        if shell is None or not hasattr(shell, "kernel"):
            return
        text = f"{'done' if event.final else '…'} {event.text}"
        if self._handle is None:
            self._handle = display({"text/plain": text}, raw=True, display_id=True)
        else:
            self._handle.update({"text/plain": text}, raw=True)
        if event.final:
            self._handle = None


_FEED = _Feed()


def emit(
    kind: str, text: str, *, done: float | None = None, total: float | None = None, unit: str = "", final: bool = False
) -> None:
    """Tell whoever watches (terminal, notebook) what is happening now; cheap when nobody does."""
    _FEED.emit(Event(kind, text, done, total, unit, final))


@contextmanager
def to_file(path: Path) -> Iterator[Path]:
    """Events of this process (and of kernels started meanwhile) go to `path` (tests and the runner)."""
    with environment_variable(FILE_VARIABLE, str(path)):
        yield path


class Tail:
    """The reading end: new events of a live file since the last call (the terminal polls it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""

    def read(self) -> list[Event]:
        try:
            with open(self.path, encoding="utf-8") as src:
                src.seek(self._offset)
                chunk = src.read()
                self._offset = src.tell()
        except OSError:
            return []
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()  # an unfinished last line waits for the next read
        return [e for e in (Event.from_json(line) for line in lines if line.strip()) if e is not None]
