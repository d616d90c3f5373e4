"""Small server-rendered SVG charts for the risk pages: no script, readable without JavaScript.

Interval chart: one row per estimate, a dot at the value and a bar over its 95% interval on a
0-100% axis that says what it measures and which way is worse, with optional reference lines
(chance) across every row and marks (a policy's thresholds) on one row. Budget chart: the worst
value after each attack budget, with the baseline's interval as a band (drawn only when there
are at least two budgets: one budget is a point, not a curve).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 720
PLOT = 360
ROW = 30
MARK_LINE = 13  # the height of one threshold label above its row
CHAR = 7.0  # a generous average glyph width at 12px, so no text runs past the picture's edge


@dataclass(frozen=True, slots=True)
class Mark:
    """A line drawn on one row only (a policy threshold for that domain or safeguard)."""

    at: float
    label: str


@dataclass(frozen=True, slots=True)
class IntervalRow:
    label: str
    value: float
    low: float
    high: float
    note: str = ""
    tone: str = "accent"  # accent | bad | ok | warn
    marks: tuple[Mark, ...] = ()


@dataclass(frozen=True, slots=True)
class ReferenceLine:
    at: float
    label: str


def text_width(text: str, char: float = CHAR) -> float:
    return len(text) * char


def _value_text(row: IntervalRow) -> str:
    return f"{100 * row.value:.1f}%" + (f" {row.note}" if row.note else "")


def interval_chart(
    rows: Sequence[IntervalRow], lines: Sequence[ReferenceLine] = (), title: str = "", axis: str = ""
) -> str:
    """Rows of value and 95% interval on a 0-100% axis; `axis` says what the axis measures and which way is worse.

    The label and value columns are as wide as their longest text, so nothing is cut.
    """
    label_width = max(120.0, max((text_width(r.label) for r in rows), default=0.0) + 18)
    value_width = max(120.0, max((text_width(_value_text(r)) for r in rows), default=0.0) + 16)
    width = label_width + PLOT + value_width

    def x(fraction: float) -> float:
        return label_width + max(0.0, min(1.0, fraction)) * PLOT

    top = 24 + (MARK_LINE if lines else 0)
    heights = [ROW + MARK_LINE * len(row.marks) for row in rows] or [ROW]
    bottom = top + sum(heights)
    height = bottom + 22 + (18 if axis else 0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width:.0f} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        tx = x(tick)
        parts.append(f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{bottom}" class="grid"/>')
        parts.append(
            f'<text x="{tx:.1f}" y="{bottom + 16}" class="tick" text-anchor="middle">{int(tick * 100)}%</text>'
        )
    if axis:
        parts.append(
            f'<text x="{x(0.5):.1f}" y="{bottom + 34}" class="axis" text-anchor="middle">{escape(axis)}</text>'
        )
    for line in lines:
        lx = x(line.at)
        parts.append(f'<line x1="{lx:.1f}" y1="{top - 10}" x2="{lx:.1f}" y2="{bottom}" class="ref"/>')
        parts.append(f'<text x="{lx + 3:.1f}" y="{top - 12}" class="ref-label">{escape(line.label)}</text>')
    row_top = float(top)
    for row, row_height in zip(rows, heights, strict=False):
        y = row_top + row_height - ROW / 2
        for index, mark in enumerate(sorted(row.marks, key=lambda m: m.at)):
            mx = x(mark.at)
            label_y = row_top + MARK_LINE * (index + 1) - 3
            anchor = "end" if mark.at > 0.6 else "start"
            shift = -3 if anchor == "end" else 3
            parts.append(
                f'<line x1="{mx:.1f}" y1="{label_y - 8:.1f}" x2="{mx:.1f}" y2="{y + ROW / 2 - 3:.1f}" '
                'class="threshold"/>'
            )
            parts.append(
                f'<text x="{mx + shift:.1f}" y="{label_y:.1f}" class="threshold-label" '
                f'text-anchor="{anchor}">{escape(mark.label)}</text>'
            )
        parts.append(
            f'<text x="{label_width - 10:.1f}" y="{y + 4:.1f}" class="label" text-anchor="end">'
            f"{escape(row.label)}</text>"
        )
        parts.append(
            f'<line x1="{x(row.low):.1f}" y1="{y:.1f}" x2="{x(row.high):.1f}" y2="{y:.1f}" class="ci {row.tone}"/>'
        )
        parts.append(f'<circle cx="{x(row.value):.1f}" cy="{y:.1f}" r="5" class="dot {row.tone}"/>')
        parts.append(
            f'<text x="{label_width + PLOT + 8:.1f}" y="{y + 4:.1f}" class="value">{escape(_value_text(row))}</text>'
        )
        row_top += row_height
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class BudgetSeries:
    label: str
    points: Sequence[tuple[int, float]]  # (steps, worst value)
    baseline_low: float
    baseline_high: float
    tone: str


def budget_chart(series: Sequence[BudgetSeries], title: str) -> str:
    """Worst value against fine-tuning steps, per suite; the shaded band is the pre-attack 95% CI."""
    height, left, right, top, bottom = 260, 60, WIDTH - 250, 20, 220
    steps = sorted({s for one in series for s, _ in one.points}) or [0]
    span = max(1, len(steps) - 1)

    def sx(step: int) -> float:
        return left + (steps.index(step) / span) * (right - left) if len(steps) > 1 else (left + right) / 2

    def sy(value: float) -> float:
        return bottom - max(0.0, min(1.0, value)) * (bottom - top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = sy(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" class="tick" text-anchor="end">{int(tick * 100)}%</text>')
    for step in steps:
        parts.append(f'<text x="{sx(step):.1f}" y="{bottom + 18}" class="tick" text-anchor="middle">{step}</text>')
    parts.append(
        f'<text x="{(left + right) / 2:.1f}" y="{bottom + 36}" class="tick" text-anchor="middle">'
        "fine-tuning steps (attack budget)</text>"
    )
    for index, one in enumerate(series):
        parts.append(
            f'<rect x="{left}" y="{sy(one.baseline_high):.1f}" width="{right - left}" '
            f'height="{max(1.0, sy(one.baseline_low) - sy(one.baseline_high)):.1f}" class="band {one.tone}"/>'
        )
        points = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in sorted(one.points))
        parts.append(f'<polyline points="{points}" class="series {one.tone}"/>')
        for s, v in one.points:
            parts.append(f'<circle cx="{sx(s):.1f}" cy="{sy(v):.1f}" r="4" class="dot {one.tone}"/>')
        legend_y = top + 18 * index + 6
        parts.append(f'<circle cx="{right + 16}" cy="{legend_y}" r="5" class="dot {one.tone}"/>')
        parts.append(f'<text x="{right + 26}" y="{legend_y + 4}" class="label">{escape(one.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
