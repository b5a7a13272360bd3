"""The run folder's records: each carries a schema version, and one this runbook cannot read is refused
in one sentence, by the library and by `runbook report`, with nothing rendered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runbook_lib.cli import main
from runbook_lib.errors import RecordError
from runbook_lib.report import records
from runbook_lib.report.records import SCHEMA_VERSION, PhaseRun, RunFolder, RunRecord


def _folder(tmp_path: Path) -> RunFolder:
    return RunFolder.create(tmp_path / "reports", "crm", 7, "20261125T000000Z-abcd")


def test_a_record_carries_the_schema_version_and_reads_back(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    record = RunRecord(
        7,
        folder.run_id,
        "postgresql://u@h/crm",
        records.now_iso(),
        [PhaseRun("preflight", "preflight.ipynb", 0.4, True)],
    )
    path = folder.write("run", record)
    assert json.loads(path.read_text(encoding="utf-8"))["schema_version"] == SCHEMA_VERSION
    assert folder.read("run", RunRecord) == record


def test_a_record_without_a_version_is_schema_1(tmp_path: Path) -> None:
    """Records written before versions existed have the shape of schema 1."""
    folder = _folder(tmp_path)
    folder.record_path("run").write_text(
        json.dumps({"batch": 7, "run_id": folder.run_id, "database": "", "started_at": "2026-01-01T00:00:00+00:00"})
    )
    assert folder.read("run", RunRecord).batch == 7


@pytest.mark.parametrize(
    "content, says",
    [
        (json.dumps({"schema_version": SCHEMA_VERSION + 1, "batch": 7}), f"record schema {SCHEMA_VERSION + 1}"),
        ("{not json", "is not a readable JSON record"),
        (json.dumps({"schema_version": SCHEMA_VERSION, "phase": "apply"}), "does not hold a RunRecord record"),
    ],
)
def test_an_unreadable_record_is_refused_in_one_sentence(tmp_path: Path, content: str, says: str) -> None:
    folder = _folder(tmp_path)
    folder.record_path("run").write_text(content, encoding="utf-8")
    with pytest.raises(RecordError) as caught:
        folder.read("run", RunRecord)
    message = str(caught.value)
    assert says in message and str(folder.record_path("run")) in message
    assert message.count(". ") == 0 and message.endswith("."), message  # one sentence


@pytest.mark.kernel
def test_runbook_report_refuses_a_folder_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = _folder(tmp_path)
    folder.record_path("preflight").write_text(json.dumps({"schema_version": 99, "verdict": {"status": "GO"}}))
    assert main(["report", str(folder.path)]) == 1
    _out, err = capsys.readouterr()
    assert err.startswith("runbook: ") and err.count("\n") == 1, err
    assert "record schema 99" in err and f"reads schema {SCHEMA_VERSION}" in err
    assert not (folder.path / "summary.html").exists() and not (folder.path / "summary.ipynb").exists()


def _as_schema_1(data: dict) -> dict:
    """A record as runbook wrote it before schema 2: each test's `outcome` the text, `passed` a bool."""
    for key in ("tests", "gates", "verification"):
        for test in data.get(key) or []:
            test["passed"] = test.pop("outcome") == "passed"
            test["outcome"] = test.pop("observed")
            test.pop("reason", None)
    return {**data, "schema_version": 1}


def test_a_schema_1_record_is_read_in_schema_2s_keys(tmp_path: Path) -> None:
    from runbook_lib.batch.blocks import BlockResult
    from runbook_lib.batch.model import BatchInfo
    from runbook_lib.db.connection import ConnectionFacts

    folder = _folder(tmp_path)
    tests = [
        BlockResult("Reject NULL", "INSERT ...", "error 23502", "error 23502: null value", "passed"),
        BlockResult("Count", "SELECT 1", "2", "1", "failed"),
    ]
    result = records.ValidationResult(
        BatchInfo(7, "007", "t", "x", "/nowhere", "c" * 64),
        ConnectionFacts("postgresql://u@h/crm", "18.0", 180000, "crm", "u", "a"),
        folder.run_id,
        records.now_iso(),
        0.1,
        tests,
    )
    old = _as_schema_1(json.loads(records.to_json(result)))
    assert set(old["tests"][0]) >= {"outcome", "passed"} and old["tests"][0]["outcome"] == "error 23502: null value"
    folder.record_path("validate").write_text(json.dumps(old), encoding="utf-8")

    read = folder.read("validate", records.ValidationResult)
    assert read.tests == tests and read.headline == "1/2 tests passed (50%; 2 declared, no derived tests)"
    raw = folder.read_data("validate")  # what --format json shows: schema 2's keys, the version as written
    assert raw["schema_version"] == 1 and "passed" not in raw["tests"][0]
    assert [(t["outcome"], t["observed"], t["reason"]) for t in raw["tests"]] == [
        ("passed", "error 23502: null value", ""),
        ("failed", "1", ""),
    ]
