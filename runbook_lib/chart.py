"""The timeline chart: each statement a bar on a time axis, coloured by whether its lock blocks writes."""

from __future__ import annotations

import io

from . import locks


def _strongest(text: str) -> str:
    modes = [part.split(" on ")[0] for part in text.split(", ") if " on " in part]
    modes = [m for m in modes if m in locks.LOCK_MODES]
    return locks.strongest(modes) if modes else "no new lock"


def bars(apply_result) -> list[tuple[float, float, str, str]]:
    """Each statement's bar: start and width in ms, colour, and its label with the lock mode it held."""
    result = []
    for run in apply_result.statements:
        mode = _strongest(run.locks)
        if mode == "no new lock" and run.expected_locks:
            mode = _strongest(run.expected_locks) + ", already held"
        base = mode.split(",")[0]
        blocking = base in locks.LOCK_MODES and locks.blocks_writes(base)
        colour = "#c0392b" if run.status != "ok" else ("#e67e22" if blocking else "#27ae60")
        label = f"#{run.index} {run.kind} [{mode}]" + ("" if run.status == "ok" else f" {run.status}")
        result.append((run.started_offset_s * 1000, max(run.duration_s * 1000, 0.05), colour, label))
    return result


def timeline_png(apply_result) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    drawn = bars(apply_result)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.35 * len(drawn)), dpi=100)
    for row, (left, width, colour, label) in enumerate(drawn):
        ax.barh(row, width, left=left, color=colour, height=0.6)
        ax.text(left + width, row, "  " + label, va="center", fontsize=8)
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.set_xlabel("ms since the first statement (orange: lock blocks writes; red: failed or timed out)")
    ax.set_title(f"Batch {apply_result.batch.number}: statements and the locks they took (measured)")
    ax.margins(x=0.6)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
