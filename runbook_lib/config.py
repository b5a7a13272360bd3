"""Where things live: the project root, the example, the notebooks, the embedded server's state and reports.

Two ways to run, decided in one place (`checkout()`):

- from a checkout (the folder above runbook_lib holds pyproject.toml and notebooks/; `pip install -e .`
  too): the notebooks are notebooks/, the example examples/crm/, run folders go to reports/ and the
  embedded server's state to .runbook/, all in the checkout;
- from an installed wheel: the notebooks and the example are the copies the wheel carries inside the
  package (runbook_lib/notebook/ipynb, runbook_lib/db/example_crm: pyproject's package-dir maps them onto
  those same two folders at build time), run folders go to ./reports and the state to ./.runbook of the
  current directory.

RUNBOOK_REPORTS_DIR and RUNBOOK_HOME move the reports and the state in both cases.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

#: Inside an installed package: the data-only subpackages pyproject.toml maps onto notebooks/ and examples/crm/.
PACKAGED_NOTEBOOKS = PACKAGE_DIR / "notebook" / "ipynb"
PACKAGED_EXAMPLE = PACKAGE_DIR / "db" / "example_crm"


def checkout() -> Path | None:
    """The checkout runbook_lib belongs to (pyproject.toml and notebooks/ next to it), None when installed."""
    candidate = PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").is_file() and (candidate / "notebooks").is_dir():
        return candidate
    return None


def project_root() -> Path:
    """The checkout; for an installed package, the current directory (its reports/ and .runbook/ go there)."""
    return checkout() or Path.cwd()


def example_dir() -> Path:
    root = checkout()
    return root / "examples" / "crm" if root else PACKAGED_EXAMPLE


def example_migrations_dir() -> Path:
    return example_dir() / "migrations"


def notebooks_dir() -> Path:
    root = checkout()
    return root / "notebooks" if root else PACKAGED_NOTEBOOKS


def state_dir() -> Path:
    """Runtime state (embedded server data, lock files), outside the user's home; RUNBOOK_HOME moves it."""
    return Path(os.environ.get("RUNBOOK_HOME") or project_root() / ".runbook")


def default_reports_dir() -> Path:
    """reports/ in the project (the current directory for an installed package); RUNBOOK_REPORTS_DIR moves it."""
    return Path(os.environ.get("RUNBOOK_REPORTS_DIR") or project_root() / "reports")
