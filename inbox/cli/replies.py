"""`flask --app inbox replies …`: an account's saved replies."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..services import saved_replies
from .support import account_or_fail


@click.group("replies", help="An account's saved replies (/shortcut in the composer).")
def group() -> None:
    pass


@group.command("add")
@click.argument("text")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--shortcut", required=True, help="what follows / in the composer")
@with_appcontext
def replies_add(text: str, ig_user_id: str, shortcut: str) -> None:
    """Add a saved reply ({first_name} {username} {product} {price} {agent} are filled on use)."""
    account = account_or_fail(ig_user_id)
    try:
        reply = saved_replies.create_reply(account.id, shortcut, text)
    except saved_replies.SavedReplyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Saved reply /{reply.shortcut} added to {account.label}.")


@group.command("list")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@with_appcontext
def replies_list(ig_user_id: str) -> None:
    """The account's saved replies."""
    for reply in saved_replies.replies(account_or_fail(ig_user_id).id):
        click.echo(f"/{reply.shortcut}\t{reply.text}")
