"""Smoke tests of the benchmarks: they run and produce their numbers (never timings: this machine is shared)."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from runbook_lib import paths, workload

BENCH = paths.project_root() / "benchmarks"


def _bench_module(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 1001)]
    assert workload.percentile(values, 99) == 990.0
    assert workload.percentile(values, 99.9) == 999.0
    assert workload.percentile(values[:10], 99.9) == 10.0  # few samples: the max


def test_workload_records_every_operation(crm_url: str) -> None:
    pools = workload.sample_pools(crm_url, leads=50, jobs=50)
    wl = workload.Workload(crm_url, pools, workload.WorkloadConfig(connections=2, rate_per_connection=200,
                                                                    max_seconds=0.4, max_ops=60))
    try:
        ops = wl.run(threading.Event())
    finally:
        wl.close()
    assert 0 < len(ops) <= 60
    stats = workload.stats(ops, min(ops.started), max(s + l for s, l in zip(ops.started, ops.latency)))
    assert stats.ops == len(ops) and stats.failed == 0, stats.errors
    assert stats.max_ms >= stats.p999_ms >= stats.p99_ms >= stats.p50_ms > 0
    with psycopg.connect(crm_url) as conn:
        leads, jobs = workload.remove_inserted(conn)
    assert leads + jobs > 0


def test_lock_impact_and_report_run(server_url: str, tmp_path: Path) -> None:
    lock_impact = _bench_module("lock_impact")
    report = _bench_module("report")
    methods = "psql,online" if shutil.which("psql") else "online"
    out = tmp_path / "lock.json"
    try:
        code = lock_impact.main(["--sizes", "300", "--runs", "1", "--methods", methods, "--no-blocker",
                                 "--warmup", "0.2", "--tail", "0.1", "--connections", "2", "--rate", "200",
                                 "--server-url", server_url, "--state-dir", str(tmp_path), "--out", str(out),
                                 "--reload"])
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier("bench_leads_300")))
    assert code == 0
    result = json.loads(out.read_text())
    assert {r["method"] for r in result["runs"]} == set(methods.split(","))
    for run in result["runs"]:
        assert run["apply"]["ok"], run["apply"]["message"]
        during = run["during"]
        assert during["ops"] == 0 or during["max_ms"] >= during["p99_ms"] > 0
    assert report.main(["--lock", str(out), "--overhead", str(tmp_path / "none.json"), "--out-dir", str(tmp_path)]) == 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert "Longest stall" in text and (tmp_path / "lock_impact.png").stat().st_size > 0
