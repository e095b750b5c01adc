"""`flask --app inbox conversations …`: why a conversation has its product; assign, note, label."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..extensions import db
from ..models import Conversation
from ..services import assignees, notes, team
from ..services import labels as labels_service
from ..services.products import panel
from ..services.staff import StaffError
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


def _conversation_or_fail(conversation_id: int) -> Conversation:
    conversation = db.session.get(Conversation, conversation_id)
    if conversation is None:
        raise click.ClickException(f"No conversation {conversation_id}.")
    return conversation


def _member_or_fail(account_id: int, email: str):
    user = team.find_member_by_email(account_id, email)
    if user is None:
        raise click.ClickException(f"{email} is not on the team of that conversation's account.")
    return user


@group.command("assign")
@click.argument("conversation_id", type=int)
@click.option("--to", "email", default=None, help="the staff member's email")
@click.option("--none", "nobody", is_flag=True, help="unassign")
@with_appcontext
def conversations_assign(conversation_id: int, email: str | None, nobody: bool) -> None:
    """Assign a conversation to a member of its account (--to EMAIL), or to nobody (--none)."""
    if bool(email) == nobody:
        raise click.UsageError("Give --to EMAIL or --none.")
    conversation = _conversation_or_fail(conversation_id)
    user = _member_or_fail(conversation.account_id, email) if email else None
    try:
        assignees.assign(conversation.account_id, conversation.id, user.id if user else None, actor_id=None)
    except StaffError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Conversation {conversation.id} assigned to {user.email}." if user
               else f"Conversation {conversation.id} unassigned.")


@group.command("note")
@click.argument("conversation_id", type=int)
@click.argument("text")
@click.option("--by", "email", required=True, help="who writes it (a member of the account)")
@with_appcontext
def conversations_note(conversation_id: int, text: str, email: str) -> None:
    """Leave a private note on a conversation (never sent to Instagram; @name mentions a colleague)."""
    conversation = _conversation_or_fail(conversation_id)
    user = _member_or_fail(conversation.account_id, email)
    try:
        note = notes.add_note(conversation.account_id, conversation.id, user.id, text)
    except notes.NoteRefused as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Note {note.id} added to conversation {conversation.id}.")


@group.command("label")
@click.argument("conversation_id", type=int)
@click.argument("name")
@click.option("--remove", is_flag=True, help="take the label off instead")
@with_appcontext
def conversations_label(conversation_id: int, name: str, remove: bool) -> None:
    """Put one of the account's labels on a conversation (or --remove it)."""
    conversation = _conversation_or_fail(conversation_id)
    label = labels_service.find_label(conversation.account_id, name)
    if label is None:
        raise click.ClickException(f"No label “{name}” in that account: add it with `labels add`.")
    if remove:
        changed = labels_service.remove_label(conversation.account_id, conversation.id, label.id, actor_id=None)
        click.echo(f"Label “{label.name}” removed." if changed else f"Conversation {conversation.id} did not have it.")
    else:
        changed = labels_service.add_label(conversation.account_id, conversation.id, label.id, actor_id=None)
        click.echo(f"Label “{label.name}” added." if changed else f"Conversation {conversation.id} already has it.")
