"""Every real history complete, on every server here: the deploy tests of tests/corpora, whole.

    python benchmarks/corpora_sweep.py [--limit N] [--corpus NAME ...] [--server embedded|system ...] [--out PATH]
    make sweep-corpora                        # the same, then RESULTS.md (section 5c)

`make test` deploys the start of each history (tests/test_history_corpora.py, tests/test_layout_corpora.py:
a few seconds each). This runs the same two tests with --whole-corpora: langfuse and trigger.dev (Prisma),
openmeter (golang-migrate), dokploy (Drizzle Kit) and ohdsi-webapi (Flyway), each history complete, deployed from
empty beside psql and compared with it (schema, the tool's own history rows), on the embedded PostgreSQL 18 and on
the system's PostgreSQL in a throwaway cluster (scripts/system_postgres.py) where one is installed; openmeter
where pgcrypto is (the embedded server lacks it: skipped there, said so). Writes
benchmarks/results/corpora_sweep.json: per corpus and server the migrations, passed or failed, the seconds and the
server's version, with the date and the commit. About 10 minutes on 2 cores. --limit N deploys the first N
migrations of each instead: a smoke run of this script (tests/test_benchmarks.py), not a result to keep.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from common import RESULTS_DIR, ROOT, header

sys.path.insert(0, str(ROOT / "scripts"))
import system_postgres  # scripts/: the throwaway cluster of the system's PostgreSQL

from runbook_lib.db import embedded  # common put the project on sys.path

# the corpus each deploy test takes, in the order RESULTS.md lists them; the tool whose layout it is
TESTS = {
    "langfuse": "tests/test_history_corpora.py::test_a_complete_history_deploys_as_psql_applies_it",
    "trigger.dev": "tests/test_history_corpora.py::test_a_complete_history_deploys_as_psql_applies_it",
    "openmeter": "tests/test_layout_corpora.py::test_a_tool_history_deploys_from_empty_as_psql_applies_it",
    "dokploy": "tests/test_layout_corpora.py::test_a_tool_history_deploys_from_empty_as_psql_applies_it",
    "ohdsi-webapi": "tests/test_layout_corpora.py::test_a_tool_history_deploys_from_empty_as_psql_applies_it",
}
LAYOUT = {
    "langfuse": "Prisma",
    "trigger.dev": "Prisma",
    "openmeter": "golang-migrate",
    "dokploy": "Drizzle Kit",
    "ohdsi-webapi": "Flyway",
}
SERVERS = ("embedded", "system")
TEST_SERVER = ROOT / ".pytest_cache" / "d" / "embedded"  # the embedded server tests/fix_db.py starts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, help="the first N migrations of each history (a smoke run)")
    parser.add_argument("--corpus", action="append", choices=list(TESTS), help="these corpora only (default: all)")
    parser.add_argument("--server", action="append", choices=SERVERS, help="these servers only (default: both)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "corpora_sweep.json")
    args = parser.parse_args(argv)
    corpora = args.corpus or list(TESTS)
    result = header("corpora_sweep", argv, None)
    result.update({"commit": code_state(), "limit": args.limit, "corpora": corpora, "servers": [], "runs": []})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="runbook-corpora-sweep-") as work:
        for server in args.server or SERVERS:
            done = run_on(server, corpora, args.limit, Path(work))
            result["servers"].append({k: v for k, v in done.items() if k != "runs"})
            result["runs"] += done["runs"]
    result["took_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for run in result["runs"]:
        print(
            f"{run['corpus']:>12} on {run['server']} ({run['version']}): {run['migrations'] or '-'} migrations, "
            f"{run['outcome']}, {run['seconds']:.0f} s{': ' + run['message'] if run['message'] else ''}"
        )
    print(f"wrote {args.out}")
    return 1 if any(run["outcome"] in ("failed", "error") for run in result["runs"]) else 0


def run_on(server: str, corpora: list[str], limit: int | None, work: Path) -> dict:
    """pytest of the corpora's deploy tests on one server: what each test said, from its JUnit XML."""
    xml = work / f"{server}.xml"
    extent = ["--corpora-limit", str(limit)] if limit else ["--whole-corpora"]
    pytest = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-o",
        "junit_family=xunit1",  # the tests' record_property (migrations, server version) in the XML
        f"--junitxml={xml}",
        *extent,
        *[f"{TESTS[c]}[{c}]" for c in corpora],
    ]
    env = dict(os.environ)
    if server == "embedded":  # never a server the environment names: fix_db's embedded one (make test's first pass)
        env.pop("RUNBOOK_TEST_DATABASE_URL", None)
        env.pop("DATABASE_URL", None)
        command = pytest
    elif system_postgres.find_bin() is None:
        return {"server": server, "version": "not installed", "exit_code": None, "took_s": 0.0, "runs": []}
    else:
        command = [sys.executable, str(ROOT / "scripts" / "system_postgres.py"), "--", *pytest]
    was_running = embedded.running(TEST_SERVER) is not None
    print(f"== {server}: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    code = subprocess.run(command, cwd=ROOT, env=env).returncode
    took = round(time.perf_counter() - started, 1)
    if server == "embedded" and not was_running and embedded.stop(TEST_SERVER):
        print("== the embedded test server was stopped", flush=True)
    runs = read_junit(xml, server) if xml.exists() else []
    said = {r["corpus"] for r in runs}
    runs += [
        dict(_run(corpus, server), outcome="error", message=f"no result: pytest exited {code}")
        for corpus in corpora
        if corpus not in said
    ]
    versions = sorted({r["version"] for r in runs if r["version"] != "?"})
    for r in runs:  # a test that stopped before it asked the server: its neighbours did
        r["version"] = r["version"] if r["version"] != "?" else (versions[0] if versions else "?")
    runs.sort(key=lambda r: corpora.index(r["corpus"]))
    return {
        "server": server,
        "version": versions[0] if versions else "?",
        "exit_code": code,
        "took_s": took,
        "runs": runs,
    }


def _run(corpus: str, server: str) -> dict:
    return {
        "corpus": corpus,
        "layout": LAYOUT[corpus],
        "server": server,
        "version": "?",
        "migrations": None,
        "outcome": "?",
        "seconds": 0.0,
        "message": "",
    }


def read_junit(path: Path, server: str) -> list[dict]:
    """Each test case of pytest's JUnit XML (xunit1) as a run: its corpus, outcome, seconds and properties."""
    runs = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        if "[" not in name:
            continue
        run = _run(name[name.index("[") + 1 : -1], server)
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        run["migrations"] = int(props["migrations"]) if props.get("migrations") else None
        run["version"] = props.get("server") or "?"
        run["seconds"] = round(float(case.get("time") or 0), 1)
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        run["outcome"] = {"failure": "failed", "error": "error", "skipped": "skipped"}.get(
            outcome.tag if outcome is not None else "", "passed"
        )
        run["message"] = (outcome.get("message") or "").splitlines()[0][:300] if outcome is not None else ""
        runs.append(run)
    return runs


def code_state() -> dict:
    """Which code ran: the commit, and the files changed on top of it under runbook_lib/ and tests/."""

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "runbook_lib", "tests").splitlines()
    return {"commit": git("rev-parse", "HEAD"), "uncommitted": sorted(line[3:] for line in changed if line)}


if __name__ == "__main__":
    sys.exit(main())
