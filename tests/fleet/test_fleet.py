"""`runbook fleet`: one batch across several databases of the test server, on a real Dask LocalCluster.

The targets are copies of the example with batch 6 applied (so batch 7 is cheap): a canary, a second
tenant, and one with a lead without customer (its preflight says NO-GO). Their URLs, with a password,
reach the workers through environment variables named in fleet.toml. One module-scoped journey runs
`fleet preflight`, `fleet run` and a rerun on an existing scheduler; the tests read what it left.
"""

from __future__ import annotations

import html
import io
import json
import logging
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from incli import Cli, cli
from psycopg import conninfo, sql

from runbook_lib import config
from runbook_lib.config import Options
from runbook_lib.db import connection as database
from runbook_lib.db import ledger
from runbook_lib.errors import FleetError
from runbook_lib.fleet import config as fleet_config
from runbook_lib.fleet import report as fleet_report
from runbook_lib.fleet import scheduler as fleet_scheduler
from runbook_lib.report import fleet_record

# Runs Jupyter kernels on Dask workers: server-independent like the CLI tests (see pyproject's markers).
pytestmark = pytest.mark.kernel

PASSWORD = "fl33t-s3cret"
NULL_LEAD = "INSERT INTO \"Lead\" (id, channel, name, updated_at) VALUES ('lead_fleet_probe', 'web', 'Probe', now())"


def applied(url: str) -> dict[int, bool]:
    with psycopg.connect(url) as conn:
        return {n: s.applied for n, s in ledger.states(conn).items()}


def lead_customer_nullable(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT is_nullable = 'YES' FROM information_schema.columns "
            "WHERE table_name = 'Lead' AND column_name = 'customer_id'"
        ).fetchone()[0]


def fleet_json(out: str) -> tuple[Path, dict]:
    """The fleet folder and its fleet.json, from the headline or from a --format json document."""
    if out.startswith("{"):
        html_path = Path(json.loads(out)["report_html"])
    else:
        html_path = Path(re.search(r"^fleet report: (\S+fleet\.html)$", out, re.M).group(1))
    return html_path.parent, json.loads((html_path.parent / "fleet.json").read_text(encoding="utf-8"))


def by_name(record: dict) -> dict[str, dict]:
    return {t["name"]: t for t in record["targets"]}


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _create(server_url: str, name: str, template: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))


def _drop(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def crm6_template(server_url: str, crm_template: str, tmp_path_factory: pytest.TempPathFactory):
    """The example with batch 6 applied by the library: the starting point of every target."""
    from runbook_lib.execution.session import open_session
    from runbook_lib.phases import apply

    name = f"crm6_{uuid.uuid4().hex[:8]}"
    _create(server_url, name, crm_template)
    url = database.with_database(server_url, name)
    apply.run(
        open_session(
            6,
            database_url=url,
            reports_dir=tmp_path_factory.mktemp("setup6"),
            migrations_dir=config.example_migrations_dir(),
        )
    )
    yield name
    _drop(server_url, name)


# --- fleet.toml: one sentence with the file and line, before anything runs -------------------------

GOOD = """\
[fleet]
waves = ["canary", "*"]

[[target]]
name = "a"
url_env = "RB_T_A"
group = "canary"

[[target]]
name = "b"
url_env = "RB_T_B"
"""


def test_fleet_toml_parses_into_waves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = fleet_config.load(
        write_toml(tmp_path / "fleet.toml", GOOD + '\n[[target]]\nname = "c"\nurl_env = "RB_T_C"\n')
    )
    assert [t.name for t in spec.targets] == ["a", "b", "c"]
    assert spec.targets[0] == fleet_record.FleetTarget("a", "RB_T_A", "canary", 4)
    assert [(w.name, [t.name for t in w.targets]) for w in spec.plan()] == [("canary", ["a"]), ("*", ["b", "c"])]
    monkeypatch.setenv("RB_T_A", "postgresql://x@h/a")
    monkeypatch.delenv("RB_T_B", raising=False)
    monkeypatch.delenv("RB_T_C", raising=False)
    assert [t.name for t in spec.missing_env()] == ["b", "c"]


@pytest.mark.parametrize(
    "text, line, words",
    [
        (GOOD + '\n[[target]]\nname = "a"\nurl_env = "RB_T_C"\n', 14, ["'a' is used twice", "lines 5 and 14"]),
        (GOOD.replace('group = "canary"', 'group = "canry"'), 7, ["group 'canry'", "does not list"]),
        (GOOD.replace('url_env = "RB_T_B"', 'url_env = "RB_T_B"\nschema = "public"'), 12, ["unknown key 'schema'"]),
        (GOOD.replace('url_env = "RB_T_B"', 'url = "postgresql://app@db/b"'), 11, ["no secrets", "url_env"]),
        (GOOD.replace('"RB_T_B"', '"postgresql://app@db/b"'), 11, ["not hold a URL", "no secrets"]),
        (GOOD.replace('url_env = "RB_T_B"', 'url_env = "RB_T_A"'), 11, ["both read RB_T_A"]),
        (GOOD.replace('waves = ["canary", "*"]', 'waves = ["canary"]'), 2, ["(b) are in no wave", '"*"']),
        (GOOD.replace('waves = ["canary", "*"]', 'waves = ["canary", "eu", "*"]'), 2, ["group 'eu'", "no target"]),
        (GOOD.replace('name = "b"', 'name = "fleet"'), 10, ["reserved"]),
        (GOOD.replace("[fleet]", "[fleet]\nworkers = 4"), 2, ["unknown key 'workers' in [fleet]"]),
        (GOOD.replace('name = "b"', 'name = "b'), 10, ["not valid TOML", "line 10"]),
        (GOOD + '\n[connection]\nhost = "db"\n', 13, ["unknown key 'connection' at the top level", "no secrets"]),
    ],
    ids=[
        "duplicate-name",
        "unknown-group",
        "unknown-key",
        "url-in-file",
        "url-as-env",
        "shared-env",
        "no-star",
        "empty-wave",
        "reserved-name",
        "unknown-fleet-key",
        "toml-syntax",
        "top-level-table",
    ],
)
def test_bad_fleet_toml_is_one_sentence_with_file_and_line(
    tmp_path: Path, text: str, line: int, words: list[str]
) -> None:
    path = write_toml(tmp_path / "fleet.toml", text)
    with pytest.raises(FleetError) as caught:
        fleet_config.load(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and message.endswith(".") and "\n" not in message
    assert f"line {line}" in message, message
    for word in words:
        assert word in message, message
    assert "hunter2" not in message


def test_missing_variable_is_refused_by_the_cli_before_any_cluster_or_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = write_toml(tmp_path / "fleet.toml", GOOD)
    monkeypatch.setenv("RB_T_A", "postgresql://x@127.0.0.1:1/a")
    monkeypatch.delenv("RB_T_B", raising=False)
    result = cli(
        "fleet",
        "run",
        7,
        "--targets",
        toml,
        "--reports-dir",
        tmp_path / "reports",
        "--migrations-dir",
        str(config.example_migrations_dir()),
    )
    assert result.code == 1 and result.out == ""
    err = result.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"runbook: {toml}: the environment variable RB_T_B (target 'b', line 9) is not set")
    assert not (tmp_path / "reports").exists()


def test_fleet_report_escapes_what_it_shows(tmp_path: Path) -> None:
    record = fleet_record.FleetRecord(7, "run-1", fleet_record.RUN, "<fleet.toml>", ["*"], "engine", "now")
    record.targets = [
        fleet_record.TargetResult(
            "a", "*", "RB_T_A", status=fleet_record.FAILED, message="apply failed: <script>alert(1)</script> | x"
        )
    ]
    page = fleet_report.page(record, tmp_path, tmp_path)
    md = fleet_report.markdown(record, tmp_path, tmp_path)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in md and "\\|" in md
    assert "&lt;fleet.toml&gt;" in page


# --- failures stop the fleet: a failed wave, --max-failures (no notebook runs: unreachable targets) -


def _unreachable(name: str) -> str:
    return conninfo.make_conninfo(host="127.0.0.1", port="1", dbname=name, user="app", password=PASSWORD)


def test_failed_canary_wave_stops_the_later_waves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crm_url: str
) -> None:
    toml = write_toml(tmp_path / "fleet.toml", GOOD)
    monkeypatch.setenv("RB_T_A", _unreachable("gone"))
    monkeypatch.setenv("RB_T_B", crm_url)
    reports = tmp_path / "reports"

    result = cli(
        "fleet",
        "run",
        6,
        "--targets",
        toml,
        "--workers",
        1,
        "--reports-dir",
        reports,
        "--migrations-dir",
        str(config.example_migrations_dir()),
    )

    assert result.code == 1, result.err
    folder, record = fleet_json(result.out)
    targets = by_name(record)
    assert targets["a"]["status"] == fleet_record.FAILED
    assert "Cannot connect to postgresql://app:***@127.0.0.1:1/gone" in targets["a"]["message"]
    assert targets["b"]["status"] == fleet_record.NOT_RUN
    assert targets["b"]["message"] == record["stopped"] == "not run: wave 'canary' had 1 failed target(s)"
    assert applied(crm_url) == {}  # b was never touched
    assert "STOPPED" in (folder / "fleet.md").read_text(encoding="utf-8").splitlines()[0]
    assert "stopped: not run: wave 'canary'" in result.out
    for path in reports.rglob("*"):
        assert not path.is_file() or PASSWORD.encode() not in path.read_bytes(), path
    assert PASSWORD not in result.out + result.err


def test_max_failures_stops_scheduling_new_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crm_url: str
) -> None:
    toml = write_toml(
        tmp_path / "fleet.toml",
        "".join(f'[[target]]\nname = "{n}"\nurl_env = "RB_T_{n.upper()}"\n' for n in ("x", "y", "z")),
    )
    monkeypatch.setenv("RB_T_X", _unreachable("x"))
    monkeypatch.setenv("RB_T_Y", _unreachable("y"))
    monkeypatch.setenv("RB_T_Z", crm_url)

    result = cli(
        "fleet",
        "run",
        6,
        "--targets",
        toml,
        "--workers",
        1,
        "--max-failures",
        1,
        "--migrations-dir",
        str(config.example_migrations_dir()),
        "--reports-dir",
        tmp_path / "reports",
        "--migrations-dir",
        str(config.example_migrations_dir()),
    )

    assert result.code == 1
    _, record = fleet_json(result.out)
    assert [t["status"] for t in record["targets"]] == [fleet_record.FAILED, fleet_record.NOT_RUN, fleet_record.NOT_RUN]
    assert record["stopped"] == "not scheduled: 1 target(s) failed (--max-failures 1)"
    assert "no new targets are scheduled (--max-failures 1)" in result.err
    assert applied(crm_url) == {}


# --- the journey: fleet preflight, fleet run (canary first), rerun on an existing scheduler --------


@dataclass
class Journey:
    urls: dict[str, str]  # without the password
    reports: Path
    preflight: Cli
    run: Cli
    rerun: Cli
    scheduler: str
    tenant_c_runs_before_rerun: int


@pytest.fixture(scope="module")
def journey(server_url: str, crm6_template: str, tmp_path_factory: pytest.TempPathFactory):
    from distributed import LocalCluster

    suffix = uuid.uuid4().hex[:8]
    role = f"runbook_fleet_{suffix}"
    names = {"canary": f"t_fleet_canary_{suffix}", "tenant-b": f"t_fleet_b_{suffix}", "tenant-c": f"t_fleet_c_{suffix}"}
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(sql.Identifier(role), sql.Literal(PASSWORD))
        )
    for name in names.values():
        _create(server_url, name, crm6_template)
    urls = {t: database.with_database(server_url, n) for t, n in names.items()}
    with psycopg.connect(urls["tenant-c"]) as conn:
        conn.execute(NULL_LEAD)  # a lead without customer appeared after batch 6: batch 7's gate fails
    root = tmp_path_factory.mktemp("fleet")
    reports = root / "reports"
    toml = write_toml(
        root / "fleet.toml",
        """\
# the canary first, then everyone else
[fleet]
waves = ["canary", "*"]

[[target]]
name = "canary"
url_env = "RB_FLEET_CANARY_URL"
group = "canary"

[[target]]
name = "tenant-b"
url_env = "RB_FLEET_B_URL"

[[target]]
name = "tenant-c"
url_env = "RB_FLEET_C_URL"
""",
    )
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("DATABASE_URL", raising=False)
            for target, env in (
                ("canary", "RB_FLEET_CANARY_URL"),
                ("tenant-b", "RB_FLEET_B_URL"),
                ("tenant-c", "RB_FLEET_C_URL"),
            ):
                mp.setenv(env, conninfo.make_conninfo(urls[target], user=role, password=PASSWORD))
            common = (
                "--targets",
                toml,
                "--reports-dir",
                reports,
                "--migrations-dir",
                str(config.example_migrations_dir()),
            )
            pre = cli("fleet", "preflight", 7, *common, "--workers", 2)
            run = cli("fleet", "run", 7, *common, "--workers", 2)
            before = len(list((reports / "tenant-c" / "7").iterdir()))
            # an existing cluster (its workers inherit this environment); no shared reports dir:
            # the run folders come back with the results and the client writes them
            with LocalCluster(
                n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
            ) as cluster:
                rerun = cli("fleet", "run", 7, *common, "--scheduler", cluster.scheduler_address, "--format", "json")
                address = cluster.scheduler_address
        yield Journey(urls, reports, pre, run, rerun, address, before)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            for name in names.values():
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_fleet_preflight_shows_each_verdict_and_exits_1_on_a_no_go(journey: Journey) -> None:
    result = journey.preflight
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    rows = {
        m.group(1): m.group(2) for m in re.finditer(r"^  \S+\s+(canary|tenant-b|tenant-c)\s+(\S+)", result.out, re.M)
    }
    assert rows["canary"] in ("GO", "WARN") and rows["tenant-b"] in ("GO", "WARN"), result.out
    assert rows["tenant-c"] == "NO-GO"
    assert re.search(r"tenant-c .*gate 'Leads with NULL customer_id' expected 0, got 1", result.out), result.out
    folder, record = fleet_json(result.out)
    assert folder.parent == journey.reports / "fleet" / "7"
    assert record["mode"] == "preflight"
    md = (folder / "fleet.md").read_text(encoding="utf-8")
    assert md.startswith("# Batch 7 fleet preflight: NO-GO\n")
    # each target's preflight ran in its own run folder, reports/<target>/7/<run-id>/
    for target in ("canary", "tenant-b", "tenant-c"):
        run_dir = journey.reports / by_name(record)[target]["run_dir"]
        assert run_dir.parent == journey.reports / target / "7"
        assert (run_dir / "preflight.json").exists() and not (run_dir / "apply.json").exists()


def test_fleet_run_applies_canary_first_then_the_rest_and_skips_the_no_go(journey: Journey) -> None:
    result = journey.run
    assert result.code == 1, result.err  # one target was not applied
    assert "Traceback" not in result.err
    _folder, record = fleet_json(result.out)
    targets = by_name(record)
    assert targets["canary"]["status"] == fleet_record.APPLIED and targets["canary"]["wave"] == "canary"
    assert targets["tenant-b"]["status"] == fleet_record.APPLIED and targets["tenant-b"]["wave"] == "*"
    assert targets["tenant-c"]["status"] == fleet_record.SKIPPED and targets["tenant-c"]["verdict"] == "NO-GO"
    assert "gate 'Leads with NULL customer_id' expected 0, got 1" in targets["tenant-c"]["message"]
    # the canary's wave finished before anything of the next wave started
    assert targets["canary"]["finished_at"] <= min(targets["tenant-b"]["started_at"], targets["tenant-c"]["started_at"])
    assert record["stopped"] == ""
    # the database says the same
    assert applied(journey.urls["canary"]) == {6: True, 7: True}
    assert applied(journey.urls["tenant-b"]) == {6: True, 7: True}
    assert applied(journey.urls["tenant-c"]) == {6: True}
    assert not lead_customer_nullable(journey.urls["canary"])
    assert lead_customer_nullable(journey.urls["tenant-c"])
    # evidence per target, from its records
    for name in ("canary", "tenant-b"):
        t = targets[name]
        assert t["apply_status"] == "applied" and t["apply_attempts"] >= 1 and t["attempts"] == 1
        assert t["validation_total"] and t["validation_passed"] == t["validation_total"]
        assert (journey.reports / t["summary"]).exists()
        assert t["summary"].startswith(f"{name}/7/")
    # progress went to the terminal
    assert re.search(r"^fleet: \[canary\] canary APPLIED .*\[1/3 done, 0 running, 0 failed\]$", result.err, re.M), (
        result.err
    )


def test_fleet_report_has_totals_rows_and_working_links(journey: Journey) -> None:
    folder, _record = fleet_json(journey.run.out)
    md = (folder / "fleet.md").read_text(encoding="utf-8")
    page = (folder / "fleet.html").read_text(encoding="utf-8")
    assert md.startswith("# Batch 7 fleet run: INCOMPLETE\n")
    assert "| APPLIED | 2 |" in md and "| SKIPPED (NO-GO) | 1 |" in md and "| FAILED | 0 |" in md
    assert re.search(
        r"^\| canary \| canary \| APPLIED \| (GO|WARN) \| \d+ \| [\d.]+ m?s \| \d+ ms \| (\d+)/\2 \|", md, re.M
    ), md
    assert re.search(r"^\| \* \| tenant-c \| SKIPPED \(NO-GO\) \| NO-GO \|", md, re.M), md
    links = re.findall(r"\]\(([^)]+)\)", md)
    assert len(links) == 3  # two summaries and tenant-c's run folder (its preflight)
    for link in links:
        assert (folder / link).resolve().is_file(), link
    assert set(re.findall(r'href="([^"]+)"', page)) == set(links)
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_rerun_on_an_existing_scheduler_reports_already_applied_and_writes_returned_folders(journey: Journey) -> None:
    result = journey.rerun
    assert result.code == 1, result.err
    doc = json.loads(result.out)  # --format json: the one document, nothing else on stdout
    assert set(doc) == {"format_version", "command", "ok", "headline", "totals", "report_html", "report_md", "fleet"}
    assert doc["command"] == "fleet run" and doc["ok"] is False
    assert doc["totals"][fleet_record.ALREADY_APPLIED] == 2 and doc["totals"][fleet_record.SKIPPED] == 1, doc["totals"]
    assert doc["headline"] == "INCOMPLETE"  # one target was not applied
    assert "fleet:" in result.err  # progress stayed on stderr
    _folder, record = fleet_json(result.out)
    assert doc["fleet"]["fleet_run_id"] == record["fleet_run_id"] and Path(doc["report_md"]).is_file()
    assert record["engine"] == f"Dask scheduler {journey.scheduler}"
    targets = by_name(record)
    for name in ("canary", "tenant-b"):
        assert targets[name]["status"] == fleet_record.ALREADY_APPLIED
        assert targets[name]["message"].startswith("batch 7 already applied at ")
        assert targets[name]["run_dir"] == ""
        # linked to the summary of the run that applied it
        assert targets[name]["summary"] == by_name(fleet_json(journey.run.out)[1])[name]["summary"]
    assert targets["tenant-c"]["status"] == fleet_record.SKIPPED
    # its preflight ran on the worker in a folder of its own; the client wrote it under reports/
    runs = sorted((journey.reports / "tenant-c" / "7").iterdir())
    assert len(runs) == journey.tenant_c_runs_before_rerun + 1
    returned = journey.reports / targets["tenant-c"]["run_dir"]
    assert returned in runs and {"preflight.json", "preflight.ipynb", "index.html", "run.json"} <= {
        p.name for p in returned.iterdir()
    }
    assert applied(journey.urls["tenant-c"]) == {6: True}


def test_the_site_lists_the_real_fleet_runs_and_each_targets_runs(journey: Journey) -> None:
    """reports/index.html after real fleet runs: the fleet runs with their totals, and every target's own runs."""
    import html as html_mod  # only this test reads the index's markup

    page = (journey.reports / "index.html").read_text(encoding="utf-8")
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = [html_mod.unescape(re.sub(r"<[^>]+>", " ", r)) for r in re.findall(r"<tr .*?</tr>", body, flags=re.S)]
    fleet_rows = [r for r in rows if "fleet" in r.split()]
    assert len(fleet_rows) == 3, rows  # fleet preflight, fleet run, the rerun on a scheduler
    # newest first: the rerun (already applied twice, one NO-GO skipped) heads the list
    assert "2 ALREADY APPLIED" in fleet_rows[0] and "1 SKIPPED (NO-GO)" in fleet_rows[0], fleet_rows[0]
    assert "2 APPLIED" in fleet_rows[1] and "1 SKIPPED (NO-GO)" in fleet_rows[1], fleet_rows[1]
    target_rows = [r for r in rows if r not in fleet_rows]
    for target in ("canary", "tenant-b", "tenant-c"):
        assert any(target in r for r in target_rows), (target, rows)
    assert any(re.search(r"canary .*\b(\d+)/\1\b", r) for r in target_rows), target_rows  # X/Y of its validation
    for link in re.findall(r'href="([^"]+)"', page):
        assert not link.startswith(("/", "http")) and (journey.reports / html_mod.unescape(link)).is_file(), link
    assert 'data-database="tenant-c"' in page and PASSWORD not in page


def test_no_password_in_any_file_or_output_of_the_fleet(journey: Journey) -> None:
    files = [p for p in journey.reports.rglob("*") if p.is_file()]
    assert {"fleet.html", "fleet.md", "fleet.json", "summary.html", "apply.json", "preflight.ipynb"} <= {
        p.name for p in files
    }
    for path in files:
        assert PASSWORD.encode() not in path.read_bytes(), f"password in {path}"
    for result in (journey.preflight, journey.run, journey.rerun):
        assert PASSWORD not in result.out + result.err
    _, record = fleet_json(journey.run.out)
    assert all(":***@" in t["database"] for t in record["targets"])
    assert html.escape(record["targets"][0]["database"]) in (journey.reports / "fleet").joinpath(
        "7", record["fleet_run_id"], "fleet.html"
    ).read_text(encoding="utf-8")


def test_fleet_preflight_does_not_wait_for_waves(journey: Journey) -> None:
    """Read-only: every target is scheduled at once, a NO-GO stops nothing."""
    started = re.findall(r"^fleet: \[(\S+)\] (\S+) started .*\[0/3 done", journey.preflight.err, re.M)
    assert len(started) == 2, journey.preflight.err  # two workers: two targets at once, across the waves
    assert "not run" not in journey.preflight.err
    assert re.search(r"tenant-c NO-GO .*\[\d/3 done, \d running, 0 failed, 1 NO-GO\]$", journey.preflight.err, re.M)


# --- a Dask worker killed in the middle of a target -------------------------------------------------


def _wait(predicate, timeout_s: float, what: str):
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_killed_mid_apply_is_retried_without_a_double_apply(
    server_url: str, crm6_template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal
    import threading

    from distributed import Client, LocalCluster

    name = f"t_fleet_kill_{uuid.uuid4().hex[:8]}"
    _create(server_url, name, crm6_template)
    url = database.with_database(server_url, name)
    monkeypatch.setenv("RB_FLEET_KILL_URL", url)
    toml = write_toml(tmp_path / "fleet.toml", '[[target]]\nname = "victim"\nurl_env = "RB_FLEET_KILL_URL"\n')
    reports = tmp_path / "reports"
    lines: list[str] = []
    outcome: dict = {}
    apply_sql = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'runbook apply batch 7'"
    try:
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
            ) as cluster,
            Client(cluster) as client,
            psycopg.connect(url) as blocker,
            psycopg.connect(server_url, autocommit=True) as watch,
        ):
            blocker.execute('LOCK "Lead" IN ACCESS SHARE MODE')  # apply's ALTER TABLE waits, times out, retries

            def go() -> None:
                try:
                    outcome["result"] = fleet_scheduler.run(
                        fleet_config.load(toml),
                        7,
                        scheduler=cluster.scheduler_address,
                        reports_dir=reports,
                        migrations_dir=config.example_migrations_dir(),
                        shared_reports=True,
                        say=lines.append,
                        options=Options(lock_timeout_ms=100, max_attempts=60, strategy="direct"),
                    )
                except BaseException as exc:  # reported by the assertion below
                    outcome["error"] = exc

            runner = threading.Thread(target=go)
            runner.start()
            first_apply = _wait(lambda: watch.execute(apply_sql, (name,)).fetchone(), 90, "the apply to start")[0]
            worker = _wait(
                lambda: next(
                    (w for w, keys in client.processing().items() if any("victim" in str(k) for k in keys)), None
                ),
                10,
                "the busy worker",
            )
            os.kill(client.run(os.getpid, workers=[worker])[worker], signal.SIGKILL)
            # the dead worker's kernel follows its parent: its connection (and migration lock) goes away
            _wait(
                lambda: watch.execute(
                    "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)", (first_apply,)
                ).fetchone()[0],
                30,
                "the orphaned apply to end",
            )
            blocker.rollback()  # the retry's apply now gets its lock
            runner.join(timeout=180)
        assert "error" not in outcome, outcome.get("error")
        result = outcome["result"]
        target = result.record.targets[0]
        assert target.status == fleet_record.APPLIED, (target, lines)
        assert target.attempts == 2
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT status FROM runbook.phase_run WHERE batch = 7 AND phase = 'apply' ORDER BY id"
            ).fetchall()
            extra_checks = conn.execute(
                "SELECT count(*) FROM pg_constraint WHERE conrelid = '\"Lead\"'::regclass AND contype = 'c'"
            ).fetchone()[0]
        assert [r[0] for r in rows] == ["interrupted", "succeeded"]  # the killed attempt, then one apply
        assert applied(url) == {6: True, 7: True} and not lead_customer_nullable(url)
        assert extra_checks == 0
        md = result.markdown.read_text(encoding="utf-8")
        assert "task retried: started 2 times (a worker died under it)" in md
        assert md.startswith("# Batch 7 fleet run: COMPLETED\n")
    finally:
        _drop(server_url, name)


def test_twelve_databases_all_succeed(server_url: str, crm6_template: str, tmp_path: Path) -> None:
    """A fleet of 12 databases with a canary wave: every one applied and validated, in that order."""
    names = [f"t_fleet12_{i:02d}_{uuid.uuid4().hex[:6]}" for i in range(12)]
    for name in names:
        _create(server_url, name, crm6_template)
    urls = {f"db-{i:02d}": database.with_database(server_url, name) for i, name in enumerate(names)}
    lines = ["[fleet]", 'waves = ["canary", "*"]', ""]
    for i, target in enumerate(urls):
        lines += ["[[target]]", f'name = "{target}"', f'url_env = "RB_FLEET12_{i:02d}"']
        lines += ['group = "canary"', ""] if i == 0 else [""]
    toml = write_toml(tmp_path / "fleet.toml", "\n".join(lines))
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("DATABASE_URL", raising=False)
            for i, url in enumerate(urls.values()):
                mp.setenv(f"RB_FLEET12_{i:02d}", url)
            result = cli(
                "fleet",
                "run",
                7,
                "--targets",
                toml,
                "--reports-dir",
                tmp_path / "reports",
                "--migrations-dir",
                str(config.example_migrations_dir()),
                "--workers",
                2,
            )
        assert result.code == 0, result.out + result.err
        _, record = fleet_json(result.out)
        targets = by_name(record)
        assert {t["status"] for t in targets.values()} == {fleet_record.APPLIED}
        assert targets["db-00"]["wave"] == "canary"
        assert all(applied(url).get(7) for url in urls.values())
        assert not any(lead_customer_nullable(url) for url in urls.values())
    finally:
        for name in names:
            _drop(server_url, name)


def test_a_canary_that_is_no_go_stops_the_later_waves(server_url: str, crm6_template: str, tmp_path: Path) -> None:
    names = {"canary": f"t_fleet_nogo_{uuid.uuid4().hex[:6]}", "rest": f"t_fleet_rest_{uuid.uuid4().hex[:6]}"}
    for name in names.values():
        _create(server_url, name, crm6_template)
    urls = {t: database.with_database(server_url, n) for t, n in names.items()}
    with psycopg.connect(urls["canary"]) as conn:
        conn.execute(NULL_LEAD)
    toml = write_toml(
        tmp_path / "fleet.toml",
        """\
[fleet]
waves = ["canary", "*"]

[[target]]
name = "canary"
url_env = "RB_FLEET_NOGO_CANARY"
group = "canary"

[[target]]
name = "rest"
url_env = "RB_FLEET_NOGO_REST"
""",
    )
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("DATABASE_URL", raising=False)
            mp.setenv("RB_FLEET_NOGO_CANARY", urls["canary"])
            mp.setenv("RB_FLEET_NOGO_REST", urls["rest"])
            result = cli(
                "fleet",
                "run",
                7,
                "--targets",
                toml,
                "--reports-dir",
                tmp_path / "reports",
                "--migrations-dir",
                str(config.example_migrations_dir()),
                "--workers",
                1,
            )
        assert result.code == 1
        assert "no target of wave 'canary' was applied" in result.err + result.out
        _, record = fleet_json(result.out)
        targets = by_name(record)
        assert targets["canary"]["status"] == fleet_record.SKIPPED
        assert (
            targets["rest"]["status"] != fleet_record.APPLIED
            and "no target of wave 'canary'" in targets["rest"]["message"]
        )
        assert not applied(urls["rest"]).get(7) and lead_customer_nullable(urls["rest"])
    finally:
        for name in names.values():
            _drop(server_url, name)


def test_fleet_progress_is_a_bar_on_a_terminal_and_plain_lines_elsewhere() -> None:
    from runbook_lib.fleet.scheduler import _Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    lines: list[str] = []
    plain = _Progress(2, lines.append, stream=io.StringIO())
    plain.done = 1
    plain.line("[*] a APPLIED (1.0 s)")
    plain.close()
    assert lines == ["fleet: [*] a APPLIED (1.0 s)" + " " * 37 + " [1/2 done, 0 running, 0 failed]"]

    screen = Terminal()
    lines.clear()
    bar = _Progress(2, lines.append, stream=screen)
    bar.done, bar.failed = 2, 1
    bar.line("[*] b FAILED (2.0 s)")
    shown = screen.getvalue()
    bar.close()
    assert lines == []  # on a terminal the line goes above the bar, on the same stream
    assert "fleet: [*] b FAILED (2.0 s)" in shown and "2/2 targets" in shown and "1 failed" in shown


def test_a_fleet_deploys_a_release_on_every_target(
    server_url: str, crm_template: str, crm6_template: str, tmp_path: Path
) -> None:
    """`fleet run pending`: each target deploys what it has pending (6 and 7 on one, 7 alone on the other)."""
    names = {"fresh": f"t_fleet_rel_{uuid.uuid4().hex[:6]}", "half": f"t_fleet_rel_{uuid.uuid4().hex[:6]}"}
    _create(server_url, names["fresh"], crm_template)
    _create(server_url, names["half"], crm6_template)
    urls = {t: database.with_database(server_url, n) for t, n in names.items()}
    toml = write_toml(
        tmp_path / "fleet.toml",
        '[[target]]\nname = "fresh"\nurl_env = "RB_FLEET_REL_A"\n\n'
        '[[target]]\nname = "half"\nurl_env = "RB_FLEET_REL_B"\n',
    )
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("DATABASE_URL", raising=False)
            mp.setenv("RB_FLEET_REL_A", urls["fresh"])
            mp.setenv("RB_FLEET_REL_B", urls["half"])
            result = cli(
                "fleet",
                "run",
                "pending",
                "--targets",
                toml,
                "--reports-dir",
                tmp_path / "reports",
                "--migrations-dir",
                str(config.example_migrations_dir()),
                "--workers",
                1,
            )
        assert result.code == 0, result.out + result.err
        folder, record = fleet_json(result.out)
        assert folder.parent.name == "release" and record["batch"] == "pending"
        targets = by_name(record)
        assert {t["status"] for t in targets.values()} == {fleet_record.APPLIED}
        for name, target in targets.items():
            assert "/release/" in target["run_dir"], target
            assert target["validation_total"] and target["validation_passed"] == target["validation_total"]
            migrations = sorted(p.name for p in (tmp_path / "reports" / target["run_dir"]).iterdir() if p.is_dir())
            assert migrations == (["0006", "0007"] if name == "fresh" else ["0007"]), (name, migrations)
        assert all(applied(url) == {6: True, 7: True} for url in urls.values())
        assert (folder / "fleet.md").read_text(encoding="utf-8").startswith("# Release fleet run: ")
    finally:
        for name in names.values():
            _drop(server_url, name)
