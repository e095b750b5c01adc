"""`flask --app inbox users …`: staff users."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from ..extensions import db
from ..models import StaffUser
from ..auth import revoke_access
from ..services.staff import StaffError, create_user, find_user, set_password


@click.group("users", help="Staff users.")
def group() -> None:
    pass


@group.command("create")
@click.argument("email")
@click.option("--name", default="")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--superadmin", is_flag=True, help="may connect accounts and manage staff")
@with_appcontext
def users_create(email: str, name: str, password: str, superadmin: bool) -> None:
    """Create a staff user."""
    try:
        user = create_user(email, password, name=name, superadmin=superadmin)
    except StaffError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created {user.email} (id {user.id}){' as superadmin' if superadmin else ''}.")


@group.command("list")
@with_appcontext
def users_list() -> None:
    """List staff users and their roles."""
    for user in db.session.scalars(select(StaffUser).order_by(StaffUser.id)):
        roles = ", ".join(f"{m.account.label}:{m.role}" for m in user.memberships) or "no accounts"
        flags = " superadmin" if user.is_superadmin else ""
        flags += "" if user.active else " disabled"
        click.echo(f"{user.id}\t{user.email}\t{user.name}\t{roles}{flags}")


@group.command("set-password")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@with_appcontext
def users_set_password(email: str, password: str) -> None:
    """Change a password (ends the user's other sessions)."""
    user = find_user(email)
    if user is None:
        raise click.ClickException(f"No staff user {email}.")
    try:
        set_password(user.id, password)
    except StaffError as exc:
        raise click.ClickException(str(exc)) from exc
    revoke_access(user.id)  # their open live sockets close now, not at their next check
    click.echo(f"Password changed for {user.email}.")
