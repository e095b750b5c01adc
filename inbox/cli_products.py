"""`flask --app inbox products|posts|conversations explain`: the catalogue, post links, and why a product."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import with_appcontext

from .cli_support import account_or_fail


def init_app(app: Flask) -> None:
    app.cli.add_command(products_group)
    app.cli.add_command(posts_group)
    existing = app.cli.commands.get("conversations")
    if isinstance(existing, click.Group):  # another area's `conversations` group: add to it
        existing.add_command(explain_command)
    else:
        app.cli.add_command(conversations_group)


def _fail(exc: Exception):
    raise click.ClickException(str(exc)) from exc


# --- products ---------------------------------------------------------------------------

@click.group("products", help="The catalogue of an account.")
def products_group() -> None:
    pass


@products_group.command("add")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--sku", required=True)
@click.option("--name", required=True)
@click.option("--price", default=None)
@click.option("--currency", default=None)
@click.option("--keywords", default="", help="comma-separated words matched in captions")
@with_appcontext
def products_add(ig_user_id: str, sku: str, name: str, price: str | None, currency: str | None,
                 keywords: str) -> None:
    """Add a product."""
    from .services.products import catalogue

    account = account_or_fail(ig_user_id)
    try:
        product = catalogue.create_product(account.id, name=name, sku=sku, price=price, currency=currency,
                                           keywords=keywords)
    except catalogue.ProductError as exc:
        _fail(exc)
    click.echo(f"Added {product.label} (id {product.id}) to {account.label}"
               f"{'; keywords: ' + product.keywords if product.keywords else '; matched by SKU only'}.")


@products_group.command("list")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--archived", is_flag=True, help="include archived products")
@with_appcontext
def products_list(ig_user_id: str, archived: bool) -> None:
    """List the catalogue: SKU, name, price, keywords, linked posts and conversations."""
    from .services.products import catalogue

    account = account_or_fail(ig_user_id)
    items = catalogue.list_products(account.id, include_archived=archived)
    if not items:
        click.echo(f"{account.label} has no products.")
        return
    stats = catalogue.product_stats(account.id)
    for p in items:
        st = stats.get(p.id, {})
        price = f"{p.price} {p.currency or ''}".strip() if p.price is not None else "-"
        click.echo(f"{p.sku:<16} {p.name:<32} {price:<12} posts {st.get('posts', 0):<4} "
                   f"conversations {st.get('conversations', 0):<5} "
                   f"{'[archived] ' if not p.active else ''}keywords: {p.keywords or '-'}")


@products_group.command("import")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.argument("csv_file", type=click.File("rb"))
@with_appcontext
def products_import(ig_user_id: str, csv_file) -> None:
    """Add the products of a CSV (sku,name[,price,currency,keywords]); rejected rows are listed."""
    from .services.products import catalogue

    account = account_or_fail(ig_user_id)
    report = catalogue.import_products_csv(account.id, csv_file.read())
    if report.error and not report.created:
        raise click.ClickException(report.error)
    click.echo(f"Added {len(report.created)} products, rejected {len(report.rejected)} rows.")
    for row in report.rejected:
        click.echo(f"  line {row['line']}: {row['reason']}")


# --- posts ------------------------------------------------------------------------------

@click.group("posts", help="Posts and their product links.")
def posts_group() -> None:
    pass


@posts_group.command("link")
@click.argument("media_id")
@click.argument("sku")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@with_appcontext
def posts_link(media_id: str, sku: str, ig_user_id: str) -> None:
    """Link a post (by its Instagram media id) to the product with SKU, by hand."""
    from .extensions import db
    from .services.products import catalogue, posts

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
        _fail(exc)
    click.echo(f"Linked post {media_id} to {product.label}: every conversation that shares it is assigned "
               f"to it from now on.")


@posts_group.command("unlink")
@click.argument("media_id")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@with_appcontext
def posts_unlink(media_id: str, ig_user_id: str) -> None:
    """Remove a post's product link (conversations keep the product they have)."""
    from .services.products import posts

    account = account_or_fail(ig_user_id)
    post = posts.find_post(account.id, media_id)
    if post is None or post.link is None:
        raise click.ClickException(f"Post {media_id} is not linked in {account.label}.")
    label = post.link.product.label
    posts.unlink_post(account.id, post.id)
    click.echo(f"Unlinked post {media_id} from {label}.")


@posts_group.command("list")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--state", type=click.Choice(["all", "manual", "auto", "unlinked"]), default="all")
@with_appcontext
def posts_list(ig_user_id: str, state: str) -> None:
    """List posts with their link state."""
    from .services.products import posts

    account = account_or_fail(ig_user_id)
    for post in posts.list_posts(account.id, state, limit=1000):
        link = post.link
        how = ("auto-linked" if link.auto_linked else "linked by hand") if link else "not linked"
        caption = " ".join((post.caption or "").split())[:60]
        click.echo(f"{post.media_id:<20} {how:<15} {link.product.label if link else '-':<30} {caption}")


# --- conversations explain --------------------------------------------------------------

@click.group("conversations", help="Conversations.")
def conversations_group() -> None:
    pass


@click.command("explain")
@click.argument("conversation_id", required=False, type=int)
@click.option("--customer", "igsid", default=None, help="the customer's IGSID (with --account)")
@click.option("--account", "ig_user_id", default=None, help="the account's IG_USER_ID")
@with_appcontext
def explain_command(conversation_id: int | None, igsid: str | None, ig_user_id: str | None) -> None:
    """Print why a conversation has its product: every decision, in plain words."""
    from .extensions import db
    from .models import Conversation
    from .services.products import panel

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


conversations_group.add_command(explain_command)
