"""`flask --app inbox staff …`: an account's team: invite by email, list, remove."""

from __future__ import annotations

import click
from flask import current_app, url_for
from flask.cli import with_appcontext

from ..auth import revoke_access
from ..services import team
from ..services.staff import StaffError
from .support import account_or_fail


@click.group("staff", help="An account's team: invites, members, removal.")
def group() -> None:
    pass


def _invite_url(token: str) -> str:
    base = (current_app.config.get("PUBLIC_BASE_URL") or "http://localhost:5000").rstrip("/")
    with current_app.test_request_context("/", base_url=base):
        return base + url_for("invites.accept", token=token)


@group.command("invite")
@click.argument("email")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--role", type=click.Choice(["agent", "admin"]), default="agent", show_default=True)
@with_appcontext
def staff_invite(email: str, ig_user_id: str, role: str) -> None:
    """Invite EMAIL to the account; prints the single-use link (emailed too when MAIL_SERVER is set)."""
    account = account_or_fail(ig_user_id)
    try:
        made = team.invite(account.id, email, role, accept_url=_invite_url)
    except StaffError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Invited {made.invite.email} to {account.label} as {role}; the link works once, "
               f"until {made.invite.expires_at:%Y-%m-%d %H:%M} UTC.")
    if made.emailed:
        click.echo("Emailed.")
    elif made.email_error:
        click.echo(made.email_error)
    click.echo(_invite_url(made.token))


@group.command("list")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@with_appcontext
def staff_list(ig_user_id: str) -> None:
    """The account's members and pending invites."""
    account = account_or_fail(ig_user_id)
    members = team.members(account.id)
    for m in members:
        state = " (away)" if m.user.away else ""
        click.echo(f"{m.user.email}\t{m.role}\t{m.user.display_name}{state}")
    for invite in team.pending_invites(account.id):
        click.echo(f"{invite.email}\t{invite.role}\tinvited, expires {invite.expires_at:%Y-%m-%d %H:%M} UTC")
    if not members:
        click.echo(f"Nobody is on {account.label}'s team yet.")


@group.command("remove")
@click.argument("email")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@with_appcontext
def staff_remove(email: str, ig_user_id: str) -> None:
    """Take EMAIL off the account's team (their access to it ends at once)."""
    account = account_or_fail(ig_user_id)
    user = team.find_member_by_email(account.id, email)
    if user is None:
        raise click.ClickException(f"{email} is not on {account.label}'s team.")
    try:
        team.remove_member(account.id, user.id)
    except StaffError as exc:
        raise click.ClickException(str(exc)) from None
    revoke_access(user.id, account.id)  # their open sockets stop hearing this account now
    click.echo(f"Removed {user.email} from {account.label}.")
