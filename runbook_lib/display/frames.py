"""DataFrames for notebooks and reports, built from lists of result dataclasses."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the annotations' DataFrame (start-up time: pandas loads when a table is built)
    import pandas as pd


def frame(items: Iterable[Any], columns: Sequence[str] | None = None, *, empty: str = "none") -> pd.DataFrame:
    """One row per dataclass (or dict), the named columns in order; an empty list shows one line saying so."""
    import pandas as pd  # start-up time: pandas loads when a table is built, not with the command

    rows = []
    for item in items:
        # an instance (is_dataclass is true of a dataclass's class too, which is never listed here)
        data = dataclasses.asdict(item) if dataclasses.is_dataclass(item) and not isinstance(item, type) else dict(item)
        if columns:
            data = {c: _get(item, data, c) for c in columns}
        rows.append(data)
    if not rows:
        return pd.DataFrame({(columns or ["result"])[0]: [empty]})
    return pd.DataFrame(rows, columns=list(columns) if columns else None)


def _get(item: Any, data: dict, column: str) -> Any:
    if column in data:
        return data[column]
    value = getattr(item, column, None)
    return value
