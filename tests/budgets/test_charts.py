"""The console's SVG charts: bars scale to the largest value, labels are escaped, the
burn-down draws what remains and the ideal line."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from apps.budgets.charts import bar_chart, burndown_chart

SVG = "{http://www.w3.org/2000/svg}"


def test_bars_scale_to_the_largest_and_say_their_values() -> None:
    svg = bar_chart([("a", Decimal("2")), ("b", Decimal("0.5")), ("c", Decimal(0))], unit="USD")
    root = ET.fromstring(svg)  # noqa: S314 (our own output) well-formed
    widths = [float(r.get("width", "0")) for r in root.iter(f"{SVG}rect")]
    assert widths[0] > 0 and widths[1] == widths[0] / 4 and widths[2] == 0
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert titles == ["a: 2.00 USD", "b: 0.500000 USD", "c: 0.000000 USD"]
    assert "var(--primary" in svg  # the admin's colours, dark mode included


def test_labels_are_escaped() -> None:
    svg = bar_chart([("<script>alert(1)</script>", Decimal(1))], unit="tokens")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    ET.fromstring(svg)  # noqa: S314


def test_no_rows_is_said_not_drawn() -> None:
    assert "No usage" in bar_chart([], unit="USD")
    start = datetime(2025, 3, 1, tzinfo=UTC)
    assert "Nothing spent" in burndown_chart([], cap=Decimal(1), start=start, end=start)


def test_the_burndown_draws_what_remains_against_the_ideal_line() -> None:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    end = start + timedelta(days=1)
    points = [
        (start, Decimal(100)),
        (start + timedelta(hours=6), Decimal(40)),
        (start + timedelta(hours=12), Decimal(-20)),  # an overrun stays on the floor
    ]
    svg = burndown_chart(points, cap=Decimal(100), start=start, end=end, unit="tokens")
    root = ET.fromstring(svg)  # noqa: S314
    line = root.find(f"{SVG}polyline")
    assert line is not None
    xy = [tuple(map(float, p.split(","))) for p in line.get("points", "").split()]
    assert xy[0][1] < xy[1][1] < xy[2][1]  # going down
    assert xy[2][1] == xy[2][1] and xy[1][0] < xy[2][0] < 640 / 2 + 70
    floor = xy[2][1]
    assert floor == 200 - 24  # the plot's floor
    assert root.find(f"{SVG}line[@stroke-dasharray]") is not None
    assert re.search(r"<title>Burn-down: -20 of 100 left</title>", svg)
