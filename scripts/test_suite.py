"""`make test`: the suite on the embedded PostgreSQL 18 and, where one is installed, on the system's PostgreSQL.

    python scripts/test_suite.py [pytest arguments]

With a system PostgreSQL the two passes run side by side (tests/fix_passes.py says which tests each takes:
the server-dependent ones on both servers, each notebook/report test once); the second pass's output is
kept in a file and printed when the first one is done, so the log reads one pass after the other. Without
one, a single pass runs everything. The exit code is non-zero when any pass failed. The embedded server the
first pass starts (in .pytest_cache) is stopped at the end unless it was running before: a server left
behind outlives the checkout, and one killed later leaks its shared memory segments in /dev/shm.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import system_postgres

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from runbook_lib.db import embedded  # noqa: E402  (the checkout's, importable from scripts/)

TEST_SERVER = HERE.parent / ".pytest_cache" / "d" / "embedded"  # where tests/fix_db.py starts it


def main(pytest_args: list[str]) -> int:
    was_running = embedded.running(TEST_SERVER) is not None
    try:
        return _passes(pytest_args)
    finally:
        if not was_running and embedded.stop(TEST_SERVER):
            print("== the embedded test server was stopped", flush=True)


def _passes(pytest_args: list[str]) -> int:
    pytest = [sys.executable, "-m", "pytest", *pytest_args]
    if system_postgres.find_bin() is None:
        print("system PostgreSQL: not installed (apt-get install postgresql-15 postgresql-contrib); "
              "the tests run on the embedded server only", file=sys.stderr)
        return subprocess.run(pytest).returncode
    started = time.monotonic()
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as log:
        second = subprocess.Popen([sys.executable, str(HERE / "system_postgres.py"), "--", *pytest,
                                   "--suite-pass", "second"], stdout=log, stderr=subprocess.STDOUT, text=True)
        print("== first pass: the embedded PostgreSQL (the system PostgreSQL's pass runs alongside)", flush=True)
        first = subprocess.run([*pytest, "--suite-pass", "first"]).returncode
        code = second.wait()
        log.seek(0)
        print("\n== second pass: the system PostgreSQL (server-dependent tests, and the kernel tests "
              "tests/fix_passes.py gives it)", flush=True)
        sys.stdout.write(log.read())
    print(f"\n== both passes: first {'passed' if first == 0 else 'FAILED'}, second "
          f"{'passed' if code == 0 else 'FAILED'}, {time.monotonic() - started:.0f} s", flush=True)
    return first or code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
