"""Command line: `inbox run|demo` and the `flask --app inbox` groups."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click
from flask import Flask
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import select

from .extensions import db


def init_app(app: Flask) -> None:
    app.cli.add_command(users)
    app.cli.add_command(accounts)
    from .cli_webhooks import webhooks

    app.cli.add_command(webhooks)
    from . import cli_identities

    cli_identities.init_app(app)
    from . import cli_products

    cli_products.init_app(app)
    from . import cli_media

    cli_media.init_app(app)


def _create_app():
    from . import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False,
             help="The Instagram staff inbox.")
def main() -> None:
    pass


@main.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--threads", default=64, show_default=True, type=int, help="web threads (one per open websocket)")
def run_command(host: str, port: int, threads: int) -> None:
    """Apply migrations, then run the web server and one worker until Ctrl-C."""
    from .runner import run

    raise SystemExit(run(host=host, port=port, threads=threads))


@main.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--sim-port", default=8765, show_default=True, type=int, help="the Meta simulator's port (0: any)")
@click.option("--pace", default=8.0, show_default=True, type=float, help="seconds between customer actions")
@click.option("--web-processes", default=2, show_default=True, type=int)
@click.option("--keep/--reset", default=False, show_default=True,
              help="keep the demo database of the last run instead of starting fresh")
@click.option("--instance", type=click.Path(file_okay=False), default=None,
              help="instance directory of the demo (default: instance/demo)")
def demo_command(host: str, port: int, sim_port: int, pace: float, web_processes: int, keep: bool,
                 instance: str | None) -> None:
    """Run the inbox against the Meta simulator with seeded data and customers who keep writing."""
    from .demo import run_demo

    raise SystemExit(run_demo(host=host, port=port, sim_port=sim_port, pace=pace,
                              web_processes=web_processes, reset=not keep, instance=instance))


# --- users -------------------------------------------------------------------------

@click.group(help="Staff users.")
def users() -> None:
    pass


@users.command("create")
@click.argument("email")
@click.option("--name", default="")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--superadmin", is_flag=True, help="may connect accounts and manage staff")
@with_appcontext
def users_create(email: str, name: str, password: str, superadmin: bool) -> None:
    """Create a staff user."""
    from .services.staff import StaffError, create_user

    try:
        user = create_user(email, password, name=name, superadmin=superadmin)
    except StaffError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created {user.email} (id {user.id}){' as superadmin' if superadmin else ''}.")


@users.command("list")
@with_appcontext
def users_list() -> None:
    """List staff users and their roles."""
    from .models import StaffUser

    for user in db.session.scalars(select(StaffUser).order_by(StaffUser.id)):
        roles = ", ".join(f"{m.account.label}:{m.role}" for m in user.memberships) or "no accounts"
        flags = " superadmin" if user.is_superadmin else ""
        flags += "" if user.active else " disabled"
        click.echo(f"{user.id}\t{user.email}\t{user.name}\t{roles}{flags}")


@users.command("set-password")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@with_appcontext
def users_set_password(email: str, password: str) -> None:
    """Change a password (ends the user's other sessions)."""
    from .services.staff import StaffError, find_user, set_password

    user = find_user(email)
    if user is None:
        raise click.ClickException(f"No staff user {email}.")
    try:
        set_password(user.id, password)
    except StaffError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Password changed for {user.email}.")


# --- accounts ----------------------------------------------------------------------

@click.group(help="Connected Instagram accounts.")
def accounts() -> None:
    pass


def _parse_expiry(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@accounts.command("add")
@click.argument("ig_user_id")
@click.option("--username", default="")
@click.option("--token", default=None, help="access token (stored encrypted)")
@click.option("--token-expires", default=None, help="ISO date-time the token expires")
@with_appcontext
def accounts_add(ig_user_id: str, username: str, token: str | None, token_expires: str | None) -> None:
    """Add an account by its professional account id (webhook entry.id)."""
    from .services.accounts import AccountError, add_account

    try:
        account = add_account(ig_user_id, username, token=token, token_expires_at=_parse_expiry(token_expires))
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Added account {account.id}: {account.ig_user_id} {account.label}.")


@accounts.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def accounts_list(as_json: bool) -> None:
    """List accounts with their status and token state."""
    from .models import Account

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


@accounts.command("set-token")
@click.argument("ig_user_id")
@click.option("--token", prompt=True, hide_input=True)
@click.option("--token-expires", default=None, help="ISO date-time the token expires")
@with_appcontext
def accounts_set_token(ig_user_id: str, token: str, token_expires: str | None) -> None:
    """Store a new access token (encrypted with TOKEN_ENCRYPTION_KEY)."""
    from .services.accounts import find_account, set_token

    account = find_account(ig_user_id)
    if account is None:
        raise click.ClickException(f"No account {ig_user_id}.")
    set_token(account.id, token, _parse_expiry(token_expires))
    click.echo(f"Token stored for {account.label}.")


@accounts.command("grant")
@click.argument("ig_user_id")
@click.argument("email")
@click.option("--role", type=click.Choice(["admin", "agent"]), default="agent", show_default=True)
@with_appcontext
def accounts_grant(ig_user_id: str, email: str, role: str) -> None:
    """Give a staff user a role on an account."""
    from .services.accounts import find_account
    from .services.staff import find_user, grant

    account = find_account(ig_user_id)
    if account is None:
        raise click.ClickException(f"No account {ig_user_id}.")
    user = find_user(email)
    if user is None:
        raise click.ClickException(f"No staff user {email}.")
    grant(user.id, account.id, role)
    click.echo(f"{user.email} is now {role} on {account.label}.")


@accounts.command("refresh-tokens")
@click.option("--account", "ig_user_id", default=None, help="only this account (IG_USER_ID)")
@with_appcontext
def accounts_refresh_tokens(ig_user_id: str | None) -> None:
    """Run the daily check now: refresh tokens near expiry, restore webhook subscriptions."""
    from .services.accounts import find_account
    from .services.accounts_maintenance import check_account, refresh_tokens

    if ig_user_id:
        account = find_account(ig_user_id)
        if account is None:
            raise click.ClickException(f"No account {ig_user_id}.")
        checks = [check_account(account.id)]
    else:
        checks = refresh_tokens()
    if not checks:
        click.echo("No active accounts.")
    for check in checks:
        click.echo(check.describe())


if __name__ == "__main__":
    main()
