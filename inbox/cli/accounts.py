"""`flask --app inbox accounts …`: connected Instagram accounts, their tokens and the daily check."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from ..extensions import db
from ..models import Account
from ..services import erasure
from ..services.accounts import AccountError, add_account, set_token
from ..services.accounts_maintenance import check_account, refresh_tokens
from ..services.staff import find_user, grant
from .support import account_or_fail


@click.group("accounts", help="Connected Instagram accounts.")
def group() -> None:
    pass


def _parse_expiry(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@group.command("add")
@click.argument("ig_user_id")
@click.option("--username", default="")
@click.option("--token", default=None, help="access token (stored encrypted)")
@click.option("--token-expires", default=None, help="ISO date-time the token expires")
@with_appcontext
def accounts_add(ig_user_id: str, username: str, token: str | None, token_expires: str | None) -> None:
    """Add an account by its professional account id (webhook entry.id)."""
    try:
        account = add_account(ig_user_id, username, token=token, token_expires_at=_parse_expiry(token_expires))
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Added account {account.id}: {account.ig_user_id} {account.label}.")


@group.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def accounts_list(as_json: bool) -> None:
    """List accounts with their status and token state."""
    rows = []
    for account in db.session.scalars(select(Account).order_by(Account.id)):
        rows.append({
            "id": account.id,
            "ig_user_id": account.ig_user_id,
            "username": account.username,
            "status": account.status,
            "has_token": bool(account.access_token_encrypted),
            "token_expires_at": account.token_expires_at.isoformat() if account.token_expires_at else None,
        })
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        token = "token" if row["has_token"] else "no token"
        if row["token_expires_at"]:
            token += f" until {row['token_expires_at']}"
        click.echo(f"{row['id']}\t{row['ig_user_id']}\t@{row['username']}\t{row['status']}\t{token}")


@group.command("set-token")
@click.argument("ig_user_id")
@click.option("--token", prompt=True, hide_input=True)
@click.option("--token-expires", default=None, help="ISO date-time the token expires")
@with_appcontext
def accounts_set_token(ig_user_id: str, token: str, token_expires: str | None) -> None:
    """Store a new access token (encrypted with TOKEN_ENCRYPTION_KEY)."""
    account = account_or_fail(ig_user_id)
    set_token(account.id, token, _parse_expiry(token_expires))
    click.echo(f"Token stored for {account.label}.")


@group.command("grant")
@click.argument("ig_user_id")
@click.argument("email")
@click.option("--role", type=click.Choice(["admin", "agent"]), default="agent", show_default=True)
@with_appcontext
def accounts_grant(ig_user_id: str, email: str, role: str) -> None:
    """Give a staff user a role on an account."""
    account = account_or_fail(ig_user_id)
    user = find_user(email)
    if user is None:
        raise click.ClickException(f"No staff user {email}.")
    grant(user.id, account.id, role)
    click.echo(f"{user.email} is now {role} on {account.label}.")


@group.command("refresh-tokens")
@click.option("--account", "ig_user_id", default=None, help="only this account (IG_USER_ID)")
@with_appcontext
def accounts_refresh_tokens(ig_user_id: str | None) -> None:
    """Run the daily check now: refresh tokens near expiry, restore webhook subscriptions."""
    checks = [check_account(account_or_fail(ig_user_id).id)] if ig_user_id else refresh_tokens()
    if not checks:
        click.echo("No active accounts.")
    for check in checks:
        click.echo(check.describe())


@group.command("retention")
@click.argument("ig_user_id")
@click.option("--days", type=click.IntRange(min=1), default=None, help="keep messages this many days")
@click.option("--off", "off", is_flag=True, help="keep everything (the default)")
@with_appcontext
def accounts_retention(ig_user_id: str, days: int | None, off: bool) -> None:
    """Delete an account's messages and attachments older than N days, every day (or stop doing it)."""
    account = account_or_fail(ig_user_id)
    if off == (days is not None):
        raise click.UsageError("Give --days N or --off.")
    erasure.set_retention(account.id, None if off else days)
    click.echo(f"{account.label}: " + ("messages are kept." if off else
                                       f"messages and attachments older than {days} days are deleted daily."))
