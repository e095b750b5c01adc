"""`flask --app inbox posts …`: posts and their product links."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..extensions import db
from ..services.products import catalogue, posts
from .support import account_or_fail


@click.group("posts", help="Posts and their product links.")
def group() -> None:
    pass


@group.command("link")
@click.argument("media_id")
@click.argument("sku")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@with_appcontext
def posts_link(media_id: str, sku: str, ig_user_id: str) -> None:
    """Link a post (by its Instagram media id) to the product with SKU, by hand."""
    account = account_or_fail(ig_user_id)
    product = catalogue.find_by_sku(account.id, sku)
    if product is None:
        raise click.ClickException(f"No product with SKU {sku} in {account.label}.")
    media_id = media_id.strip()
    if not media_id.isdigit() or len(media_id) > 64:
        raise click.ClickException(f"{media_id[:70]!r} is not an Instagram media id.")
    post = posts.ensure_post(account.id, media_id, seen_via="cli")
    db.session.commit()
    try:
        posts.link_post(account.id, post.id, product.id, None)
    except catalogue.ProductError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Linked post {media_id} to {product.label}: every conversation that shares it is assigned "
               f"to it from now on.")


@group.command("unlink")
@click.argument("media_id")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@with_appcontext
def posts_unlink(media_id: str, ig_user_id: str) -> None:
    """Remove a post's product link (conversations keep the product they have)."""
    account = account_or_fail(ig_user_id)
    post = posts.find_post(account.id, media_id)
    if post is None or post.link is None:
        raise click.ClickException(f"Post {media_id} is not linked in {account.label}.")
    label = post.link.product.label
    posts.unlink_post(account.id, post.id)
    click.echo(f"Unlinked post {media_id} from {label}.")


@group.command("list")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--state", type=click.Choice(["all", "manual", "auto", "unlinked"]), default="all")
@with_appcontext
def posts_list(ig_user_id: str, state: str) -> None:
    """List posts with their link state."""
    account = account_or_fail(ig_user_id)
    for post in posts.list_posts(account.id, state, limit=1000):
        link = post.link
        how = ("auto-linked" if link.auto_linked else "linked by hand") if link else "not linked"
        caption = " ".join((post.caption or "").split())[:60]
        click.echo(f"{post.media_id:<20} {how:<15} {link.product.label if link else '-':<30} {caption}")
