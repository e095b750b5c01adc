"""Insights: the figures of the Insights page, the facts they are read from, sales outcomes, CSV.

Modules: `hours.py` (business hours and periods in the account's time zone, pure),
`facts.py` (the incremental refresh of per-conversation facts and 15-minute slots),
`report.py` (the figures of one period), `sales.py` (Sold / Not sold), `charts.py` (SVG
geometry, pure), `export.py` (each chart's CSV).
"""
