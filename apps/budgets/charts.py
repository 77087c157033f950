"""Charts for the console as inline SVG, rendered on the server: no JavaScript, no chart
library, nothing fetched from a CDN. Colours are the admin's CSS variables, so dark mode
works. Every label and value is escaped; each bar and point carries a `<title>` (a tooltip,
and what a screen reader reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from html import escape

_FONT = 'font-family="inherit" font-size="11"'
_TEXT = 'style="fill: var(--body-fg, #333)"'
_QUIET = 'style="fill: var(--body-quiet-color, #666)"'
_BAR = 'style="fill: var(--primary, #79aec8)"'
_AXIS = 'style="stroke: var(--border-color, #ccc)"'


def format_value(value: Decimal, unit: str) -> str:
    if unit == "tokens":
        return f"{int(value):,}"
    places = 2 if abs(value) >= 1 else 6
    return f"{value:,.{places}f} {unit}".rstrip()


def _empty(width: int, message: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="24" role="img" '
        f'aria-label="{escape(message)}"><text x="0" y="16" {_FONT} {_QUIET}>'
        f"{escape(message)}</text></svg>"
    )


def bar_chart(
    rows: Sequence[tuple[str, Decimal]], *, unit: str, width: int = 640, bar_h: int = 18
) -> str:
    """Horizontal bars, one per (label, value), longest = the largest value."""
    if not rows:
        return _empty(width, "No usage in this window.")
    label_w, value_w, gap = 170, 120, 4
    room = max(width - label_w - value_w, 10)
    top = max((max(value, Decimal(0)) for _, value in rows), default=Decimal(0))
    height = len(rows) * (bar_h + gap)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" class="budget-chart">'
    ]
    for i, (label, value) in enumerate(rows):
        y = i * (bar_h + gap)
        length = 0.0 if top <= 0 else float(max(value, Decimal(0)) / top) * room
        shown = format_value(value, unit)
        name = label if len(label) <= 28 else label[:27] + "…"
        parts.append(
            f"<g><title>{escape(label)}: {escape(shown)}</title>"
            f'<text x="{label_w - 6}" y="{y + bar_h - 5}" text-anchor="end" {_FONT} {_TEXT}>'
            f"{escape(name)}</text>"
            f'<rect x="{label_w}" y="{y}" width="{length:.1f}" height="{bar_h}" {_BAR}/>'
            f'<text x="{label_w + length + 4:.1f}" y="{y + bar_h - 5}" {_FONT} {_QUIET}>'
            f"{escape(shown)}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def burndown_chart(
    points: Sequence[tuple[datetime, Decimal]],
    *,
    cap: Decimal,
    start: datetime,
    end: datetime,
    unit: str = "",
    width: int = 640,
    height: int = 200,
) -> str:
    """What remains of `cap` over [start, end): a polyline of `points` (time, remaining), a
    dashed ideal line from the cap at `start` to 0 at `end`, and ticks at both ends. Below
    zero (an overrun) is drawn at the floor and said in the point's title."""
    if not points or cap <= 0 or end <= start:
        return _empty(width, "Nothing spent in this window yet.")
    left, right, top, bottom = 70, 10, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    span = (end - start).total_seconds()

    def x(at: datetime) -> float:
        share = min(max((at - start).total_seconds() / span, 0.0), 1.0)
        return left + share * plot_w

    def y(value: Decimal) -> float:
        share = min(max(float(value / cap), 0.0), 1.0)
        return top + (1 - share) * plot_h

    coords = " ".join(f"{x(at):.1f},{y(value):.1f}" for at, value in points)
    dots = "".join(
        f'<circle cx="{x(at):.1f}" cy="{y(value):.1f}" r="2.5" {_BAR}>'
        f"<title>{escape(at.strftime('%Y-%m-%d %H:%M UTC'))}: "
        f"{escape(format_value(value, unit))} left</title></circle>"
        for at, value in points
    )
    floor, ceiling = top + plot_h, top
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" class="budget-burndown">'
        f"<title>Burn-down: {escape(format_value(points[-1][1], unit))} of "
        f"{escape(format_value(cap, unit))} left</title>"
        f'<line x1="{left}" y1="{floor}" x2="{left + plot_w}" y2="{floor}" {_AXIS}/>'
        f'<line x1="{left}" y1="{ceiling}" x2="{left}" y2="{floor}" {_AXIS}/>'
        f'<text x="{left - 6}" y="{ceiling + 8}" text-anchor="end" {_FONT} {_QUIET}>'
        f"{escape(format_value(cap, unit))}</text>"
        f'<text x="{left - 6}" y="{floor}" text-anchor="end" {_FONT} {_QUIET}>0</text>'
        f'<text x="{left}" y="{height - 6}" {_FONT} {_QUIET}>'
        f"{escape(start.strftime('%Y-%m-%d %H:%M'))}</text>"
        f'<text x="{left + plot_w}" y="{height - 6}" text-anchor="end" {_FONT} {_QUIET}>'
        f"{escape(end.strftime('%Y-%m-%d %H:%M'))}</text>"
        f'<line x1="{left}" y1="{ceiling}" x2="{left + plot_w}" y2="{floor}" '
        f'stroke-dasharray="4 4" {_AXIS}><title>Even spending to the end</title></line>'
        f'<polyline points="{coords}" fill="none" stroke-width="2" '
        f'style="stroke: var(--primary, #79aec8)"/>{dots}</svg>'
    )
