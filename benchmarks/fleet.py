"""One batch across 50 databases: `runbook fleet run 7` with 1, 2 and 4 Dask workers, against a
sequential shell-style loop of `runbook run 7`, one database after the other.

Each measurement starts from 50 fresh copies of the example (1,000 leads, batch 6 applied), made
from one template database; the URLs travel in environment variables named in fleet.toml.

    python benchmarks/fleet.py                 # 50 databases, workers 1,2,4
    python benchmarks/fleet.py --databases 8 --workers 1,2

Writes benchmarks/results/fleet.json; benchmarks/report.py puts it into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the project on sys.path)
from common import DEFAULT_STATE, RESULTS_DIR, header, server_url
from psycopg import sql

from runbook_lib.db import connection as database
from runbook_lib.db import example
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply

TEMPLATE = "bench_fleet_template"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def make_template(server: str, reports: Path) -> None:
    with database.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    url = database.with_database(server, TEMPLATE)
    with database.connect(url) as conn:
        example.load(conn)
        conn.commit()
    apply.run(open_session(6, database_url=url, reports_dir=reports))


def fresh_copies(server: str, count: int) -> dict[str, str]:
    urls = {}
    with database.connect(server, autocommit=True) as conn:
        for i in range(count):
            name = f"bench_fleet_{i:03d}"
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(TEMPLATE))
            )
            urls[f"tenant-{i:03d}"] = database.with_database(server, name)
    return urls


def runbook_cmd() -> list[str]:
    return [sys.executable, "-m", "runbook_lib.cli"]


def sequential(urls: dict[str, str], reports: Path) -> tuple[float, int]:
    started, failed = time.monotonic(), 0
    for url in urls.values():
        done = subprocess.run(
            [*runbook_cmd(), "run", "7", "--database-url", url, "--reports-dir", str(reports)],
            capture_output=True,
            text=True,
        )
        failed += done.returncode != 0
    return time.monotonic() - started, failed


def fleet_run(urls: dict[str, str], workers: int, reports: Path, folder: Path) -> tuple[float, int]:
    toml = folder / "fleet.toml"
    env = dict(os.environ)
    lines = ["[fleet]", 'waves = ["canary", "*"]', ""]
    for i, (name, url) in enumerate(urls.items()):
        var = f"RB_BENCH_{name.upper().replace('-', '_')}"
        env[var] = url
        lines += (
            ["[[target]]", f'name = "{name}"', f'url_env = "{var}"'] + (['group = "canary"'] if i == 0 else []) + [""]
        )
    toml.write_text("\n".join(lines))
    started = time.monotonic()
    done = subprocess.run(
        [
            *runbook_cmd(),
            "fleet",
            "run",
            "7",
            "--targets",
            str(toml),
            "--workers",
            str(workers),
            "--reports-dir",
            str(reports),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.monotonic() - started
    failed = len(urls) - sum(1 for line in done.stdout.splitlines() if " APPLIED" in line and "ALREADY" not in line)
    return wall, max(failed, 0) if done.returncode else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", type=int, default=50)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--server-url")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "fleet.json")
    args = parser.parse_args(argv)
    server = server_url(args.server_url, args.state_dir)
    head = header("fleet", argv, server)
    work = Path(tempfile.mkdtemp(prefix="runbook-bench-fleet-"))
    make_template(server, work / "setup")
    results = []
    for label, workers in [("sequential loop of runbook run 7", 0)] + [
        (f"runbook fleet run 7 --workers {w}", int(w)) for w in args.workers.split(",")
    ]:
        urls = fresh_copies(server, args.databases)
        reports = work / f"reports-{workers}"
        if workers == 0:
            wall, failed = sequential(urls, reports)
        else:
            wall, failed = fleet_run(urls, workers, reports, work)
        results.append(
            {
                "what": label,
                "workers": workers,
                "wall_s": round(wall, 2),
                "failed": failed,
                "per_database_s": round(wall / args.databases, 3),
            }
        )
        log(f"{label}: {wall:.1f} s for {args.databases} databases ({failed} failed)")
    out = {**head, "settings": {"databases": args.databases, "leads_per_database": 1000}, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    with database.connect(server, autocommit=True) as conn:
        for i in range(args.databases):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(f"bench_fleet_{i:03d}"))
            )
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
