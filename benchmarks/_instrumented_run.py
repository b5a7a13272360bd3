"""`runbook run ...` exactly as the CLI runs it, with clocks around its parts (used by overhead.py).

    python benchmarks/_instrumented_run.py TIMINGS.json run 7 --database-url ... --reports-dir ...

Wraps (does not change) runbook_lib.notebook.runner.execute, runbook_lib.report.render.{summary,audit_copy,index} and
runbook_lib.commands.target with timers, then calls runbook_lib.cli.main. BENCH_SPAWNED_AT (the
parent's time.monotonic() just before it started this process; the clock is shared on Linux) gives
the interpreter's own start-up.
"""

import time

_entered = time.monotonic()

import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

_timings: dict = {"entered": _entered, "spans": []}


def _wrap(module, name: str, label: str) -> None:
    original = getattr(module, name)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        started = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            detail = args[0] if args and isinstance(args[0], str) else getattr(args[0], "name", "") if args else ""
            _timings["spans"].append({"what": label, "detail": str(detail), "start": started, "end": time.monotonic()})

    setattr(module, name, timed)


def main() -> int:
    out = sys.argv[1]
    argv = sys.argv[2:]
    from runbook_lib import cli, commands
    from runbook_lib.notebook import runner
    from runbook_lib.report import render

    _timings["imported"] = time.monotonic()
    _wrap(runner, "execute", "notebook")
    _wrap(render, "summary", "render summary")
    _wrap(render, "audit_copy", "render audit copy")
    _wrap(render, "index", "render index")
    _wrap(commands, "target", "target")
    code = 0
    try:
        code = cli.main(argv) or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    _timings["finished"] = time.monotonic()
    _timings["exit_code"] = code
    spawned = os.environ.get("BENCH_SPAWNED_AT")
    _timings["spawned"] = float(spawned) if spawned else None
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(_timings, fh)
    return code


if __name__ == "__main__":
    sys.exit(main())
