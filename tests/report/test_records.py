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
    record = RunRecord(7, folder.run_id, "postgresql://u@h/crm", records.now_iso(),
                       [PhaseRun("preflight", "preflight.ipynb", 0.4, True)])
    path = folder.write("run", record)
    assert json.loads(path.read_text(encoding="utf-8"))["schema_version"] == SCHEMA_VERSION
    assert folder.read("run", RunRecord) == record


def test_a_record_without_a_version_is_schema_1(tmp_path: Path) -> None:
    """Records written before versions existed have the shape of schema 1."""
    folder = _folder(tmp_path)
    folder.record_path("run").write_text(json.dumps(
        {"batch": 7, "run_id": folder.run_id, "database": "", "started_at": "2026-01-01T00:00:00+00:00"}))
    assert folder.read("run", RunRecord).batch == 7


@pytest.mark.parametrize("content, says", [
    (json.dumps({"schema_version": SCHEMA_VERSION + 1, "batch": 7}), f"record schema {SCHEMA_VERSION + 1}"),
    ("{not json", "is not a readable JSON record"),
    (json.dumps({"schema_version": SCHEMA_VERSION, "phase": "apply"}), "does not hold a RunRecord record"),
])
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
    out, err = capsys.readouterr()
    assert err.startswith("runbook: ") and err.count("\n") == 1, err
    assert "record schema 99" in err and f"reads schema {SCHEMA_VERSION}" in err
    assert not (folder.path / "summary.html").exists() and not (folder.path / "summary.ipynb").exists()
