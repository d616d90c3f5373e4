"""Small server-rendered SVG charts for the risk pages: no script, readable without JavaScript.

Interval chart: one row per estimate, a dot at the value and a bar over its 95% interval on a
0-100% axis, with optional reference lines (chance, thresholds). Budget chart: the worst value
after each attack budget, with the baseline's interval as a band.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 720
LABEL_WIDTH = 170
ROW = 30
PLOT = WIDTH - LABEL_WIDTH - 210


@dataclass(frozen=True, slots=True)
class IntervalRow:
    label: str
    value: float
    low: float
    high: float
    note: str = ""
    tone: str = "accent"  # accent | bad | ok | warn


@dataclass(frozen=True, slots=True)
class ReferenceLine:
    at: float
    label: str


def _x(fraction: float) -> float:
    return LABEL_WIDTH + max(0.0, min(1.0, fraction)) * PLOT


def interval_chart(rows: Sequence[IntervalRow], lines: Sequence[ReferenceLine] = (), title: str = "") -> str:
    height = 34 + ROW * max(1, len(rows)) + 22
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    top = 24
    bottom = top + ROW * max(1, len(rows))
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = _x(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{bottom}" class="grid"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 16}" class="tick" text-anchor="middle">{int(tick * 100)}%</text>')
    for line in lines:
        x = _x(line.at)
        parts.append(f'<line x1="{x:.1f}" y1="{top - 10}" x2="{x:.1f}" y2="{bottom}" class="ref"/>')
        parts.append(f'<text x="{x + 3:.1f}" y="{top - 12}" class="ref-label">{escape(line.label)}</text>')
    for index, row in enumerate(rows):
        y = top + ROW * index + ROW / 2
        parts.append(
            f'<text x="{LABEL_WIDTH - 10}" y="{y + 4:.1f}" class="label" text-anchor="end">{escape(row.label)}</text>'
        )
        parts.append(
            f'<line x1="{_x(row.low):.1f}" y1="{y:.1f}" x2="{_x(row.high):.1f}" y2="{y:.1f}" class="ci {row.tone}"/>'
        )
        parts.append(f'<circle cx="{_x(row.value):.1f}" cy="{y:.1f}" r="5" class="dot {row.tone}"/>')
        text = f"{100 * row.value:.1f}%" + (f" {row.note}" if row.note else "")
        parts.append(f'<text x="{LABEL_WIDTH + PLOT + 8}" y="{y + 4:.1f}" class="value">{escape(text)}</text>')
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
