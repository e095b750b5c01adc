"""`flask --app inbox customers …`: erase a customer, list the erasures done."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..services import erasure
from .support import account_or_fail


@click.group("customers", help="The people who write to an account: erase one, see the erasure log.")
def group() -> None:
    pass


@group.command("erase")
@click.option("--account", "ig_user_id", required=True, help="the account's Instagram id")
@click.option("--igsid", required=True, help="the customer's Instagram-scoped id")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@with_appcontext
def customers_erase(ig_user_id: str, igsid: str, yes: bool) -> None:
    """Delete everything the account holds about one customer (messages, files, profile, deliveries)."""
    account = account_or_fail(ig_user_id)
    if not yes:
        click.confirm(f"Erase customer {igsid} of {account.label} for good?", abort=True)
    try:
        done = erasure.erase_customer(account.id, igsid, requested_by="cli")
    except erasure.NothingToErase as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Erased (erasure {done.id}): " + ", ".join(f"{n} {k}" for k, n in sorted((done.counts or {}).items())))


@group.command("erasures")
@click.option("--account", "ig_user_id", default=None, help="only this account's")
@with_appcontext
def customers_erasures(ig_user_id: str | None) -> None:
    """The erasure log: when, what kind, who asked, how much (never who it was about)."""
    account_id = account_or_fail(ig_user_id).id if ig_user_id else None
    for row in erasure.recent(account_id):
        counts = ", ".join(f"{n} {k}" for k, n in sorted((row.counts or {}).items())) or "-"
        click.echo(f"{row.id}\t{row.created_at:%Y-%m-%d %H:%M}\t{row.kind}\t{row.status}\t{row.requested_by}\t{counts}")
