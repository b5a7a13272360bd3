"""Batch 7 applied online while 20 client connections run a steady read/write workload.

The claim (issue: hold under load): no client operation fails, and none waits longer than runbook's
lock_timeout plus a small margin. The example CRM at --size leads (batch 6 applied), a workload of
--connections connections at --rate operations per second each (inserts and updates into "Lead" and
"Job", reads by id; runbook_lib.workload, in a process of its own), batch 7 applied with
`apply.run(session, strategy="online")`, then rolled back with `rollback.run`; --runs times.

    python benchmarks/load.py                 # 1M leads, 20 connections, 3 runs
    python benchmarks/load.py --size 100k --runs 1

Writes benchmarks/results/load.json; benchmarks/report.py puts it into RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import common  # noqa: F401  (puts the project on sys.path)
import workload  # benchmarks/workload.py: the application load the benchmarks run
from common import (
    DEFAULT_STATE,
    RESULTS_DIR,
    header,
    parse_size,
    server_url,
    size_label,
    spread,
)
from lock_impact import apply_runbook, cleanup, is_before_7, log, prepare, runbook_session, shape, undo

LOCK_TIMEOUT_MS = 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1M", help="leads (k, M suffixes)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10.0, help="operations per second per connection")
    parser.add_argument("--margin-ms", type=float, default=50.0, help="allowed above lock_timeout")
    parser.add_argument("--server-url")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "load.json")
    args = parser.parse_args(argv)
    leads = parse_size(args.size)
    server = server_url(args.server_url, args.state_dir)
    head = header("load", argv, server)
    reports = args.state_dir / "reports-load"
    shutil.rmtree(reports, ignore_errors=True)
    url = prepare(server, leads, reload=False, reports=reports)
    reference = shape(url)
    config = workload.WorkloadConfig(connections=args.connections, rate_per_connection=args.rate, max_seconds=300)
    pools = workload.sample_pools(url)
    runs = []
    with workload.WorkloadProcess(url, pools, config) as wl:
        for run in range(args.runs):
            if shape(url) != reference or not is_before_7(url):
                raise SystemExit("The database is not at the state before batch 7; stopping.")
            # as `runbook run` does: preflight first in the same run folder (apply relies on its gates)
            session = runbook_session(url, reports, after_preflight=True)
            wl.start()
            time.sleep(1.0)
            t0 = time.monotonic()
            applied = apply_runbook(session, "online", reports / "live.jsonl")
            t1 = time.monotonic()
            time.sleep(0.5)
            ops = wl.stop()
            during = workload.stats(ops, t0, t1)
            undo(url, "online", applied, reports)
            cleanup(url)
            runs.append({"run": run + 1, "apply": dataclasses.asdict(applied), "during": dataclasses.asdict(during)})
            log(
                f"load {size_label(leads)} run {run + 1}: apply {'ok' if applied.ok else 'FAILED'} "
                f"{applied.wall_s:.2f} s, {during.ops} operations, longest {during.max_ms:.1f} ms, p99 "
                f"{during.p99_ms:.1f} ms, failed {during.failed}"
            )
    limit = LOCK_TIMEOUT_MS + args.margin_ms
    out = {
        **head,
        "settings": {
            "leads": leads,
            "runs": args.runs,
            "workload": dataclasses.asdict(config),
            "lock_timeout_ms": LOCK_TIMEOUT_MS,
            "limit_ms": limit,
        },
        "runs": runs,
        "summary": {
            "longest_ms": spread([r["during"]["max_ms"] for r in runs]),
            "p99_ms": spread([r["during"]["p99_ms"] for r in runs]),
            "operations": spread([r["during"]["ops"] for r in runs]),
            "failed_ops": sum(r["during"]["failed"] for r in runs),
            "applies_ok": sum(1 for r in runs if r["apply"]["ok"]),
            "met": all(
                r["apply"]["ok"] and r["during"]["failed"] == 0 and r["during"]["max_ms"] <= limit for r in runs
            ),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    log(f"wrote {args.out}: claim {'met' if out['summary']['met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
