"""`flask --app inbox comments list`: an account's comments, each with its post's product."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..models import ms_to_datetime
from ..services import comments
from .support import account_or_fail


@click.group("comments", help="Instagram comments on the account's posts.")
def group() -> None:
    pass


@group.command("list")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--post", "media_id", default=None, help="only the comments on this post (its media id)")
@click.option("--limit", default=200, show_default=True, help="at most this many, newest first")
@with_appcontext
def comments_list(ig_user_id: str, media_id: str | None, limit: int) -> None:
    """One line per comment, newest first: time, post, product, author, text and state."""
    account = account_or_fail(ig_user_id)
    rows = comments.list_comments(account.id, media_id=media_id.strip() if media_id else None, limit=limit)
    if not rows:
        click.echo("No comments." if not media_id else f"No comments on post {media_id}.")
        return
    for comment, post, product in rows:
        when = ms_to_datetime(comment.meta_timestamp).strftime("%Y-%m-%d %H:%M")
        who = ("(us) " if comment.is_own else "") + (f"@{comment.author_username}" if comment.author_username
                                                     else comment.author_igsid or "someone")
        states = [s for s, on in (("reply", bool(comment.parent_comment_id)), ("hidden", comment.hidden),
                                  ("deleted", comment.deleted), ("live", comment.field == "live_comments"),
                                  ("mention", comment.field == "mentions")) if on]
        text = " ".join((comment.text or "").split())
        click.echo(f"{when}  {comment.comment_id or '(sending)'}  post {comment.media_id or '-'}  "
                   f"product: {product.label if product else '-'}  {who}: {text}"
                   + (f"  [{', '.join(states)}]" if states else ""))
