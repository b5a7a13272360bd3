"""The reports site: reports/index.html lists every run, newest first; `runbook publish DIR` copies it.

One module-scoped set of runs: batch 6 on two copies of the example (one connecting as a role whose
password is in the URL), a release (`deploy`) on a third, and a fleet record written through the fleet's
own dataclasses; the tests read the index and the published copy as a user would.
"""

from __future__ import annotations

import html
import io
import re
import shutil
import subprocess
import uuid
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import psycopg
import pytest
from psycopg import conninfo, sql

from runbook_lib import cli, config
from runbook_lib.db import connection as database
from runbook_lib.fleet import report as fleet_report
from runbook_lib.report import fleet_record, records, site

pytestmark = pytest.mark.kernel

PASSWORD = "s3cret-site-pw"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def run_cli(*args: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@dataclass
class Site:
    reports: Path
    names: list[str]  # the databases, in the order they ran
    fleet_dir: Path


@pytest.fixture(scope="module")
def ran(server_url: str, crm_template: str, tmp_path_factory: pytest.TempPathFactory):
    suffix = uuid.uuid4().hex[:8]
    role = f"runbook_site_{suffix}"
    names = [f"t_site_a_{suffix}", f"t_site_b_{suffix}", f"t_site_rel_{suffix}"]
    reports = tmp_path_factory.mktemp("site") / "reports"
    migrations = str(config.example_migrations_dir())
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(sql.Identifier(role), sql.Literal(PASSWORD))
        )
        for name in names:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(crm_template))
            )
    try:
        urls = [
            database.with_database(server_url, names[0]),
            conninfo.make_conninfo(server_url, user=role, password=PASSWORD, dbname=names[1]),
            database.with_database(server_url, names[2]),
        ]
        common = ("--reports-dir", reports, "--migrations-dir", migrations)
        for url in urls[:2]:
            code, out, err = run_cli("run", 6, "--database-url", url, *common)
            assert code == 0, out + err
        code, out, err = run_cli("deploy", "--to", 7, "--database-url", urls[2], *common)
        assert code == 0, out + err
        record = fleet_record.FleetRecord(
            batch=6,
            fleet_run_id=records.new_run_id(),
            mode=fleet_record.RUN,
            targets_file="fleet.toml",
            waves=["*"],
            engine="LocalCluster",
            started_at=records.now_iso(),
            finished_at=records.now_iso(),
            targets=[
                fleet_record.TargetResult(
                    name="eu",
                    wave="*",
                    url_env="EU_URL",
                    status=fleet_record.APPLIED,
                    verdict="GO",
                    validation_passed=5,
                    validation_total=6,
                    longest_write_block_s=0.25,
                ),
                fleet_record.TargetResult(
                    name="us", wave="*", url_env="US_URL", status=fleet_record.FAILED, verdict="WARN"
                ),
            ],
        )
        folder = records.RunFolder.create(reports, fleet_record.FLEET_FOLDER, 6, record.fleet_run_id)
        folder.write(fleet_record.FLEET_FOLDER, record)
        fleet_report.write(record, folder.path, reports)
        site.write_index(reports)
        yield Site(reports, names, folder.path)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            for name in names:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def rows(page: str) -> list[str]:
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr .*?</tr>", body, flags=re.S)


def text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def hrefs(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]+)"', page)]


def test_the_index_lists_every_run_newest_first_with_its_figures(ran: Site) -> None:
    page = (ran.reports / "index.html").read_text(encoding="utf-8")
    listed = rows(page)
    assert len(listed) == 4
    texts = [text(r) for r in listed]
    # newest first: the fleet run was written last, then the release, then batch 6 on b, then on a
    assert "fleet" in texts[0] and "release" in texts[1]
    assert ran.names[1] in texts[2] and ran.names[0] in texts[3]
    for row in texts[1:]:
        assert re.search(r"\s(GO|WARN|NO-GO)\s", row), row  # the preflight verdict
        assert re.search(r"\b\d+/\d+\b", row)  # X/Y
        assert re.search(r"\d+\.\d ms", row)  # the longest write block
    assert re.search(r"\b(applied|APPLIED)\b", texts[3]) and "6 " in texts[3]
    assert "2 applied" in texts[1]  # migrations 6 and 7 of the release
    assert "1 APPLIED, 1 FAILED" in texts[0] and "WARN" in texts[0] and "5/6" in texts[0] and "250.0 ms" in texts[0]
    assert re.search(r"runbook_site_\w+", texts[2])  # who: the role that connected
    assert PASSWORD not in page


def test_every_link_of_the_index_exists_and_is_relative(ran: Site) -> None:
    page = (ran.reports / "index.html").read_text(encoding="utf-8")
    links = hrefs(page)
    assert len(links) == 8  # summary and audit trail of 3 runs, fleet.html and fleet.md
    for link in links:
        assert not link.startswith(("/", "http:", "https:", "file:")), link
        assert (ran.reports / unquote(link)).is_file(), link
    assert sum(link.endswith("summary.html") for link in links) == 3


def test_the_index_filters_by_database_and_batch_without_an_external_script(ran: Site) -> None:
    page = (ran.reports / "index.html").read_text(encoding="utf-8")
    assert 'id="filter-database"' in page and 'id="filter-batch"' in page
    assert "<script src" not in page and "<link" not in page and "<noscript>" in page
    for name in ran.names:
        assert f'<option value="{name}">' in page
    assert '<option value="release">' in page and '<option value="6">' in page
    assert all('data-database="' in r and 'data-batch="' in r for r in rows(page))


def test_names_and_urls_are_escaped_and_an_unreadable_record_is_listed(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    folder = records.RunFolder(reports / "x&y<script>" / "6" / "20260101T000000Z-abcd")
    folder.path.mkdir(parents=True)
    folder.write(
        "run",
        records.RunRecord(
            6,
            folder.run_id,
            "postgresql://u@h/db?application_name=<script>alert(1)</script>&a=b",
            "2026-01-01T00:00:00.000+00:00",
        ),
    )
    broken = records.RunFolder(reports / "db" / "7" / "20260102T000000Z-abcd")
    broken.path.mkdir(parents=True)
    (broken.path / "run.json").write_text("{not json", encoding="utf-8")
    page = site.write_index(reports).read_text(encoding="utf-8")
    assert "<script>alert" not in page and "x&y<script>" not in page
    assert "x&amp;y&lt;script&gt;" in page and "&lt;script&gt;alert(1)&lt;/script&gt;&amp;a=b" in page
    listed = [text(r) for r in rows(page)]
    assert len(listed) == 2 and "unreadable record" in listed[0]


def test_publish_copies_the_site_without_notebooks_or_passwords(ran: Site, tmp_path: Path) -> None:
    dest = tmp_path / "public"
    code, out, err = run_cli("publish", dest, "--reports-dir", ran.reports)
    assert code == 0, out + err
    assert "published 4 run(s)" in out and f"index: {dest / 'index.html'}" in out
    files = [p for p in dest.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".ipynb", ".json")]
    for p in files:
        assert PASSWORD not in p.read_text(encoding="utf-8", errors="replace"), p
        assert not site.password_in(p), p
    page = (dest / "index.html").read_text(encoding="utf-8")
    for link in hrefs(page):
        assert (dest / unquote(link)).is_file(), link
    for run_index in dest.glob("*/*/*/index.html"):  # each run's own page links its audit copies
        for link in hrefs(run_index.read_text(encoding="utf-8")):
            assert (run_index.parent / link).is_file(), (run_index, link)
    assert any(p.name == "apply.html" for p in files) and any(p.name == "summary.md" for p in files)


def test_publish_copies_notebooks_only_when_asked(ran: Site, tmp_path: Path) -> None:
    code, out, err = run_cli("publish", tmp_path / "with", "--reports-dir", ran.reports, "--with-notebooks")
    assert code == 0, out + err
    assert list((tmp_path / "with").rglob("apply.ipynb"))
    assert re.search(r"[1-9]\d* notebook\(s\)", out)


def test_publish_refuses_a_folder_inside_the_reports_or_not_empty(ran: Site, tmp_path: Path) -> None:
    code, _out, err = run_cli("publish", ran.reports / "public", "--reports-dir", ran.reports)
    assert code == 1 and "inside the reports folder" in err and not (ran.reports / "public").exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    code, _out, err = run_cli("publish", full, "--reports-dir", ran.reports)
    assert code == 1 and "is not empty" in err and "--force" in err
    code, _out, err = run_cli("publish", full, "--reports-dir", ran.reports, "--force")
    assert code == 0 and (full / "index.html").is_file()


def test_publish_refuses_a_file_with_a_password_naming_it(ran: Site, tmp_path: Path) -> None:
    leaky = ran.fleet_dir / "fleet.md"
    before = leaky.read_text(encoding="utf-8")
    try:
        # built here, so no URL with a password is written out in the source
        planted = "postgresql://" + ":".join(("admin", uuid.uuid4().hex)) + "@db.example/crm"
        leaky.write_text(before + "\n" + planted + "\n", encoding="utf-8")
        code, _out, err = run_cli("publish", tmp_path / "out", "--reports-dir", ran.reports)
    finally:
        leaky.write_text(before, encoding="utf-8")
    assert code == 1 and str(leaky) in err and "password" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_redacted_url_is_not_a_password(tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    page.write_text("postgresql://admin:***@db/crm and postgresql://admin@db/crm", encoding="utf-8")
    assert not site.password_in(page)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_the_published_index_opens_in_headless_chromium(ran: Site, tmp_path: Path) -> None:
    dest = tmp_path / "public"
    assert run_cli("publish", dest, "--reports-dir", ran.reports)[0] == 0
    result = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (dest / "index.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = result.stdout
    assert "runbook: every run" in dom, result.stderr[-2000:]
    assert "hidden" not in re.search(r'<form id="filters"[^>]*>', dom).group(0)  # the script ran: filters shown
    assert '<span id="shown">4</span>' in dom
    for link in hrefs(dom):
        assert (dest / unquote(link)).is_file(), link
