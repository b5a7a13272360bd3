"""Progress of a chain of phases on stderr: a bar on a terminal, plain lines anywhere else.

A release runs for minutes; on a terminal tqdm's bar shows which phase is running and how far the chain is,
while a log (CI, a pipe, --format json's consumer) gets one plain line per phase, as it always did.
Progress never goes to stdout: stdout carries the headline, or the one JSON document.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from runbook_lib.execution import live

PLAIN_EVERY_S = 10.0  # a log gets a live event's line when it is new, then at most this often


class PhaseProgress:
    """One step per phase; `bar=None` picks a bar when the stream is a terminal and there is more than one phase."""

    def __init__(
        self, phases: tuple[str, ...], *, quiet: bool = False, stream: TextIO | None = None, bar: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        use_bar = bar if bar is not None else self.stream.isatty()
        self._bar = (
            tqdm(
                total=len(phases),
                unit="phase",
                file=self.stream,
                leave=False,
                bar_format="{desc} {bar} {n_fmt}/{total_fmt} phases [{elapsed}]{postfix}",
            )
            if use_bar and not quiet
            else None
        )
        self._follow: threading.Thread | None = None
        self._stop = threading.Event()
        self._printed: dict[str, float] = {}

    def follow(self, path: Path) -> None:
        """Show the live events a phase writes to `path` (a long statement, a wait, a backfill) as they come."""
        if self.quiet or self._follow is not None:
            return
        tail = live.Tail(path)

        def loop() -> None:
            while not self._stop.wait(0.2):
                for event in tail.read():
                    self.show(event)
            for event in tail.read():
                self.show(event)

        self._follow = threading.Thread(target=loop, name="runbook-live", daemon=True)
        self._follow.start()

    def show(self, event: live.Event) -> None:
        """A bar's postfix on a terminal; elsewhere a line when the event is new, final, or PLAIN_EVERY_S old."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.set_postfix_str("" if event.final else event.text[:100])
            if event.final:
                self._bar.write(f"    {event.text}", file=self.stream)
            return
        last = self._printed.get(event.kind)
        if event.final or last is None or event.at - last >= PLAIN_EVERY_S:
            print(f"    {event.text}", file=self.stream, flush=True)
            self._printed[event.kind] = event.at
            if event.final:
                self._printed.pop(event.kind, None)

    def say(self, message: str) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def started(self, phase: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(f"runbook: {phase}")

    def done(self, phase: str, ok: bool, seconds: float) -> None:
        self.say(f"  {phase:<9} {'ok    ' if ok else 'FAILED'}  {seconds:6.1f} s")
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        self._stop.set()
        if self._follow is not None:
            self._follow.join(timeout=2)
            self._follow = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None
