"""Batches: the folder model (model), batch.toml (manifest), finding them (discovery), the checks they
declare expanded into tests (declared), SQL blocks with expectations (blocks), test rows built from
the catalog (rowbuilder).

The names a caller needs are here: `from runbook_lib import batch; batch.find(folder, 7)`.
"""

from runbook_lib.batch.discovery import Discovery, discover, find, load_folder, scan
from runbook_lib.batch.model import (
    CHECK_KINDS,
    MANIFEST,
    MIGRATION,
    PREFLIGHT,
    README,
    ROLLBACK,
    VALIDATION,
    Batch,
    BatchFile,
    BatchInfo,
    CheckConstraintCheck,
    Checks,
    ColumnRef,
    ColumnTypeCheck,
    ForeignKeyCheck,
    IndexCheck,
    TableRef,
    UniqueCheck,
    read_sql,
    sha256_file,
)

__all__ = [
    "CHECK_KINDS",
    "MANIFEST",
    "MIGRATION",
    "PREFLIGHT",
    "README",
    "ROLLBACK",
    "VALIDATION",
    "Batch",
    "BatchFile",
    "BatchInfo",
    "CheckConstraintCheck",
    "Checks",
    "ColumnRef",
    "ColumnTypeCheck",
    "Discovery",
    "ForeignKeyCheck",
    "IndexCheck",
    "TableRef",
    "UniqueCheck",
    "discover",
    "find",
    "load_folder",
    "read_sql",
    "scan",
    "sha256_file",
]
