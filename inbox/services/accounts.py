"""Connected Instagram accounts and their access tokens."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select

from ..crypto import decrypt_token, encrypt_token
from ..extensions import db
from ..live.publish import publish_after_commit
from ..models import Account, utcnow

_IG_ID = re.compile(r"^\d{1,64}$")


class AccountError(ValueError):
    """An account operation was refused; the message says why."""


def add_account(ig_user_id: str, username: str = "", *, token: str | None = None,
                token_expires_at: datetime | None = None, name: str | None = None) -> Account:
    """Create an account (committed)."""
    ig_user_id = str(ig_user_id).strip()
    if not _IG_ID.match(ig_user_id):
        raise AccountError("The Instagram account id is the numeric professional account id (webhook entry.id).")
    if db.session.scalar(select(Account.id).where(Account.ig_user_id == ig_user_id)):
        raise AccountError(f"Account {ig_user_id} already exists.")
    account = Account(ig_user_id=ig_user_id, username=(username or "").lstrip("@"), name=name)
    if token:
        account.access_token_encrypted = encrypt_token(token)
        account.token_expires_at = token_expires_at
        account.token_refreshed_at = utcnow()
    db.session.add(account)
    db.session.commit()
    return account


def find_account(ig_user_id: str) -> Account | None:
    return db.session.scalar(select(Account).where(Account.ig_user_id == str(ig_user_id)))


def set_token(account_id: int, token: str, expires_at: datetime | None = None) -> Account:
    """Store a new access token; a working token ends "reconnect needed"."""
    account = db.session.get(Account, account_id)
    if account is None:
        raise AccountError("No such account.")
    store_token(account, token, expires_at)
    db.session.commit()
    return account


def store_token(account: Account, token: str, expires_at: datetime | None = None) -> None:
    """Put a working token on the account (encrypted), in the caller's transaction."""
    account.access_token_encrypted = encrypt_token(token)
    account.token_expires_at = expires_at
    account.token_refreshed_at = utcnow()
    if account.status == "reconnect_needed":
        account.status = "active"
        account.status_reason = None


def access_token(account: Account) -> str | None:
    if not account.access_token_encrypted:
        return None
    return decrypt_token(account.access_token_encrypted)


def mark_reconnect_needed(account_id: int, reason: str) -> None:
    """Flag an account whose token died; webhooks for it are still stored and applied."""
    account = db.session.get(Account, account_id)
    if account is not None and account.status != "reconnect_needed":
        account.status = "reconnect_needed"
        account.status_reason = reason
        publish_after_commit(account_id, "account.updated")  # open inboxes show the banner
        db.session.commit()
