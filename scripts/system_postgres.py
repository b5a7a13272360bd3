"""Run a command against a throwaway cluster of the system's (Debian) PostgreSQL, if one is installed.

    python scripts/system_postgres.py -- pytest -q

Starts `initdb` + `pg_ctl` from /usr/lib/postgresql/<version>/bin in a temp folder (as the `postgres`
user when run as root), exports RUNBOOK_TEST_DATABASE_URL, runs the command, stops and removes the
cluster. Without a system PostgreSQL it says so and exits 0: the tests then ran on the embedded one only.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def find_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def main(argv: list[str]) -> int:
    command = argv[argv.index("--") + 1:] if "--" in argv else argv
    bindir = find_bin()
    if bindir is None:
        print("system PostgreSQL: not installed (apt-get install postgresql-15 postgresql-contrib); "
              "tests ran on the embedded server only", file=sys.stderr)
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
    port = "54329"
    try:
        subprocess.run(as_user + [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                  "--encoding=UTF8"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"),
                                  "-o", f"-k {sock} -p {port} -c listen_addresses=''", "start"],
                       check=True, stdout=subprocess.DEVNULL)
        version = bindir.parts[-2]
        url = f"postgresql://postgres@/postgres?host={sock}&port={port}"
        print(f"system PostgreSQL {version}: running the command against {url}", file=sys.stderr, flush=True)
        env = {**os.environ, "RUNBOOK_TEST_DATABASE_URL": url}
        return subprocess.run(command, env=env).returncode
    finally:
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
