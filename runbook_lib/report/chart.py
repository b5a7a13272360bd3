"""The timeline chart: each statement a bar on a time axis, coloured by whether its lock blocks writes.

Drawn as SVG by hand rather than with matplotlib: a handful of rectangles and labels, and importing
matplotlib cost a third of a second of every `runbook run`. The labels stay text: searchable in the
report, sharp at any zoom, readable by a screen reader.
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

from runbook_lib import names
from runbook_lib.sql import locks

if TYPE_CHECKING:  # for the annotations alone: summary, which draws the chart, has imported records already
    from runbook_lib.report.records import ExecutionResult

WIDTH = 960
PLOT_LEFT, PLOT_WIDTH = 20, 520  # the bars; their labels run on to the right
ROW, TOP, BOTTOM = 22, 44, 58
BLOCKING, FAILED, HARMLESS = "#e67e22", "#c0392b", "#27ae60"


def _strongest(text: str) -> str:
    modes = [part.split(" on ")[0] for part in text.split(", ") if " on " in part]
    modes = [m for m in modes if m in locks.LOCK_MODES]
    return locks.strongest(modes) if modes else "no new lock"


def bars(apply_result: ExecutionResult) -> list[tuple[float, float, str, str]]:
    """Each statement's bar: start and width in ms, colour, and its label with the lock mode it held."""
    result = []
    for run in apply_result.statements:
        mode = _strongest(run.locks)
        if mode == "no new lock" and run.expected_locks:
            mode = _strongest(run.expected_locks) + ", already held"
        base = mode.split(",")[0]
        blocking = base in locks.LOCK_MODES and locks.blocks_writes(base)
        colour = FAILED if run.status != "ok" else (BLOCKING if blocking else HARMLESS)
        label = f"#{run.index} {run.kind} [{mode}]" + ("" if run.status == names.OK else f" {run.status}")
        result.append((run.started_offset_s * 1000, max(run.duration_s * 1000, 0.05), colour, label))
    return result


def _ticks(span_ms: float) -> list[float]:
    """About five round steps (1, 2 or 5 times a power of ten) from 0 to at least the end."""
    raw = max(span_ms, 1e-3) / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    count = math.ceil(span_ms / step - 1e-9)
    return [round(i * step, 6) for i in range(max(count, 1) + 1)]


def timeline_svg(apply_result: ExecutionResult) -> str:
    drawn = bars(apply_result)
    span = max((left + width for left, width, _, _ in drawn), default=1.0)
    ticks = _ticks(span)
    scale = PLOT_WIDTH / ticks[-1]
    height = TOP + ROW * len(drawn) + BOTTOM
    # wide enough for the longest label after its bar (about 7 px per character at 12 px)
    canvas = round(max([WIDTH] + [PLOT_LEFT + (left + w) * scale + 16 + 7 * len(label) for left, w, _, label in drawn]))
    title = f"Batch {apply_result.batch.number}: statements and the locks they took (measured)"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{canvas}" height="{height}" viewBox="0 0 {canvas} {height}" '
        f'role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title, quote=False)}</title>",
        f'<text x="{canvas / 2}" y="22" text-anchor="middle" font-size="14">{escape(title, quote=False)}</text>',
    ]
    axis_y = TOP + ROW * len(drawn) + 4
    for tick in ticks:
        x = PLOT_LEFT + tick * scale
        parts.append(f'<line x1="{x:.1f}" y1="{TOP - 4}" x2="{x:.1f}" y2="{axis_y}" stroke="#ddd"/>')
        parts.append(f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle" fill="#444">{tick:g}</text>')
    for row, (left, width, colour, label) in enumerate(drawn):
        x, y, w = PLOT_LEFT + left * scale, TOP + row * ROW, max(width * scale, 1.0)
        parts.append(
            f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{ROW - 6}" fill="{colour}">'
            f"<title>{escape(label, quote=False)}: {left:.1f} ms to {left + width:.1f} ms</title></rect>"
        )
        parts.append(f'<text x="{x + w + 6:.1f}" y="{y + ROW / 2 + 4}">{escape(label, quote=False)}</text>')
    parts.append(f'<line x1="{PLOT_LEFT}" y1="{axis_y}" x2="{PLOT_LEFT + PLOT_WIDTH}" y2="{axis_y}" stroke="#444"/>')
    parts.append(
        f'<text x="{PLOT_LEFT}" y="{height - 10}" fill="#444">ms since T+0, when apply began its steps '
        "(orange: lock blocks writes; red: failed or timed out)</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts)
