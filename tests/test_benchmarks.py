"""Smoke tests of the benchmarks: they run and produce their numbers (never timings: this machine is shared)."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import threading
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from runbook_lib import config

BENCH = config.project_root() / "benchmarks"


def _bench_module(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


workload = _bench_module("workload")


def _drop(server_url: str, *names: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 1001)]
    assert workload.percentile(values, 99) == 990.0
    assert workload.percentile(values, 99.9) == 999.0
    assert workload.percentile(values[:10], 99.9) == 10.0  # few samples: the max


def test_workload_records_every_operation(crm_url: str) -> None:
    pools = workload.sample_pools(crm_url, leads=50, jobs=50)
    wl = workload.Workload(
        crm_url, pools, workload.WorkloadConfig(connections=2, rate_per_connection=200, max_seconds=0.4, max_ops=60)
    )
    try:
        ops = wl.run(threading.Event())
    finally:
        wl.close()
    assert 0 < len(ops) <= 60
    stats = workload.stats(ops, min(ops.started), max(s + lat for s, lat in zip(ops.started, ops.latency, strict=True)))
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
        code = lock_impact.main(
            [
                "--sizes",
                "300",
                "--runs",
                "1",
                "--methods",
                methods,
                "--no-blocker",
                "--warmup",
                "0.2",
                "--tail",
                "0.1",
                "--connections",
                "2",
                "--rate",
                "200",
                "--server-url",
                server_url,
                "--state-dir",
                str(tmp_path),
                "--out",
                str(out),
                "--reload",
            ]
        )
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


@pytest.mark.kernel  # runs `runbook run 7` (notebooks); the numbers are the same machinery on any server
def test_overhead_runs_and_splits_the_run(server_url: str, tmp_path: Path) -> None:
    if not shutil.which("psql"):
        pytest.skip("psql is not installed: the overhead benchmark's baseline needs it")
    overhead = _bench_module("overhead")
    out = tmp_path / "overhead.json"
    try:
        assert (
            overhead.main(["--runs", "1", "--server-url", server_url, "--state-dir", str(tmp_path), "--out", str(out)])
            == 0
        )
    finally:
        _drop(server_url, overhead.TEMPLATE_DB, overhead.RUN_DB)
    result = json.loads(out.read_text())
    [run] = result["runs"]
    parts = run["instrumented"]["parts"]
    assert run["plain_wall_s"] > 0 and abs(sum(parts.values()) - run["instrumented"]["wall_s"]) < 1e-6
    assert run["instrumented"]["sql"]["total_s"] > 0 and run["psql"]["migration_s"] > 0
    assert set(run["instrumented"]["notebooks"]) == {"preflight", "apply", "validate", "summary"}
    assert result["floor"]["papermill_empty_fresh_process_s"]["median"] > 0
    assert {"limit_s", "whole_run_s", "met"} <= set(result["target"])
    report = _bench_module("report")
    assert report.main(["--lock", str(tmp_path / "none.json"), "--overhead", str(out), "--out-dir", str(tmp_path)]) == 0
    assert "### Where the time goes" in (tmp_path / "RESULTS.md").read_text()


def test_load_runs_and_counts_every_client_operation(server_url: str, tmp_path: Path) -> None:
    load = _bench_module("load")
    out = tmp_path / "load.json"
    try:
        load.main(
            [
                "--size",
                "300",
                "--runs",
                "1",
                "--connections",
                "3",
                "--rate",
                "20",
                "--server-url",
                server_url,
                "--state-dir",
                str(tmp_path),
                "--out",
                str(out),
            ]
        )
    finally:
        _drop(server_url, "bench_leads_300")
    result = json.loads(out.read_text())
    [run] = result["runs"]
    assert run["apply"]["ok"], run["apply"]
    assert run["during"]["ops"] > 0 and run["during"]["max_ms"] >= run["during"]["p99_ms"] > 0


@pytest.mark.kernel  # `runbook run 7` per database: notebook machinery, the same on any server
def test_fleet_benchmark_runs_a_small_fleet(server_url: str, tmp_path: Path) -> None:
    fleet = _bench_module("fleet")
    out = tmp_path / "fleet.json"
    try:
        assert (
            fleet.main(
                [
                    "--databases",
                    "2",
                    "--workers",
                    "1",
                    "--server-url",
                    server_url,
                    "--state-dir",
                    str(tmp_path),
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    finally:
        _drop(server_url, fleet.TEMPLATE)
    results = json.loads(out.read_text())["results"]
    assert [r["workers"] for r in results] == [0, 1]  # the sequential loop, then the fleet
    assert all(r["failed"] == 0 and r["wall_s"] > 0 for r in results)


@pytest.mark.kernel  # `runbook deploy` (notebooks): the same machinery on any server
def test_deploy_benchmark_runs_psql_and_runbook_side_by_side(server_url: str, tmp_path: Path) -> None:
    deploy = _bench_module("deploy")
    out = tmp_path / "deploy.json"
    assert (
        deploy.main(
            ["--corpus", "langfuse", "--limit", "12", "--runs", "1", "--server-url", server_url, "--out", str(out)]
        )
        == 0
    )
    result = json.loads(out.read_text())
    corpus = result["corpora"]["langfuse"]
    assert corpus["migrations"] == 12
    (run,) = corpus["runs"]
    assert run["psql_s"] > 0 and run["runbook_s"] > 0
    assert abs(run["ratio"] - run["runbook_s"] / run["psql_s"]) < 0.01  # taken before the times were rounded
    assert run["breakdown"]["migrations"] == 12
    assert set(run["breakdown"]["phases_s"]) == {"preflight", "apply", "validate", "summary"}
    report = _bench_module("report")
    section = "\n".join(report.deploy_section(result))
    assert "| langfuse | 12 |" in section and "Per migration over psql" in section
    # the server's commit settings recorded, and runbook's own work per migration: its phases without the SQL
    assert set(result["server_settings"]) == {"fsync", "synchronous_commit", "full_page_writes"}
    phases, statements = run["breakdown"]["phases_s"], run["breakdown"]["statements_s"]
    own = (phases["preflight"] + phases["apply"] + phases["validate"] - statements) / 12 * 1000
    assert run["breakdown"]["own_ms_per_migration"] == pytest.approx(own, abs=0.1) and own > 0
    cheap = "\n".join(report.deploy_cheap_section(result))
    assert cheap.startswith("### 5a. On a server whose commits are cheap (fsync=off)")
    assert f"| {run['breakdown']['own_ms_per_migration']:.1f} ms |" in cheap and "fsync=" in cheap


def test_backfill_benchmark_runs_each_method_and_a_kill(server_url: str, tmp_path: Path) -> None:
    backfill = _bench_module("backfill")
    out = tmp_path / "backfill.json"
    try:
        assert (
            backfill.main(
                [
                    "--sizes",
                    "2k",
                    "--runs",
                    "1",
                    "--kills",
                    "1",
                    "--methods",
                    "psql,online",
                    "--after-s",
                    "1",
                    "--server-url",
                    server_url,
                    "--state-dir",
                    str(tmp_path),
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    finally:
        _drop(server_url, "bench_backfill_2000")
    result = json.loads(out.read_text())
    assert [r["method"] for r in result["summary"]] == ["disk", "none", "psql", "online"]
    assert all(r["ok"] and r["same_end_state"] and r["stall_ms"] > 0 for r in result["runs"])
    assert [r["batches"] > 0 for r in result["runs"] if r["method"] == "online"] == [True]
    runs = {r["method"]: r for r in result["runs"]}
    # the baseline runs the application alone, as long as the online apply took, and nothing waits on a migration
    assert runs["none"]["wall_s"] >= runs["online"]["wall_s"] - 0.01 and runs["none"]["migration_lock_wait_ms"] == 0
    # the disk alone, as long: a sync every 5 ms or so (each takes time too), the slow ones counted
    disk = runs["disk"]["disk"]
    assert runs["disk"]["wall_s"] == runs["online"]["wall_s"] and disk["syncs"] >= runs["online"]["wall_s"] / 0.02
    assert 0 <= disk["over_20ms"] <= disk["syncs"] and disk["max_ms"] >= disk["p999_ms"] > 0
    assert all(isinstance(r["over_20ms"], int) for r in result["runs"])
    # psql -1 locks every lead it backfills until its COMMIT: a client statement the sampler saw blocked by the
    # migration for over 20 ms is a slow one waiting on a lock (whether such a wait happens in a 0.1 s apply is
    # timing, and the slow statements' waits count only those over 20 ms: so only when seen, and only then)
    if runs["psql"]["migration_lock_wait_ms"] > 20:
        assert any(event.startswith("Lock:") for event in runs["psql"]["slow_statement_waits"])
    (kill,) = result["kills"]
    assert kill["resumed"] in ("applied", "already applied") and kill["exactly_once"]
    report = _bench_module("report")
    section = "\n".join(report.backfill_section(result))
    assert "(0) no migration, as long as (c)" in section and "Waited on the migration's locks" in section
    assert all(r["wal_mb"] > 0 for r in result["runs"] if r["method"] != "disk") and "| WAL |" in section
    assert "(−) the disk alone, as long as (c)" in section and "| Over 20 ms |" in section
    # the application measured on for a second after each apply: what the run left for the kernel counts too
    assert all(
        r["after_s"] == 1 and r["after_stall_ms"] > 0 and r["after_over_20ms"] >= 0
        for r in result["runs"]
        if r["method"] in ("none", "psql", "online")
    )
    assert "- In the 1 s after each apply" in section and "2k online " in section and "2k no migration " in section
    # what the server did by itself while each apply ran: settled by a CHECKPOINT just before, none of its own
    assert all(r["background"]["checkpoints"] == 0 for r in result["runs"] if r["method"] == "online")
    assert (
        "- Meanwhile, by the server itself (pg_stat_checkpointer, pg_stat_user_tables): checkpoints during "
        "each apply, 2k (a) 0; 2k online 0" in section
    )
    # where the server kept its data, said from the results file (section 7g's run has it on tmpfs)
    storage = result["machine"].get("data_directory")
    if storage:
        assert (
            f"The server's data directory was on {storage['filesystem']} ({storage['mount_point']})"
            in report.in_memory_intro(result)
        )


def test_backfill_benchmark_counts_what_the_server_did_by_itself(server_url: str) -> None:
    backfill = _bench_module("backfill")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_background_probe (id int)")
    try:
        before = backfill.background(server_url)
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        after = backfill.background(server_url)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute("DROP TABLE bench_background_probe")
    assert after.since(before)["checkpoints"] >= 1 and before.tables["bench_background_probe"] == (0, 0)
    # a table autovacuum worked on between the readings, and one new since the first, are named; others not
    assert after.wal > before.wal  # the CHECKPOINT's own record at least
    grown = backfill.Background(
        after.wal, {**after.tables, "bench_background_probe": (1, 2), "new_one": (1, 0)}, before.checkpoints
    )
    assert grown.since(before) == {
        "autovacuum_tables": ["bench_background_probe", "new_one"],
        "autoanalyze_tables": ["bench_background_probe"],
        "checkpoints": 0,
    }


def test_results_say_which_filesystem_holds_the_servers_data(server_url: str) -> None:
    common = _bench_module("common")
    info = common.machine(server_url)
    with psycopg.connect(server_url) as conn:
        directory = conn.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'").fetchone()
    if directory is None:
        pytest.skip("this role may not read data_directory")
    mounts = {line.split()[1]: line.split()[2] for line in Path("/proc/mounts").read_text().splitlines()}
    storage = info["data_directory"]
    assert (
        storage["path"] == str(Path(directory[0]).resolve()) and mounts[storage["mount_point"]] == storage["filesystem"]
    )
    assert common.data_storage("/no/such/data/directory") is None  # a server on another machine: nothing claimed
    if mounts.get("/dev/shm") == "tmpfs":
        assert common.data_storage("/dev/shm")["filesystem"] == "tmpfs"


def test_generated_histories_sweep_runs_and_reports(server_url: str, tmp_path: Path) -> None:
    sweep = _bench_module("generated_histories")
    out = tmp_path / "generated.json"
    assert sweep.main(["--seeds", "2", "--server-url", server_url, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["histories"] == 2 and result["seeds"] == [1, 2]
    assert result["tests_ran"] > 0 and result["false_failures"] == 0 and result["defects_missed"] == 0
    assert result["defects_injected"] > 0
    section = "\n".join(_bench_module("report").generated_section(result))
    assert "| 2 | 0 |" in section and "Injected defects caught" in section


@pytest.mark.kernel  # the deploy tests (notebooks) in a pytest of their own, on the embedded server: once
def test_corpora_sweep_runs_the_deploy_tests_and_reports(tmp_path: Path) -> None:
    sweep = _bench_module("corpora_sweep")
    out = tmp_path / "corpora_sweep.json"
    args = ["--limit", "3", "--corpus", "langfuse", "--corpus", "dokploy", "--server", "embedded", "--out", str(out)]
    code = sweep.main(args)
    result = json.loads(out.read_text())
    assert code == 0, result["runs"]
    assert result["limit"] == 3 and len(result["commit"]["commit"]) == 40
    runs = [(r["corpus"], r["layout"], r["server"], r["migrations"], r["outcome"]) for r in result["runs"]]
    assert runs == [
        ("langfuse", "Prisma", "embedded", 3, "passed"),
        ("dokploy", "Drizzle Kit", "embedded", 3, "passed"),
    ]
    assert all(r["version"][:1].isdigit() and r["seconds"] > 0 for r in result["runs"])
    section = "\n".join(_bench_module("report").corpora_sweep_section(result))
    assert "A smoke run: the first 3 migrations" in section
    assert f"| langfuse | Prisma | embedded: PostgreSQL {result['runs'][0]['version']} | 3 | passed |" in section


def test_owner_role_benchmark_applies_as_the_owner_without_queuing(server_url: str, tmp_path: Path) -> None:
    owner_role = _bench_module("owner_role")
    suffix = uuid.uuid4().hex[:8]
    owner, app = f"rb_bench_mig_{suffix}", f"rb_bench_app_{suffix}"
    out = tmp_path / "owner.json"
    try:
        assert (
            owner_role.main(
                [
                    "--sizes",
                    "300",
                    "--runs",
                    "1",
                    "--strategies",
                    "direct",
                    "--idle-seconds",
                    "1",
                    "--warmup",
                    "0.2",
                    "--tail",
                    "0.1",
                    "--connections",
                    "2",
                    "--rate",
                    "100",
                    "--owner-role",
                    owner,
                    "--app-role",
                    app,
                    "--reload",
                    "--server-url",
                    server_url,
                    "--state-dir",
                    str(tmp_path),
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    finally:
        _drop(server_url, "bench_owner_300")
        with psycopg.connect(server_url, autocommit=True) as conn:
            for role in (app, owner):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    result = json.loads(out.read_text())
    assert {"machine", "state_dir", "code", "settings", "sizes", "runs", "summary"} <= set(result)
    roles = result["settings"]["roles"][owner]
    assert not (roles["superuser"] or roles["pg_read_all_stats"] or roles["pg_signal_backend"])
    [size] = result["sizes"]
    assert size["owners"]["tables"] == {"Customer": owner, "Lead": owner, "Job": owner}
    assert size["owner_sees_of_app_idle_session"]["state"] is None  # the application's state is hidden from it
    runs = {r["role"]: r for r in result["runs"]}
    assert set(runs) == {"superuser", "owner", "none"}
    assert all(
        r["during"]["ops"] > 0
        and r["during"]["failed"] == 0
        and isinstance(r["over_20ms"], int)
        and r["after_idle"]["ops"] <= r["during"]["ops"]
        for r in runs.values()
    )
    assert runs["none"]["apply"] is None and runs["none"]["idle_transaction"]["held_s"] >= 1
    for role in ("superuser", "owner"):
        applied = runs[role]["apply"]
        assert applied["ok"], applied["message"]
        # it waited for the idle transaction without requesting its lock: one attempt, nothing for the guard
        assert applied["attempts"] == 1 and applied["guard_cancels"] == 0 and not applied["lock_timeouts"]
        assert applied["blocker_wait_s"] > 0 and runs[role]["idle_transaction"]["queued_while_held"] == {}
    assert runs["owner"]["apply"]["role"] == owner
    for role, hidden in (("owner", True), ("superuser", False)):
        # the idle transaction is named once, its state hidden from the owner only; under load an application
        # session slow to commit may be waited for too, and is hidden from the owner just the same
        waits = runs[role]["apply"]["blocker_waits"]
        idle_pid = runs[role]["idle_transaction"]["pid"]
        assert [w["hidden"] for w in waits if w["pid"] == idle_pid] == [hidden]
        assert role == "superuser" or all(w["hidden"] for w in waits)
    assert [(r["role"], r["strategy"]) for r in result["summary"]] == [
        ("superuser", "direct"),
        ("owner", "direct"),
        ("none", None),
    ]
    section = "\n".join(_bench_module("report").owner_role_section(result))
    assert section.startswith("## 9. As the schema's owner role, not a superuser")
    assert "| (b) owner role | direct |" in section and "(c) no migration" in section
