"""The timeline chart as SVG: well-formed, every label text in it (escaped), the time axis round."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from types import SimpleNamespace

from runbook_lib.report import chart
from runbook_lib.report.records import StatementRun

SVG = "{http://www.w3.org/2000/svg}"


def statement(index: int, kind: str, start: float, duration: float, locks: str, status: str = "ok") -> StatementRun:
    return StatementRun(index, index + 1, kind, "", 1, start, duration, 0, status, locks)


def test_chart_is_well_formed_svg_with_each_label_as_text_and_hostile_text_escaped() -> None:
    result = SimpleNamespace(
        batch=SimpleNamespace(number=7),
        statements=[
            statement(1, "ALTER TABLE … SET NOT NULL", 0.0, 0.004, "ACCESS EXCLUSIVE on Lead"),
            statement(
                2, "CREATE INDEX CONCURRENTLY <script>alert(1)</script>", 0.004, 0.0021, "SHARE UPDATE EXCLUSIVE on Job"
            ),
            statement(3, "UPDATE & friends", 0.0061, 0.010, "ROW EXCLUSIVE on Job", status="lock timeout"),
        ],
    )
    svg = chart.timeline_svg(result)

    root = ET.fromstring(svg)  # parses: every label was escaped
    texts = [t.text for t in root.iter(f"{SVG}text")]
    for _, _, _, label in chart.bars(result):
        assert label in texts
    assert "<script>" not in svg
    colours = [r.get("fill") for r in root.iter(f"{SVG}rect")]
    assert colours == [chart.BLOCKING, chart.HARMLESS, chart.FAILED]
    assert any("ACCESS EXCLUSIVE" in t for t in texts if t)


def test_axis_ticks_are_round_and_reach_past_the_last_bar() -> None:
    assert chart._ticks(12) == [0, 5, 10, 15]
    assert chart._ticks(4.7) == [0, 1, 2, 3, 4, 5]
    assert chart._ticks(0.3) == [0, 0.1, 0.2, 0.3]
    for span in (0.05, 1, 7.3, 999, 2500):
        ticks = chart._ticks(span)
        assert ticks[0] == 0 and ticks[-1] >= span and 3 <= len(ticks) <= 7
