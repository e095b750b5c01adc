"""Chart geometry for server-rendered SVG (pure): the templates draw what these return.

Every chart is drawn in a fixed viewBox that scales to its container's width, with few,
large labels so a phone can read it; the numbers are in a table beside each chart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

from .hours import WEEKDAYS
from .report import SOURCE_LABELS

WIDTH = 480
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 10, 26
SOURCE_COLOURS = {"dm": "#3b5bdb", "post": "#c13584", "ad": "#b7791f", "story": "#833ab4", "comment": "#1f8a4c"}
MEDIAN_COLOUR, P90_COLOUR = "#3b5bdb", "#c13584"


@dataclass
class Chart:
    width: int
    height: int
    ticks: list[dict] = field(default_factory=list)
    xlabels: list[dict] = field(default_factory=list)
    bars: list[dict] = field(default_factory=list)
    lines: list[dict] = field(default_factory=list)
    cells: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    empty: bool = False


def nice_max(value: float) -> tuple[float, float]:
    """(axis top, step) with 4-5 round steps covering value."""
    if value <= 0:
        return 1, 1
    raw = value / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return step * math.ceil(value / step), step


def _day_labels(days: list[date], x_of) -> list[dict]:
    n = len(days)
    every = 1 if n <= 7 else 7 if n <= 62 else 14 if n <= 120 else 30
    return [{"x": x_of(i), "label": f"{d.day} {d:%b}" if n > 7 else f"{d:%a} {d.day}"}
            for i, d in enumerate(days) if i % every == 0]


def stacked_bars(days: list[date], series: list[tuple[str, str]], values: dict[date, dict[str, int]],
                 height: int = 220) -> Chart:
    """One bar per day, a segment per series key (key, label), coloured by SOURCE_COLOURS."""
    totals = [sum(values.get(d, {}).values()) for d in days]
    top, step = nice_max(max(totals, default=0))
    chart = Chart(WIDTH, height, empty=not any(totals))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, height - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)

    def y(v: float) -> float:
        return TOP + plot_h - v / top * plot_h

    chart.ticks = [{"y": round(y(v), 1), "label": _num(v)} for v in _steps(top, step)]
    for i, d in enumerate(days):
        base = 0
        segments = []
        for key, label in series:
            n = values.get(d, {}).get(key, 0)
            if n:
                segments.append({"y": round(y(base + n), 1), "h": round(n / top * plot_h, 1),
                                 "colour": SOURCE_COLOURS.get(key, "#687386"), "title": f"{d.isoformat()}: {n} {label}"})
                base += n
        chart.bars.append({"x": round(LEFT + i * slot + slot * .12, 1), "w": round(max(slot * .76, 1), 1),
                           "segments": segments})
    chart.xlabels = _day_labels(days, lambda i: round(LEFT + (i + .5) * slot, 1))
    return chart


def line_chart(days: list[date], series: list[tuple[str, str, list[float | None]]], height: int = 220,
               unit: float = 60) -> Chart:
    """Lines over days (values divided by unit for the axis); a gap where a day has no value."""
    values = [v / unit for _, _, vs in series for v in vs if v is not None]
    top, step = nice_max(max(values, default=0))
    chart = Chart(WIDTH, height, empty=not values)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, height - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return round(LEFT + (i + .5) * slot, 1), round(TOP + plot_h - v / top * plot_h, 1)

    chart.ticks = [{"y": xy(0, v)[1], "label": _num(v)} for v in _steps(top, step)]
    for label, colour, vs in series:
        runs, run, dots = [], [], []
        for i, v in enumerate(vs):
            if v is None:
                if run:
                    runs.append(run)
                run = []
                continue
            point = xy(i, v / unit)
            run.append(point)
            dots.append({"x": point[0], "y": point[1], "title": f"{days[i].isoformat()}: {label} {_num(v / unit)} min"})
        if run:
            runs.append(run)
        chart.lines.append({"label": label, "colour": colour, "dots": dots,
                            "paths": [" ".join(f"{x},{y}" for x, y in r) for r in runs if len(r) > 1]})
    chart.xlabels = _day_labels(days, lambda i: xy(i, 0)[0])
    return chart


def heatmap(grid: list[list[int]]) -> Chart:
    """7 rows (Monday first) × 24 hours; darker is busier."""
    left, cell_w, cell_h, top = 34, (WIDTH - 34 - 4) / 24, 22, 4
    peak = max((n for row in grid for n in row), default=0)
    chart = Chart(WIDTH, top + 7 * cell_h + 22, empty=peak == 0)
    for d, row in enumerate(grid):
        chart.rows.append({"y": round(top + d * cell_h + cell_h * .68, 1), "label": WEEKDAYS[d][:3]})
        for h, n in enumerate(row):
            chart.cells.append({"x": round(left + h * cell_w, 1), "y": top + d * cell_h, "w": round(cell_w - 1.5, 1),
                                "h": cell_h - 2, "opacity": round(.08 + .92 * n / peak, 2) if n else 0,
                                "title": f"{WEEKDAYS[d]} {h:02d}:00–{h:02d}:59: {n} message{'' if n == 1 else 's'}"})
    chart.xlabels = [{"x": round(left + (h + .5) * cell_w, 1), "label": f"{h:02d}"} for h in range(0, 24, 3)]
    return chart


def hbars(rows: list[tuple[str, list[tuple[int, str, str]]]]) -> Chart:
    """Horizontal bars: per row a label and (value, colour, name) bars, scaled to the largest value."""
    peak = max((v for _, bars in rows for v, _, _ in bars), default=0)
    top, _ = nice_max(peak)
    bar_h, label_w = 12, 0
    row_h = 20 + max((len(bars) for _, bars in rows), default=1) * (bar_h + 2) + 8
    chart = Chart(WIDTH, max(len(rows) * row_h, 20), empty=peak == 0)
    plot_w = WIDTH - 60
    for i, (label, bars) in enumerate(rows):
        y0 = i * row_h
        drawn = []
        for j, (v, colour, name) in enumerate(bars):
            drawn.append({"x": label_w, "y": y0 + 20 + j * (bar_h + 2), "w": round(max(v / top * plot_w, 1 if v else 0), 1),
                          "h": bar_h, "colour": colour, "value": v, "title": f"{label}: {v} {name}",
                          "vx": round(label_w + max(v / top * plot_w, 0) + 4, 1)})
        chart.rows.append({"label": label, "y": y0 + 15, "bars": drawn})
    return chart


def _steps(top: float, step: float) -> list[float]:
    n = int(round(top / step))
    return [step * k for k in range(n + 1)]


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"


def page_charts(report) -> dict[str, Chart]:
    """Every chart of the Insights page for a Report."""
    from_sources = [(k, v) for k, v in SOURCE_LABELS.items()]
    days = report.days
    products = report.products[:8]
    return {
        "conversations": stacked_bars(days, from_sources, report.started),
        "first_response": line_chart(days, [
            ("Median", MEDIAN_COLOUR, [d.median for d in report.response_days]),
            ("90th percentile", P90_COLOUR, [d.p90 for d in report.response_days]),
        ]),
        "products": hbars([(p.product.name, [(p.conversations, "#3b5bdb", "conversations"),
                                             (p.comments, "#1f8a4c", "comments"),
                                             (p.sold, "#c13584", "sales")]) for p in products]),
        "heatmap": heatmap(report.heatmap),
    }
