"""An account's team: its members and their roles, invites by email, removal, away status.

An invite is a single-use link that expires (INVITE_DAYS, 7): only the SHA-256 of its token is
stored, the link is shown once to the admin who made it, and emailed through Flask-Mail when
MAIL_SERVER is set. Accepting it creates the person (name, password) or, for someone who
already has a login, adds the account to theirs: a person can belong to several accounts.

Removing a member deletes the membership, so every account-scoped view answers 404 at once.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from flask_mail import Message as MailMessage
from sqlalchemy import func, select, update

from ..extensions import db, mail
from ..live.publish import publish_after_commit
from ..models import Account, Conversation, Invite, Membership, StaffUser, utcnow
from . import staff
from .staff import StaffError

log = logging.getLogger(__name__)

ROLES = ("admin", "agent")


@dataclass
class Member:
    user: StaffUser
    role: str
    joined_at: datetime


@dataclass
class NewInvite:
    invite: Invite
    token: str  # only here, once: the link is never stored
    emailed: bool
    email_error: str | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- Members ----------------------------------------------------------------------------------

def members(account_id: int) -> list[Member]:
    """The account's staff, by name."""
    rows = db.session.execute(select(StaffUser, Membership.role, Membership.created_at)
                              .join(Membership, Membership.user_id == StaffUser.id)
                              .where(Membership.account_id == account_id)).all()
    found = [Member(user, role, joined) for user, role, joined in rows]
    return sorted(found, key=lambda m: (m.user.display_name.lower(), m.user.id))


def member(account_id: int, user_id: int) -> Member | None:
    row = db.session.execute(select(StaffUser, Membership.role, Membership.created_at)
                             .join(Membership, Membership.user_id == StaffUser.id)
                             .where(Membership.account_id == account_id, StaffUser.id == user_id)).first()
    return Member(*row) if row else None


def is_member(account_id: int, user_id: int) -> bool:
    return db.session.scalar(select(Membership.id).where(Membership.account_id == account_id,
                                                         Membership.user_id == user_id)) is not None


def find_member_by_email(account_id: int, email: str) -> StaffUser | None:
    return db.session.scalar(select(StaffUser).join(Membership, Membership.user_id == StaffUser.id)
                             .where(Membership.account_id == account_id,
                                    StaffUser.email == staff.normalize_email(email)))


def _admins(account_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(Membership).where(
        Membership.account_id == account_id, Membership.role == "admin")) or 0


def change_role(account_id: int, user_id: int, role: str) -> Member:
    """Make a member admin or agent; the last admin stays admin."""
    if role not in ROLES:
        raise StaffError("The role must be admin or agent.")
    membership = db.session.scalar(select(Membership).where(Membership.account_id == account_id,
                                                            Membership.user_id == user_id))
    if membership is None:
        raise StaffError("That person is not on this account's team.")
    if membership.role == "admin" and role != "admin" and _admins(account_id) <= 1:
        raise StaffError("An account needs at least one admin: make someone else admin first.")
    membership.role = role
    publish_after_commit(account_id, "team.updated")
    db.session.commit()
    return member(account_id, user_id)


def remove_member(account_id: int, user_id: int) -> StaffUser:
    """Take a person off the account's team: the membership goes, so every account view 404s at once.

    Their open conversations become unassigned. (Ending their sessions and open sockets for
    the account at once is inbox.auth.revoke_access, called by the route and the CLI.)
    """
    membership = db.session.scalar(select(Membership).where(Membership.account_id == account_id,
                                                            Membership.user_id == user_id))
    if membership is None:
        raise StaffError("That person is not on this account's team.")
    if membership.role == "admin" and _admins(account_id) <= 1:
        raise StaffError("This is the account's last admin: make someone else admin first.")
    user = membership.user
    assigned = list(db.session.scalars(select(Conversation.id).where(Conversation.account_id == account_id,
                                                                     Conversation.assignee_user_id == user_id)))
    if assigned:
        db.session.execute(update(Conversation).where(Conversation.id.in_(assigned))
                           .values(assignee_user_id=None, updated_at=utcnow()))
        for conversation_id in assigned:
            publish_after_commit(account_id, "conversation.updated", conversation_id=conversation_id, team=1)
    db.session.delete(membership)
    publish_after_commit(account_id, "team.updated")
    db.session.commit()
    return user


def set_away(user_id: int, away: bool) -> StaffUser:
    """A person's own status: away people get no round-robin conversations."""
    user = db.session.get(StaffUser, user_id)
    if user is None:
        raise StaffError("No such staff user.")
    user.away = bool(away)
    for account_id in db.session.scalars(select(Membership.account_id).where(Membership.user_id == user_id)):
        publish_after_commit(account_id, "team.updated")
    db.session.commit()
    return user


# --- Invites ----------------------------------------------------------------------------------

def invite(account_id: int, email: str, role: str, *, invited_by: int | None = None,
           accept_url=None) -> NewInvite:
    """Invite a person by email with a role; emails the link when mail is configured.

    `accept_url(token)` builds the absolute link (the route and the CLI know the address).
    """
    email = staff.normalize_email(email)
    if not staff.EMAIL_PATTERN.match(email):
        raise StaffError("Enter a valid email address.")
    if role not in ROLES:
        raise StaffError("The role must be admin or agent.")
    account = db.session.get(Account, account_id)
    if account is None:
        raise StaffError("No such account.")
    if find_member_by_email(account_id, email) is not None:
        raise StaffError(f"{email} is already on this account's team.")
    now = utcnow()
    # A new invite replaces a pending one to the same address (its link stops working).
    db.session.execute(update(Invite).where(Invite.account_id == account_id, Invite.email == email,
                                            Invite.accepted_at.is_(None), Invite.revoked_at.is_(None))
                       .values(revoked_at=now))
    token = secrets.token_urlsafe(32)
    row = Invite(account_id=account_id, email=email, role=role, token_hash=_hash(token),
                 invited_by_user_id=invited_by, created_at=now,
                 expires_at=now + timedelta(days=current_app.config["INVITE_DAYS"]))
    db.session.add(row)
    db.session.commit()
    emailed, error = False, None
    if current_app.config.get("MAIL_SERVER") and accept_url is not None:
        emailed, error = _send_invite_email(row, account, accept_url(token), invited_by)
    return NewInvite(row, token, emailed, error)


def _send_invite_email(row: Invite, account: Account, link: str, invited_by: int | None) -> tuple[bool, str | None]:
    inviter = staff.name_of(invited_by) if invited_by else "An admin"
    message = MailMessage(
        subject=f"You're invited to the {account.label} inbox",
        recipients=[row.email],
        sender=current_app.config.get("MAIL_DEFAULT_SENDER") or "inbox@localhost",
        # The template alone (no request's context: the CLI invites too).
        body=current_app.jinja_env.get_template("team/invite_email.txt").render(
            account=account, inviter=inviter, link=link, invite=row),
    )
    try:
        mail.send(message)
    except Exception as exc:  # the link is shown to the admin anyway; the failure is said, not raised
        log.warning("invite email to an invitee of account %s failed: %s", account.id, type(exc).__name__)
        return False, "The email could not be sent; copy the link below and send it yourself."
    return True, None


def pending_invites(account_id: int) -> list[Invite]:
    now = utcnow()
    return list(db.session.scalars(select(Invite).where(
        Invite.account_id == account_id, Invite.accepted_at.is_(None), Invite.revoked_at.is_(None),
        Invite.expires_at > now).order_by(Invite.created_at.desc())))


def revoke_invite(account_id: int, invite_id: int) -> Invite:
    row = db.session.scalar(select(Invite).where(Invite.account_id == account_id, Invite.id == invite_id))
    if row is None or not row.is_pending(utcnow()):
        raise StaffError("That invite is no longer pending.")
    row.revoked_at = utcnow()
    db.session.commit()
    return row


def find_invite(token: str) -> Invite | None:
    """The pending invite a link's token names (None: unknown, used, revoked or expired)."""
    if not token or len(token) > 200:
        return None
    row = db.session.scalar(select(Invite).where(Invite.token_hash == _hash(token)))
    if row is None or not row.is_pending(utcnow()):
        return None
    return row


def invite_account(row: Invite) -> Account:
    return db.session.get(Account, row.account_id)


def accept_invite(token: str, *, name: str = "", password: str = "",
                  existing_user_id: int | None = None) -> tuple[StaffUser, Account]:
    """Use an invite once: a new person (name, password) or someone already logged in joins the account."""
    row = find_invite(token)
    if row is None:
        raise StaffError("This invite link has expired, was revoked or was already used. Ask an admin for a new one.")
    if existing_user_id is not None:
        user = db.session.get(StaffUser, existing_user_id)
        if user is None:
            raise StaffError("No such staff user.")
    else:
        user = staff.find_user(row.email)
        if user is not None:
            raise StaffError("You already have a login: log in first, then open the link again.")
        if not (name or "").strip():
            raise StaffError("Enter your name.")
        staff.validate_password(password)
        user = staff.new_user(row.email, password, name=name)
    # Claim the invite in one statement: two tabs accepting at once use it once.
    claimed = db.session.execute(update(Invite).where(Invite.id == row.id, Invite.accepted_at.is_(None),
                                                      Invite.revoked_at.is_(None))
                                 .values(accepted_at=utcnow(), accepted_user_id=user.id)).rowcount
    if not claimed:
        db.session.rollback()
        raise StaffError("This invite link was already used.")
    existing = db.session.scalar(select(Membership).where(Membership.user_id == user.id,
                                                          Membership.account_id == row.account_id))
    if existing is None:
        db.session.add(Membership(user_id=user.id, account_id=row.account_id, role=row.role))
    publish_after_commit(row.account_id, "team.updated")
    db.session.commit()
    return user, db.session.get(Account, row.account_id)
