"""`flask --app inbox products …`: an account's catalogue."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..services.products import catalogue
from .support import account_or_fail


@click.group("products", help="The catalogue of an account.")
def group() -> None:
    pass


@group.command("add")
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
    account = account_or_fail(ig_user_id)
    try:
        product = catalogue.create_product(account.id, name=name, sku=sku, price=price, currency=currency,
                                          keywords=keywords)
    except catalogue.ProductError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Added {product.label} (id {product.id}) to {account.label}"
               f"{'; keywords: ' + product.keywords if product.keywords else '; matched by SKU only'}.")


@group.command("list")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--archived", is_flag=True, help="include archived products")
@with_appcontext
def products_list(ig_user_id: str, archived: bool) -> None:
    """List the catalogue: SKU, name, price, keywords, linked posts and conversations."""
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


@group.command("import")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.argument("csv_file", type=click.File("rb"))
@with_appcontext
def products_import(ig_user_id: str, csv_file) -> None:
    """Add the products of a CSV (sku,name[,price,currency,keywords]); rejected rows are listed."""
    account = account_or_fail(ig_user_id)
    report = catalogue.import_products_csv(account.id, csv_file.read())
    if report.error and not report.created:
        raise click.ClickException(report.error)
    click.echo(f"Added {len(report.created)} products, rejected {len(report.rejected)} rows.")
    for row in report.rejected:
        click.echo(f"  line {row['line']}: {row['reason']}")
