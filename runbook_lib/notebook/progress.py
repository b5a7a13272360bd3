"""Progress of a chain of phases on stderr: a bar on a terminal, plain lines anywhere else.

A release runs for minutes; on a terminal tqdm's bar shows which phase is running and how far the chain is,
while a log (CI, a pipe, --format json's consumer) gets one plain line per phase, as it always did.
Progress never goes to stdout: stdout carries the headline, or the one JSON document.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


class PhaseProgress:
    """One step per phase; `bar=None` picks a bar when the stream is a terminal and there is more than one phase."""

    def __init__(self, phases: tuple[str, ...], *, quiet: bool = False, stream: TextIO | None = None,
                 bar: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        use_bar = bar if bar is not None else (len(phases) > 1 and self.stream.isatty())
        self._bar = tqdm(total=len(phases), unit="phase", file=self.stream, leave=False,
                         bar_format="{desc} {bar} {n_fmt}/{total_fmt} phases [{elapsed}]") \
            if use_bar and not quiet else None

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
        if self._bar is not None:
            self._bar.close()
            self._bar = None
