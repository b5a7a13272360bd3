"""`runbook deploy` of a real project's complete history against psql, side by side in one run.

    python benchmarks/deploy.py [--corpus langfuse --corpus trigger.dev] [--runs 3] [--server-url URL]

`make bench-deploy-cheap` runs it on the system PostgreSQL with fsync=off (commits cheap, as CI databases often
run), into results/deploy_fsync_off.json: there runbook's own work per migration is most of the difference.

For each corpus (a Prisma migrations folder of hundreds of migrations) and each run, on a fresh empty
database each time:
- psql: every migration.sql in Prisma's order (byte order of the folder names), each with `-1` (one
  transaction) unless it uses CONCURRENTLY, as a team applying them by hand would;
- runbook: `runbook deploy` (the CLI, in a process of its own): preflight of every migration, each
  applied in its own transaction and recorded in both ledgers, validated, and the release summary
  rendered to HTML and Markdown.
The ratio runbook / psql is taken per run, then the median. Per-migration overhead and where it goes
come from the release's run.json (phase durations) and each migration's apply.json.
Writes benchmarks/results/deploy.json; benchmarks/report.py turns it into RESULTS.md's section.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import common  # noqa: F401  (puts the project on sys.path)
from common import DEFAULT_STATE, RESULTS_DIR, ROOT, header, psql_binary, server_url, spread
from psycopg import conninfo, sql

from runbook_lib import batch
from runbook_lib.db import connection

CORPORA = {
    "langfuse": ROOT / "tests" / "corpora" / "langfuse" / "migrations",
    "trigger.dev": ROOT / "tests" / "corpora" / "trigger.dev" / "migrations",
    # other tools' layouts (docs/layouts.md): psql runs each file in that tool's order, as tests/corpora says
    "openmeter": ROOT / "tests" / "corpora" / "openmeter" / "migrations",  # golang-migrate; needs pgcrypto
    "dokploy": ROOT / "tests" / "corpora" / "dokploy" / "migrations",  # Drizzle Kit
    "ohdsi-webapi": ROOT / "tests" / "corpora" / "ohdsi-webapi" / "migrations",  # Flyway, ${ohdsiSchema}, webapi
}
PRISMA = ("langfuse", "trigger.dev")


def migrations(folder: Path) -> list[Path]:
    """Prisma's order: the folders' names in byte order; those without a migration.sql are not migrations."""
    return [
        p / "migration.sql"
        for p in sorted(folder.iterdir(), key=lambda p: p.name.encode())
        if (p / "migration.sql").is_file()
    ]


def fresh_database(server: str) -> str:
    name = f"bench_deploy_{uuid.uuid4().hex[:8]}"
    with connection.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return conninfo.make_conninfo(server, dbname=name)


def drop_database(server: str, url: str) -> None:
    name = conninfo.conninfo_to_dict(url)["dbname"]
    with connection.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def run_psql(url: str, files: list[Path]) -> float:
    psql = psql_binary()
    started = time.perf_counter()
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        single = [] if "CONCURRENTLY" in text.upper() else ["-1"]
        done = subprocess.run(
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", *single, "-d", url, "-f", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode != 0:  # its NOTICEs and WARNINGs are noise; a failure is not
            raise SystemExit(f"psql failed on {path}:\n{done.stderr}")
    return time.perf_counter() - started


def run_psql_tool(url: str, folder: Path) -> float:
    """Another tool's folder: each script in the tool's order (runbook's reading of it, tests/layouts checks it
    against the tool's rules), its placeholders substituted, `-1` unless CONCURRENTLY; Flyway's `schemas` created
    first and set as the search_path, as Flyway does."""
    found = batch.discover(folder)
    schemas = found[0].settings.schemas if found and found[0].settings else ()
    env = dict(os.environ)
    if schemas:
        with connection.connect(url, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        env["PGOPTIONS"] = "-c search_path=" + ",".join(schemas)
    psql = psql_binary()
    started = time.perf_counter()
    for b in found:
        text = b.migration_sql
        single = [] if "CONCURRENTLY" in text.upper() else ["-1"]
        done = subprocess.run(
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", *single, "-d", url, "-f", "-"],
            input=text,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        if done.returncode != 0:
            raise SystemExit(f"psql failed on {b.migration_path}:\n{done.stderr}")
    return time.perf_counter() - started


def run_runbook(url: str, folder: Path, reports: Path) -> tuple[float, Path]:
    env = {**os.environ, "DATABASE_URL": url}
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runbook_lib.cli",
            "deploy",
            "--migrations-dir",
            str(folder),
            "--reports-dir",
            str(reports),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"runbook deploy failed:\n{done.stdout}\n{done.stderr}")
    run_dir = Path(next(line.split("run folder ", 1)[1] for line in done.stderr.splitlines() if "run folder " in line))
    return seconds, run_dir


def breakdown(run_dir: Path) -> dict:
    """Where runbook's time went: each phase notebook's seconds, and the applies' own time."""
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    phases = {p["phase"]: p["seconds"] for p in run["phases"]}
    applies = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(run_dir.glob("*/apply.json"))]
    statements = sum(s["duration_s"] for a in applies for s in a["statements"])
    count = len(applies)
    # runbook's own work per migration: the phases that go through the migrations (preflight, apply with each
    # migration's tests, validate) without the SQL statements' own time, per migration
    per_migration = sum(phases.get(p, 0.0) for p in ("preflight", "apply", "validate")) - statements
    return {
        "phases_s": phases,
        "migrations": count,
        "apply_records_s": sum(a["duration_s"] for a in applies),
        "statements_s": round(statements, 3),
        "own_ms_per_migration": round(per_migration / count * 1000, 1) if count else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus",
        action="append",
        choices=sorted(CORPORA),
        help="default: the two Prisma histories (langfuse, trigger.dev)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, help="only the first N migrations (a smoke test)")
    parser.add_argument("--server-url", help="a server to use instead of the embedded PostgreSQL")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "deploy.json")
    args = parser.parse_args(argv)
    server = server_url(args.server_url, DEFAULT_STATE)
    result = header("deploy", argv, server)
    with connection.connect(server, autocommit=True) as conn:  # a server whose commits are cheap says so here
        result["server_settings"] = {
            name: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
            for name in ("fsync", "synchronous_commit", "full_page_writes")
        }
    result["corpora"] = {}
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"runbook-bench-deploy-{os.getpid()}"
    for name in args.corpus or PRISMA:
        folder = CORPORA[name]
        if args.limit and name not in PRISMA:
            raise SystemExit(f"--limit copies Prisma folders; {name} is another tool's layout: leave --limit out")
        if args.limit:  # a copy of the first N folders: runbook deploys a whole folder
            limited = scratch / name / "migrations"
            limited.mkdir(parents=True, exist_ok=True)
            for path in migrations(folder)[: args.limit]:
                target = limited / path.parent.name
                target.mkdir(exist_ok=True)
                (target / "migration.sql").write_bytes(path.read_bytes())
            folder = limited
        files = migrations(folder) if name in PRISMA else []
        count = len(files) if name in PRISMA else len(batch.discover(folder))
        runs = []
        for run in range(args.runs):
            url = fresh_database(server)
            try:
                psql_s = run_psql(url, files) if name in PRISMA else run_psql_tool(url, folder)
            finally:
                drop_database(server, url)
            url = fresh_database(server)
            try:
                runbook_s, run_dir = run_runbook(url, folder, scratch / "reports")
            finally:
                drop_database(server, url)
            runs.append(
                {
                    "psql_s": round(psql_s, 3),
                    "runbook_s": round(runbook_s, 3),
                    "ratio": round(runbook_s / psql_s, 3),
                    "breakdown": breakdown(run_dir),
                }
            )
            print(
                f"{name} run {run + 1}: psql {psql_s:.1f} s, runbook deploy {runbook_s:.1f} s "
                f"({runbook_s / psql_s:.2f}x)",
                file=sys.stderr,
                flush=True,
            )
        result["corpora"][name] = {
            "migrations": count,
            "psql_s": spread([r["psql_s"] for r in runs]),
            "runbook_s": spread([r["runbook_s"] for r in runs]),
            "ratio": spread([r["ratio"] for r in runs]),
            "runs": runs,
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"results: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
