"""The migration summary (summary.md, summary.html) rendered from the records of real runs.

Two module-scoped runs of batch 7 (batch 6 applied first through the library): the example as it
is, and a copy of the batches whose validation.sql adds a block named like markup, a block reading
a lead whose name is markup, and a block that expects a wrong value.
"""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import uuid
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from runbook_lib import config
from runbook_lib.cli import main
from runbook_lib.db import connection as database
from runbook_lib.db import ledger
from runbook_lib.display import markdown
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply

# Runs Jupyter kernels: notebook and report machinery, the same on any server (see pyproject's markers).
pytestmark = pytest.mark.kernel

SECTIONS = [
    "What Was Done",
    "Changes Applied",
    "Pre-flight Checks",
    "Validation Results",
    "Test Summary",
    "Database State",
    "Performance Impact (measured)",
    "Migration Timeline",
    "Rollback Procedure",
    "Files Modified",
    "Monitoring",
]
MARKUP = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
EXTRA_BLOCKS = f"""

-- name: {MARKUP}
-- expect: ok
SELECT 1;

-- name: A lead whose name is markup reads back as text
-- expect: {MARKUP}
SELECT "name" FROM "Lead" WHERE "id" = 'lead_markup';

-- name: Lead count, expected wrong on purpose
-- expect: 999999
SELECT count(*) FROM "Lead";
"""


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    run_dir: Path

    @property
    def md(self) -> str:
        return (self.run_dir / "summary.md").read_text(encoding="utf-8")

    @property
    def html(self) -> str:
        return (self.run_dir / "summary.html").read_text(encoding="utf-8")

    def record(self, phase: str) -> dict:
        return json.loads((self.run_dir / f"{phase}.json").read_text(encoding="utf-8"))


def _database(server_url: str, template: str):
    name = f"t_sum_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return name, database.with_database(server_url, name)


def _drop(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _run_7(url: str, reports: Path, migrations: Path | None = None) -> Run:
    """Batch 6 through the library, then `runbook run 7` in process."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DATABASE_URL", raising=False)
        mp.setenv("RUNBOOK_REPORTS_DIR", str(reports / "default"))
        apply.run(open_session(6, database_url=url, reports_dir=reports / "setup", migrations_dir=migrations))
        if migrations is not None:
            with psycopg.connect(url) as conn:
                conn.execute(
                    'INSERT INTO "Lead" (id, customer_id, channel, name, updated_at)'
                    ' SELECT %s, id, %s, %s, now() FROM "Customer" ORDER BY id LIMIT 1',
                    ("lead_markup", "web", MARKUP),
                )
        argv = ["run", "7", "--database-url", url, "--reports-dir", str(reports)]
        if migrations is not None:
            argv += ["--migrations-dir", str(migrations)]
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(argv)
    match = re.search(r"^summary: (\S+)summary\.html$", out.getvalue(), re.M)
    assert match, out.getvalue() + err.getvalue()
    return Run(code, out.getvalue(), err.getvalue(), Path(match.group(1)))


@pytest.fixture(scope="module")
def completed(server_url: str, crm_template: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    name, url = _database(server_url, crm_template)
    try:
        run = _run_7(url, tmp_path_factory.mktemp("completed"))
        assert run.code == 0, run.err
        yield run
    finally:
        _drop(server_url, name)


@pytest.fixture(scope="module")
def tampered(server_url: str, crm_template: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp = tmp_path_factory.mktemp("tampered")
    migrations = tmp / "migrations"
    shutil.copytree(config.example_migrations_dir(), migrations)
    with open(migrations / "007_tighten_constraints" / "validation.sql", "a", encoding="utf-8") as f:
        f.write(EXTRA_BLOCKS)
    name, url = _database(server_url, crm_template)
    try:
        yield _run_7(url, tmp / "reports", migrations)
    finally:
        _drop(server_url, name)


def _tests(run: Run) -> list[dict]:
    return run.record("validate")["tests"]


def _section(md: str, title: str) -> str:
    start = md.index(f"\n## {title}\n")
    end = md.find("\n## ", start + 1)
    return md[start : end if end != -1 else len(md)]


# --- summary.md ----------------------------------------------------------------------------------


# The `##` sections of ../shared/reference/batch-7-migration-summary.md, in its order (as _titles reads them).
REFERENCE_SECTIONS = [
    "what was done",
    "changes applied",
    "validation results",
    "test summary",
    "prisma schema updates",
    "application impact",
    "database state",
    "performance impact",
    "migration timeline",
    "constraint behavior",
    "rollback procedure",
    "files modified",
    "monitoring",
    "benefits",
    "lessons learned",
    "team notes",
    "next steps",
    "summary",
]


def _titles(markdown_text: str) -> list[str]:
    """The `##` headings, as a person compares them: without emoji, check marks and a parenthesis."""
    found = re.findall(r"^## (.+)$", markdown_text, re.M)
    return [re.sub(r"\s*\(.*?\)|[^\w\s-]", "", t).strip().lower() for t in found]


def test_markdown_has_every_section_of_the_reference_in_its_order(completed: Run) -> None:
    """The reference document (../shared/reference), section by section: each of its `##` sections is in
    batch 7's summary.md, in the same order (the summary may have more, e.g. Pre-flight Checks)."""
    reference = Path(config.project_root()).parent / "shared" / "reference" / "batch-7-migration-summary.md"
    if reference.exists():  # beside the checkout here; the list below is its copy, for a clone elsewhere
        assert _titles(reference.read_text(encoding="utf-8")) == REFERENCE_SECTIONS
    wanted, have = REFERENCE_SECTIONS, _titles(completed.md)
    missing = [t for t in wanted if t not in have]
    assert not missing, f"sections of the reference missing from summary.md: {missing}"
    assert [t for t in have if t in wanted] == wanted, have
    # the author's sections are the README's, marked as theirs; the summary's own are measured
    assert "*The author's notes, from the batch's README.md:*" in _section(completed.md, "Lessons Learned")


def test_markdown_has_every_section_in_order(completed: Run) -> None:
    md = completed.md
    assert md.startswith("# Batch 7 Migration Summary: COMPLETED\n")
    positions = [md.index(f"\n## {title}\n") for title in SECTIONS]
    assert positions == sorted(positions)
    # Markdown tables, not raw HTML ones
    assert "<table" not in md.lower()
    assert len(re.findall(r"^\|(---\|)+$", md, re.M)) >= 6
    # who ran it, for an audit: the operating-system user and host (as the ledger has them), and the role
    run = completed.record("run")
    assert run["run_by"] == f"{ledger.os_user()}@{ledger.hostname()}"
    assert f"| Run by | {run['run_by']}, as database role {completed.record('apply')['connection']['user']} |" in md


def test_markdown_test_summary_counts_the_recorded_tests(completed: Run) -> None:
    tests = _tests(completed)
    passed = sum(t["outcome"] == "passed" for t in tests)
    assert len(tests) >= 14 and passed == len(tests)
    section = _section(completed.md, "Test Summary")
    assert f"**Overall**: {passed}/{len(tests)} tests passed (100%; " in section
    for n, t in enumerate(tests, start=1):
        origin = "derived" if t["source"].startswith("derived: ") else "declared"
        assert f"| {n} | {markdown.text(t['name'])} | {origin} | PASS |" in section
    results = _section(completed.md, "Validation Results")
    assert results.count("- Result: PASS") == len(tests) and "FAIL" not in results


def test_markdown_before_and_after_come_from_the_catalog(completed: Run) -> None:
    record = completed.record("apply")
    lead = {phase: next(t for t in record[phase]["tables"] if t["name"] == "Lead") for phase in ("before", "after")}
    col = {phase: next(c for c in lead[phase]["columns"] if c["name"] == "customer_id") for phase in lead}
    assert (col["before"]["type"], col["before"]["nullable"]) == ("text", True)
    assert (col["after"]["type"], col["after"]["nullable"]) == ("text", False)
    md = completed.md
    assert "| Lead.customer_id | text NULL | text NOT NULL |" in _section(md, "Database State")
    changes = _section(md, "Changes Applied")
    lead_change = changes[changes.index('Lead: column "customer_id" (changed)') :]
    assert re.match(r'[^`]*```sql\n"customer_id" text\n```[^`]*```sql\n"customer_id" text NOT NULL\n```', lead_change)
    assert "ON DELETE SET NULL" in changes and "ON DELETE RESTRICT" in changes
    rows = lead["after"]["rows"]
    assert f"| Lead rows | {lead['before']['rows']} | {rows} |" in _section(md, "Database State")


def test_markdown_timeline_has_offsets_and_durations_for_every_statement(completed: Run) -> None:
    section = _section(completed.md, "Migration Timeline")
    rows = re.findall(r"^\| T\+(\d+\.\d{3})s \| (\d+\.\d) ms \| ([^|]+) \| ([^|]+) \|$", section, re.M)
    statements = completed.record("apply")["statements"]
    assert len(rows) == len(statements) + 3  # + preflight, apply total, validation
    offsets = [float(r[0]) for r in rows]
    assert offsets[0] == 0.0 and offsets == sorted(offsets)
    actions = [r[2] for r in rows]
    assert actions[0] == "Pre-flight check" and actions[-1] == "Validation"
    for s in statements:
        assert f"{s['kind']} (statement {s['index']})" in actions
    assert re.search(r"\*\*Total duration\*\*: \d+\.\d{3} s \(measured\)", section)
    perf = _section(completed.md, "Performance Impact (measured)")
    assert re.search(r"Apply took \d+\.\d{3} s in 1 attempt\(s\) \(lock_timeout 200 ms\)", perf)


def test_markdown_rollback_files_and_monitoring(completed: Run) -> None:
    md = completed.md
    rollback = _section(md, "Rollback Procedure")
    assert "runbook rollback 7" in rollback
    assert 'ALTER TABLE "Lead" ALTER COLUMN "customer_id" DROP NOT NULL;' in rollback
    files = _section(md, "Files Modified")
    for name in ("batch.toml", "migration.sql", "rollback.sql", "validation.sql"):
        assert f"| {name} |" in files
    assert completed.record("apply")["batch"]["checksum"] in files
    assert "runbook validate 7" in _section(md, "Monitoring")


# --- summary.html --------------------------------------------------------------------------------


def test_html_is_self_contained_and_shows_no_code(completed: Run) -> None:
    page = completed.html
    assert "<script" not in page.lower()
    assert len(page.encode()) < 200_000  # small enough to attach anywhere (JupyterLab's stylesheet alone is 240 KB)
    # the inline chart's SVG namespace is a name, not an address: nothing else may name one
    addresses = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http://" not in addresses and "https://" not in addresses
    assert not re.search(r"In(\s|&nbsp;)*\[", page)
    for code in ("open_session", "load_for_notebook", "summary_mod"):
        assert code not in page
    tests = _tests(completed)
    assert f"{len(tests)}/{len(tests)} tests passed" in page
    assert "<table" in page  # the Markdown tables became HTML tables
    codes = re.findall(r"<code>(.*?)</code>", page, re.S)
    assert codes and all(c.strip() for c in codes)  # inline code keeps its text (statements, expectations)
    assert re.search(r"Attempted: <code>SELECT ", page)


# --- the summary follows the data ------------------------------------------------------------------


def test_markup_in_a_test_name_and_in_the_data_shows_as_text(tampered: Run) -> None:
    names = [t["name"] for t in _tests(tampered)]
    assert MARKUP in names  # the record keeps the name as written
    data = next(t for t in _tests(tampered) if t["name"].startswith("A lead whose name"))
    assert data["outcome"] == "passed" and data["observed"] == MARKUP
    # the name (results and table), the expected and the read value: an HTML entity in the page, a Markdown
    # backslash escape in summary.md (no HTML in it)
    for page, escaped in ((tampered.html, ESCAPED), (tampered.md, markdown.text(MARKUP))):
        assert MARKUP not in page
        assert page.count(escaped) >= 3, escaped
    # the audit copies of the executed notebooks escape it too
    for audit in tampered.run_dir.glob("*.html"):
        assert MARKUP not in audit.read_text(encoding="utf-8"), audit.name
    assert "<script" not in tampered.html.lower()


def test_a_failing_test_turns_the_summary_to_failed(completed: Run, tampered: Run) -> None:
    assert tampered.code != 0
    assert "runbook: validate failed" in tampered.err
    assert "'Lead count, expected wrong on purpose' expected 999999, got" in tampered.err
    tests, baseline = _tests(tampered), _tests(completed)
    passed = sum(t["outcome"] == "passed" for t in tests)
    assert (passed, len(tests)) == (len(baseline) + 2, len(baseline) + 3)
    md = tampered.md
    assert md.startswith("# Batch 7 Migration Summary: FAILED\n") and "| Status | FAILED |" in md
    percent = f"{100 * passed / len(tests):.1f}".rstrip("0").rstrip(".")
    assert f"**Overall**: {passed}/{len(tests)} tests passed ({percent}%; " in md
    assert re.search(r"^\| \d+ \| Lead count, expected wrong on purpose \| declared \| FAIL \|$", md, re.M)
    wrong = _section(md, "Validation Results").split("**Test ")[-1]
    leads = next(t for t in tests if t["name"].startswith("Lead count"))["observed"]
    assert "- Expected: 999999" in wrong and f"- Result: FAIL: {leads}" in wrong
    assert f"{passed}/{len(tests)} tests passed" in tampered.html
    assert f"{len(baseline)}/{len(baseline)} tests passed" not in md


# --- re-rendering from the records alone ------------------------------------------------------------


def test_report_rerenders_from_the_records_without_a_database(
    completed: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / completed.run_dir.name
    copy.mkdir()
    for record in completed.run_dir.glob("*.json"):
        shutil.copy(record, copy)
    copied = {p.name for p in copy.iterdir()}
    assert {"apply.json", "preflight.json", "validate.json"} <= copied and all(n.endswith(".json") for n in copied)
    monkeypatch.setenv(
        "DATABASE_URL",
        conninfo.make_conninfo(host="127.0.0.1", port="1", dbname="nowhere", user="nobody", password="pw"),
    )  # unreachable

    code = main(["report", str(copy)])
    out, err = capsys.readouterr()

    assert code == 0, err
    assert f"summary: {copy / 'summary.html'}" in out
    assert (copy / "summary.md").read_text(encoding="utf-8") == completed.md
    page = (copy / "summary.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "load_for_notebook" not in page
    assert "COMPLETED" in page


def test_report_rerenders_a_run_recorded_with_schema_1(
    completed: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run folder of an earlier runbook (record schema 1: a test's `outcome` its text, `passed` a bool)."""
    copy = tmp_path / completed.run_dir.name
    copy.mkdir()
    for record in completed.run_dir.glob("*.json"):
        data = json.loads(record.read_text(encoding="utf-8"))
        for key in ("tests", "gates", "verification"):
            for test in data.get(key) or []:
                test["passed"] = test.pop("outcome") == "passed"
                test["outcome"] = test.pop("observed")
                test.pop("reason", None)
        (copy / record.name).write_text(json.dumps({**data, "schema_version": 1}), encoding="utf-8")

    code = main(["report", str(copy)])
    _, err = capsys.readouterr()

    assert code == 0, err
    assert (copy / "summary.md").read_text(encoding="utf-8") == completed.md


def test_report_of_a_folder_without_records_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["report", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code != 0
    assert err.startswith(f"runbook: {tmp_path} holds no phase record") and err.strip().endswith(".")
    assert list(tmp_path.iterdir()) == []


def test_timeline_chart_is_an_image_in_both_reports_with_each_bar_marked_by_its_lock(completed: Run) -> None:
    from runbook_lib.report import chart
    from runbook_lib.report.records import ExecutionResult, from_json

    inline = re.search(r"<svg\b.*?</svg>", completed.html, re.S)  # inline: the file stands alone
    assert inline and "statements and the locks they took" in inline.group(0)
    linked = re.search(r"!\[svg\]\((summary_files/[^)]+\.svg)\)", completed.md)
    assert linked and (completed.run_dir / linked.group(1)).read_text(encoding="utf-8").startswith("<svg")
    applied = from_json(ExecutionResult, (completed.run_dir / "apply.json").read_text(encoding="utf-8"))
    labels = [label for _, _, _, label in chart.bars(applied)]
    assert len(labels) == len(applied.statements)
    set_not_null = [label for label in labels if "SET NOT NULL" in label]
    assert set_not_null and all("ACCESS EXCLUSIVE" in label for label in set_not_null)
    # each bar's label is text in the chart itself, so the report is searchable for it
    drawn = re.findall(r"<text[^>]*>([^<]*)</text>", inline.group(0))
    assert all(html.escape(label, quote=False) in drawn for label in labels)


def test_a_backfills_summary_says_the_rows_it_changed(completed: Run, capsys: pytest.CaptureFixture[str]) -> None:
    """Batch 6 adds only a backup table to the catalog: its summary says what it did to the data, measured."""
    from runbook_lib.report import records

    [setup] = (completed.run_dir.parents[2] / "setup").rglob("apply.json")
    assert main(["report", str(setup.parent)]) == 0
    capsys.readouterr()
    whole = (setup.parent / "summary.md").read_text(encoding="utf-8")
    # the batch's README.md as its author wrote it: plain Markdown, its `customer_id` a code span
    assert "Batch 7 makes `customer_id` NOT NULL" in _section(whole, "What Was Done")
    assert "<code>" not in whole and "&#" not in whole
    text = _section(whole, "Changes Applied")
    rows = records.RunFolder.open(setup.parent).read("apply", records.ExecutionResult).row_changes()
    assert any(re.fullmatch(r"[1-9][\d,]* inserted into Customer \(statement \d+\)", r) for r in rows), rows
    assert any(re.fullmatch(r"[1-9][\d,]* updated in Lead \(statement \d+\)", r) for r in rows), rows
    assert "Rows changed (measured: each statement's row count):\n\n" + "\n".join(f"- {r}" for r in rows) in text


def test_batch_7_summary_has_what_the_reference_has_measured(completed: Run) -> None:
    """Issue 34's "done when": models before and after, application impact, client regeneration (stated: no
    --prisma-generate here), the different-customer test, the README's sections, X/Y without duplicates."""
    md, page = completed.md, completed.html
    prisma = _section(md, "Prisma Schema Updates")
    assert "### Lead Model" in prisma and "### Job Model" in prisma
    assert 'customerId String?   @map("customer_id")' in prisma  # before, from the catalog and schema.prisma
    assert "onDelete: Restrict) // changed: required (was optional); onDelete: Restrict (was SetNull)" in prisma
    assert "### Prisma Client Regeneration" in prisma and "Not run (--prisma-generate was not given)" in prisma
    assert "npx prisma generate" in prisma and "Generated Prisma Client" not in prisma  # no output not produced
    impact = _section(md, "Application Impact")
    assert "customerId: string | null;" in impact and "customerId: string;" in impact
    assert "P2003" in impact and "instead of setting their `customerId` to NULL" in impact
    allowed = _section(md, "Constraint Behavior")
    assert "UPDATE of Lead.customer_id to a different existing Customer accepted" in allowed
    assert "UPDATE of Job.customer_id to a different existing Customer accepted" in allowed
    for title in ("Benefits", "Lessons Learned", "Team Notes", "Next Steps"):
        assert "*The author's notes, from the batch's README.md:*" in _section(md, title)
    tests = _tests(completed)
    behaviours = [(t["name"].split(" (derived:")[0]) for t in tests]
    assert len(behaviours) == len(set(behaviours))
    assert not any("is NOT NULL (derived:" in t["name"] for t in tests)  # merged into the declared one
    merged = [t for t in tests if t.get("also_from")]
    assert merged and all(a.startswith("migration.sql line ") for t in merged for a in t["also_from"])
    assert f"{len(tests)}/{len(tests)} tests passed" in _section(md, "Summary")
    # the same in the HTML: the models in code blocks, the impact's types
    assert "customerId String?" in page and "<code>customerId: string | null</code>" in page
