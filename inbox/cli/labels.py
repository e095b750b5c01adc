"""`flask --app inbox labels …`: an account's labels."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..models.team import LABEL_COLORS
from ..services import labels as labels_service
from .support import account_or_fail


@click.group("labels", help="An account's conversation labels.")
def group() -> None:
    pass


@group.command("add")
@click.argument("name")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--color", type=click.Choice(LABEL_COLORS), default="gray", show_default=True)
@with_appcontext
def labels_add(name: str, ig_user_id: str, color: str) -> None:
    """Add a label to the account."""
    account = account_or_fail(ig_user_id)
    try:
        label = labels_service.create_label(account.id, name, color)
    except labels_service.LabelError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Label “{label.name}” ({label.color}) added to {account.label}.")


@group.command("list")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@with_appcontext
def labels_list(ig_user_id: str) -> None:
    """The account's labels."""
    for label in labels_service.labels(account_or_fail(ig_user_id).id):
        click.echo(f"{label.name}\t{label.color}")
