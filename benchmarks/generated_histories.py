"""Hundreds of generated histories deployed from empty and validated: false failures and missed defects, counted.

    python benchmarks/generated_histories.py [--seeds 400] [--from-seed 1] [--migrations 8] [--server-url URL]
    make sweep-generated                        # the same, then RESULTS.md (section 8)

Each seed is one history of tests/generated/histories.py, deployed on a fresh empty database as `runbook deploy`
does (in-process: preflight, apply, validate of the release), then broken by hand where passing tests vouched
(tests/generated/history_run.py) and validated again per migration. `make test` runs 24 of them per server; this
runs as many as asked and writes benchmarks/results/generated_histories.json: the totals, and each failing
seed with what went wrong (a seed reproduces its history exactly).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the project on sys.path)
from common import DEFAULT_STATE, RESULTS_DIR, ROOT, header, server_url

sys.path.insert(0, str(ROOT / "tests"))

from deploy import drop_database, fresh_database  # benchmarks/deploy.py: a database per run
from generated import history_run as generated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=400, help="how many histories")
    parser.add_argument("--from-seed", type=int, default=1, help="the first seed (seeds are consecutive)")
    parser.add_argument("--migrations", type=int, default=8, help="migrations per history")
    parser.add_argument("--server-url", help="a server to use (default: the embedded PostgreSQL under --state-dir)")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "generated_histories.json")
    args = parser.parse_args(argv)
    server = server_url(args.server_url, args.state_dir)
    extensions = generated.available_extensions(server)
    result = header("generated_histories", argv, server)
    result.update(
        {
            "seeds": [args.from_seed, args.from_seed + args.seeds - 1],
            "migrations": args.migrations,
            "extensions": list(extensions),
        }
    )
    started = time.perf_counter()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="runbook-generated-") as work:
        for seed in range(args.from_seed, args.from_seed + args.seeds):
            url = fresh_database(server)
            try:
                outcome = generated.run(url, seed, Path(work), migrations=args.migrations, extensions=extensions)
            finally:
                drop_database(server, url)
            outcomes.append(outcome)
            if not outcome.ok:
                print(outcome.describe(), flush=True)
    result.update(
        {
            "took_s": round(time.perf_counter() - started, 1),
            "histories": len(outcomes),
            "tests_ran": sum(o.ran for o in outcomes),
            "tests_passed": sum(o.passed for o in outcomes),
            "tests_not_run": sum(o.not_run for o in outcomes),
            "false_failures": sum(len(o.false_failures) for o in outcomes),
            "deploys_failed": sum(1 for o in outcomes if o.error),
            "defects_injected": sum(len(o.defects) for o in outcomes),
            "defects_missed": sum(len(o.missed) for o in outcomes),
            "failing_seeds": [{"seed": o.seed, "what": o.describe()} for o in outcomes if not o.ok],
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"{result['histories']} histories in {result['took_s']:.0f} s: {result['tests_passed']}/{result['tests_ran']} "
        f"tests passed, {result['tests_not_run']} not run, {result['false_failures']} false failure(s), "
        f"{result['deploys_failed']} deploy(s) failed, {result['defects_injected'] - result['defects_missed']}/"
        f"{result['defects_injected']} injected defects caught; wrote {args.out}"
    )
    return 0 if not result["failing_seeds"] else 1


if __name__ == "__main__":
    sys.exit(main())
