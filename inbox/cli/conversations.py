"""`flask --app inbox conversations …`: why a conversation has its product."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..extensions import db
from ..models import Conversation
from ..services.products import panel
from .support import account_or_fail


@click.group("conversations", help="Conversations.")
def group() -> None:
    pass


@group.command("explain")
@click.argument("conversation_id", required=False, type=int)
@click.option("--customer", "igsid", default=None, help="the customer's IGSID (with --account)")
@click.option("--account", "ig_user_id", default=None, help="the account's IG_USER_ID")
@with_appcontext
def conversations_explain(conversation_id: int | None, igsid: str | None, ig_user_id: str | None) -> None:
    """Print why a conversation has its product: every decision, in plain words."""
    if conversation_id is not None:
        conversation = db.session.get(Conversation, conversation_id)
        if conversation is None:
            raise click.ClickException(f"No conversation {conversation_id}.")
        if ig_user_id is not None and conversation.account_id != account_or_fail(ig_user_id).id:
            raise click.ClickException(f"No conversation {conversation_id} in that account.")
    elif igsid and ig_user_id:
        account = account_or_fail(ig_user_id)
        conversation = panel.find_conversation(account.id, igsid)
        if conversation is None:
            raise click.ClickException(f"No conversation with {igsid} in {account.label}.")
    else:
        raise click.UsageError("Give a conversation ID, or --customer IGSID with --account IG_USER_ID.")
    for line in panel.explain(conversation):
        click.echo(line)
