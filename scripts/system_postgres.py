"""Run a command against a throwaway cluster of the system's (Debian) PostgreSQL, if one is installed.

    python scripts/system_postgres.py [--set fsync=off ...] -- pytest -q

Starts `initdb` + `pg_ctl` from /usr/lib/postgresql/<version>/bin in a temp folder (as the `postgres`
user when run as root), exports RUNBOOK_TEST_DATABASE_URL, runs the command, stops and removes the
cluster. Without a system PostgreSQL it says so and exits 0: the tests then ran on the embedded one only.
Each `--set name=value` is a server setting (`-c`), e.g. `--set fsync=off` for a server whose commits are
cheap, as CI databases often run. The port is a free one: two clusters (the test suite's, a benchmark's) can
run side by side.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def find_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(argv: list[str]) -> int:
    command = argv[argv.index("--") + 1 :] if "--" in argv else argv
    options = argv[: argv.index("--")] if "--" in argv else []
    settings = [options[i + 1] for i, option in enumerate(options) if option == "--set" and i + 1 < len(options)]
    if any("=" not in setting for setting in settings) or len(settings) * 2 != len(options):
        print("system_postgres.py: options are --set name=value before --", file=sys.stderr)
        return 2
    bindir = find_bin()
    if bindir is None:
        print(
            "system PostgreSQL: not installed (apt-get install postgresql-15 postgresql-contrib); "
            "tests ran on the embedded server only",
            file=sys.stderr,
        )
        return 0
    root = Path(tempfile.mkdtemp(prefix="runbook-syspg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (root, sock):
            os.chown(path, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    extra = "".join(f" -c {setting}" for setting in settings)
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            [
                *as_user,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-l",
                str(root / "log"),
                "-o",
                f"-k {sock} -p {port} -c listen_addresses=''{extra}",
                "start",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        version = bindir.parts[-2]
        url = f"postgresql://postgres@/postgres?host={sock}&port={port}"
        with_settings = f" ({', '.join(settings)})" if settings else ""
        print(
            f"system PostgreSQL {version}{with_settings}: running the command against {url}",
            file=sys.stderr,
            flush=True,
        )
        env = {**os.environ, "RUNBOOK_TEST_DATABASE_URL": url}
        return subprocess.run(command, env=env).returncode
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
