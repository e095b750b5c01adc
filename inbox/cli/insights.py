"""`flask --app inbox insights …`: each Insights chart as CSV, and rebuilding the facts."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import with_appcontext

from ..services.insights import export, facts, report
from .support import account_or_fail


@click.group("insights", help="The Insights page's numbers: CSV export, rebuilding the facts.")
def group() -> None:
    pass


@group.command("export")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--from", "first", required=True, help="first day, YYYY-MM-DD (the account's time zone)")
@click.option("--to", "last", required=True, help="last day, YYYY-MM-DD (inclusive)")
@click.option("--out", "out", default=".", show_default=True, type=click.Path(file_okay=False),
              help="directory to write the CSV files into")
@with_appcontext
def insights_export(ig_user_id: str, first: str, last: str, out: str) -> None:
    """Write every chart's CSV for the period: the same files the page's "Download CSV" links give."""
    account = account_or_fail(ig_user_id)
    settings = facts.settings_for(account.id)
    try:
        period = report.parse_period(settings.timezone, None, first, last)
    except report.PeriodError as exc:
        raise click.ClickException(str(exc)) from exc
    result = report.build(account.id, period)
    for path in export.write_all(result, Path(out)):
        click.echo(str(path))


@group.command("rebuild")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@with_appcontext
def insights_rebuild(ig_user_id: str) -> None:
    """Recompute the account's facts from every message (after an import or a restore)."""
    account = account_or_fail(ig_user_id)
    facts.refresh(account.id, full=True)
    click.echo(f"Rebuilt the insights of {account.label}.")
