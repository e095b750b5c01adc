"""`flask --app inbox media …`: retry downloads, delete orphan files, show states."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..services.media import media_summary, retry_attachments, sweep
from .support import account_or_fail

STATES = ("pending", "expired", "too_large", "refused", "failed")


@click.group("media", help="Kept copies of attachments and profile pictures.")
def group() -> None:
    pass


@group.command("retry")
@click.option("--account", "ig_user_id", required=True, help="the account's Instagram id")
@click.option("--state", "states", multiple=True, type=click.Choice(STATES), default=("failed",), show_default=True,
              help="which attachments to download again (repeatable)")
@with_appcontext
def media_retry(ig_user_id: str, states: tuple[str, ...]) -> None:
    """Queue another download for an account's attachments in these states."""
    account = account_or_fail(ig_user_id)
    ids = retry_attachments(account.id, states=tuple(states))
    click.echo(f"Queued {len(ids)} download{'s' if len(ids) != 1 else ''} for @{account.username or account.ig_user_id}"
               f" ({', '.join(states)}).")


@group.command("sweep")
@click.option("--grace-seconds", default=3600, show_default=True, type=int,
              help="leave files younger than this (a download may be committing)")
@click.option("--dry-run", is_flag=True, help="list the orphans without deleting them")
@with_appcontext
def media_sweep(grace_seconds: int, dry_run: bool) -> None:
    """Delete stored files that no attachment or picture refers to any more."""
    orphans = sweep(grace_seconds=grace_seconds, dry_run=dry_run)
    for key in orphans:
        click.echo(key)
    verb = "Would delete" if dry_run else "Deleted"
    click.echo(f"{verb} {len(orphans)} orphan file{'s' if len(orphans) != 1 else ''}.")


@group.command("status")
@click.option("--account", "ig_user_id", required=True, help="the account's Instagram id")
@with_appcontext
def media_status(ig_user_id: str) -> None:
    """How many of an account's attachments are in each state."""
    account = account_or_fail(ig_user_id)
    for state, count in sorted(media_summary(account.id).items()):
        click.echo(f"{state:10} {count}")
