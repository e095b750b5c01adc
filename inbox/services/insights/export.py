"""Each chart's numbers as a table: the page's data tables, the CSV downloads and `insights export`.

Durations are seconds (of business time when the account sets hours), amounts are in the
account's currency with two decimals, dates are the account's local days.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from .hours import WEEKDAYS
from .report import SOURCE_LABELS, Report

CHARTS = ("conversations", "first_response", "products", "top_posts", "top_ads", "heatmap", "people")


@dataclass
class Table:
    """A chart's numbers: a title, column names, their kinds (text, int, seconds, money, percent), rows."""

    name: str
    title: str
    columns: list[str]
    kinds: list[str]
    rows: list[list]


def table(report: Report, name: str) -> Table:
    """The named chart's table (KeyError for an unknown name)."""
    return {
        "conversations": _conversations, "first_response": _first_response, "products": _products,
        "top_posts": _top_posts, "top_ads": _top_ads, "heatmap": _heatmap, "people": _people,
    }[name](report)


def tables(report: Report) -> dict[str, Table]:
    return {name: table(report, name) for name in CHARTS}


def _conversations(r: Report) -> Table:
    keys = list(SOURCE_LABELS)
    rows = [[d.isoformat(), *[r.started[d][k] for k in keys], sum(r.started[d].values())] for d in r.days]
    rows.append(["Total", *[r.started_by_source[k] for k in keys], sum(r.started_by_source.values())])
    return Table("conversations", "Conversations started per day", ["date", *keys, "total"],
                 ["text"] + ["int"] * (len(keys) + 1), rows)


def _first_response(r: Report) -> Table:
    rows = [[d.day.isoformat(), d.answered, d.median, d.p90] for d in r.response_days]
    s = r.summary
    rows.append(["Total", s.answered, s.median, s.p90])
    return Table("first_response", "First response time per day", ["date", "answered", "median_seconds",
                                                                     "p90_seconds"],
                 ["text", "int", "seconds", "seconds"], rows)


def _products(r: Report) -> Table:
    rows = [[p.product.sku, p.product.name, p.conversations, p.comments, p.sold, p.quantity, p.amount]
            for p in r.products]
    return Table("products", "Products", ["sku", "product", "conversations", "comments", "sales", "quantity",
                                          f"amount_{r.currency}"],
                 ["text", "text", "int", "int", "int", "int", "money"], rows)


def _top_posts(r: Report) -> Table:
    rows = [[p.key, p.label, p.conversations, p.sold, p.amount] for p in r.top_posts]
    return Table("top_posts", "Top posts", ["media_id", "post", "conversations", "sales", f"amount_{r.currency}"],
                 ["text", "text", "int", "int", "money"], rows)


def _top_ads(r: Report) -> Table:
    rows = [[a.key, a.label, a.conversations, a.sold, a.amount] for a in r.top_ads]
    return Table("top_ads", "Top ads", ["ad_id", "ad", "conversations", "sales", f"amount_{r.currency}"],
                 ["text", "text", "int", "int", "money"], rows)


def _heatmap(r: Report) -> Table:
    rows = [[WEEKDAYS[d], *r.heatmap[d]] for d in range(7)]
    return Table("heatmap", "Customer messages by weekday and hour", ["weekday", *[f"{h:02d}" for h in range(24)]],
                 ["text"] + ["int"] * 24, rows)


def _people(r: Report) -> Table:
    rows = [[p.name, p.replies, p.answered_first, p.median, p.done] for p in r.people]
    return Table("people", "Per person", ["person", "replies_sent", "answered_first", "median_first_response_seconds",
                                          "marked_done"], ["text", "int", "int", "seconds", "int"], rows)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.0f}" if value == int(value) else f"{value:.1f}"
    return str(value)


def to_csv(t: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(t.columns)
    for row in t.rows:
        # A leading =, +, - or @ would be a formula in a spreadsheet: quote it away.
        writer.writerow(["'" + c if isinstance(c, str) and c[:1] in "=+-@" else c for c in map(_cell, row)])
    return out.getvalue()


def filename(report: Report, name: str) -> str:
    return f"insights-{name}-{report.period.first.isoformat()}-{report.period.last.isoformat()}.csv"


def write_all(report: Report, directory: Path) -> list[Path]:
    """Every chart's CSV into directory (created); the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, t in tables(report).items():
        path = directory / filename(report, name)
        path.write_text(to_csv(t), encoding="utf-8")
        paths.append(path)
    return paths
