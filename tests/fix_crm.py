"""Fixtures around the example CRM: its migrations as a copy a test may break, and batches applied."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runbook_lib import config
from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    """A copy of the example's migrations folder (batches 6 and 7), for a test to change."""
    target = tmp_path / "migrations"
    shutil.copytree(config.example_migrations_dir(), target)
    return target


@pytest.fixture
def after_7(crm_url: str, tmp_path: Path) -> str:
    """The example database with batches 6 and 7 applied; its URL."""
    for number in (6, 7):
        apply.run(
            open_session(
                number,
                database_url=crm_url,
                reports_dir=tmp_path / "setup",
                migrations_dir=config.example_migrations_dir(),
            )
        )
    return crm_url
