"""Staff users, their passwords and their roles on accounts."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import Account, Membership, StaffUser

MIN_PASSWORD_LENGTH = 10
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Compared against when the email is unknown, so both paths cost one hash check.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


class StaffError(ValueError):
    """A staff operation was refused; the message is for the person who asked."""


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def validate_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise StaffError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters long.")


def has_staff() -> bool:
    return db.session.scalar(select(func.count()).select_from(StaffUser)) > 0


def create_user(email: str, password: str, *, name: str = "", superadmin: bool = False) -> StaffUser:
    """Create a staff user (committed)."""
    user = new_user(email, password, name=name, superadmin=superadmin)
    db.session.commit()
    return user


def new_user(email: str, password: str, *, name: str = "", superadmin: bool = False) -> StaffUser:
    """A staff user added to the session (the caller commits): checks the email and the password."""
    email = normalize_email(email)
    if not EMAIL_PATTERN.match(email):
        raise StaffError("Enter a valid email address.")
    validate_password(password)
    if db.session.scalar(select(StaffUser.id).where(StaffUser.email == email)):
        raise StaffError(f"A staff user with the email {email} already exists.")
    user = StaffUser(
        email=email,
        name=(name or "").strip(),
        password_hash=generate_password_hash(password),
        is_superadmin=superadmin,
    )
    db.session.add(user)
    db.session.flush()
    return user


def authenticate(email: str, password: str) -> StaffUser | None:
    """The active user with these credentials, or None (constant work either way)."""
    user = db.session.scalar(select(StaffUser).where(StaffUser.email == normalize_email(email)))
    if user is None:
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    if not check_password_hash(user.password_hash, password or "") or not user.active:
        return None
    return user


def set_password(user_id: int, password: str) -> StaffUser:
    """Change a password and end the user's other sessions."""
    validate_password(password)
    user = db.session.get(StaffUser, user_id)
    if user is None:
        raise StaffError("No such staff user.")
    user.password_hash = generate_password_hash(password)
    user.session_version += 1
    db.session.commit()
    return user


def find_user(email: str) -> StaffUser | None:
    return db.session.scalar(select(StaffUser).where(StaffUser.email == normalize_email(email)))


def grant(user_id: int, account_id: int, role: str) -> Membership:
    """Give a user a role on an account (or change it)."""
    if role not in ("admin", "agent"):
        raise StaffError("The role must be admin or agent.")
    membership = db.session.scalar(
        select(Membership).where(Membership.user_id == user_id, Membership.account_id == account_id)
    )
    if membership is None:
        membership = Membership(user_id=user_id, account_id=account_id, role=role)
        db.session.add(membership)
    else:
        membership.role = role
    db.session.commit()
    return membership


def grant_role(user_id: int, account_id: int, role: str) -> Membership:
    """grant(), for ids that come from a form: both must exist."""
    if db.session.get(StaffUser, user_id) is None:
        raise StaffError("No such staff user.")
    if db.session.get(Account, account_id) is None:
        raise StaffError("No such account.")
    return grant(user_id, account_id, role)


def revoke(user_id: int, account_id: int) -> bool:
    """Take a user's role on an account away; False when there was none."""
    membership = db.session.scalar(
        select(Membership).where(Membership.user_id == user_id, Membership.account_id == account_id)
    )
    if membership is None:
        return False
    db.session.delete(membership)
    db.session.commit()
    return True


def list_staff() -> list[StaffUser]:
    """Every staff user, by email."""
    return list(db.session.scalars(select(StaffUser).order_by(StaffUser.email)))


def accounts_for(user: StaffUser) -> list[Account]:
    """The accounts a user may see, in a stable order."""
    return list(
        db.session.scalars(
            select(Account).join(Membership).where(Membership.user_id == user.id).order_by(Account.username, Account.id)
        )
    )


def role_on(user: StaffUser, account_id: int) -> str | None:
    return db.session.scalar(
        select(Membership.role).where(Membership.user_id == user.id, Membership.account_id == account_id)
    )


def name_of(user_id: int | None) -> str:
    """A staff member's name as the inbox's sentences say it ("someone" for nobody or a deleted user)."""
    if user_id is None:
        return "someone"
    user = db.session.get(StaffUser, user_id)
    return user.display_name if user is not None else "someone"
