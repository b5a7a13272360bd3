"""Where things live: the project root, the example, the embedded server's state and reports."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The checkout runbook runs from: the folder above runbook_lib when it holds pyproject.toml."""
    candidate = PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").exists():
        return candidate
    return Path.cwd()


def example_dir() -> Path:
    return project_root() / "examples" / "crm"


def example_migrations_dir() -> Path:
    return example_dir() / "migrations"


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def state_dir() -> Path:
    """Runtime state (embedded server data, lock files), outside the user's home; RUNBOOK_HOME moves it."""
    return Path(os.environ.get("RUNBOOK_HOME") or project_root() / ".runbook")


def default_reports_dir() -> Path:
    """reports/ in the project; RUNBOOK_REPORTS_DIR moves it (tests, CI)."""
    return Path(os.environ.get("RUNBOOK_REPORTS_DIR") or project_root() / "reports")
