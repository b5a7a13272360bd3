"""`runbook` in process: runbook_lib.cli.main, what the console script calls, with its stdout and stderr
captured (usable in module fixtures, where capsys is not)."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from runbook_lib.cli import main


@dataclass(frozen=True)
class Cli:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        """The one JSON document --format json printed."""
        return json.loads(self.out)

    @property
    def summary_md(self) -> Path:
        match = re.search(r"^\s+(\S+summary\.md)$", self.out, re.M)
        assert match, f"no summary.md path printed:\n{self.out}"
        return Path(match.group(1))

    @property
    def run_dir(self) -> Path:
        return self.summary_md.parent


def cli(*argv: object) -> Cli:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse refusals
            code = exc.code
    return Cli(code, out.getvalue(), err.getvalue())
