"""The daily account check: refresh long-lived tokens before they expire, keep webhooks subscribed.

Instagram Login tokens live 60 days and can be refreshed once they are a day old
(reference section 0); Meta may drop an app's webhook subscription after a run of
failed deliveries (reference 1.4). So once a day, for every active account:

- a token that expires within TOKEN_REFRESH_WITHIN_DAYS (or whose expiry is unknown)
  is refreshed; Page tokens (the Facebook flavour) do not expire and are left alone;
- the webhook subscription is read and restored when fields are missing;
- a token Meta refuses (190/102) marks the account "reconnect needed": the inbox shows
  the banner, and its webhooks are still stored and applied as before.

Network calls happen outside database transactions; each account is checked on its own,
so one failure never stops the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..live.publish import publish
from ..models import Account, utcnow
from . import graph
from .accounts import mark_reconnect_needed, set_token

log = logging.getLogger(__name__)

# Meta refreshes only tokens at least this old.
MIN_TOKEN_AGE = timedelta(hours=24)


@dataclass
class AccountCheck:
    """What the check did for one account (printed by the CLI, returned by the job)."""

    account_id: int
    label: str
    refreshed: bool = False
    token_expires_at: datetime | None = None
    restored_fields: list[str] = field(default_factory=list)
    subscribed: bool | None = None  # None: not checked
    reconnect_needed: bool = False
    skipped: str | None = None
    errors: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.skipped:
            return f"{self.label}: skipped ({self.skipped})"
        parts = []
        if self.reconnect_needed:
            parts.append("token refused: reconnect needed")
        if self.refreshed:
            until = self.token_expires_at.strftime("%Y-%m-%d") if self.token_expires_at else "unknown"
            parts.append(f"token refreshed (valid until {until})")
        if self.restored_fields:
            parts.append(f"webhook subscription restored ({', '.join(self.restored_fields)})")
        elif self.subscribed:
            parts.append("webhooks subscribed")
        parts.extend(f"error: {e}" for e in self.errors)
        return f"{self.label}: {'; '.join(parts) or 'nothing to do'}"


def refresh_tokens(*, now: datetime | None = None) -> list[AccountCheck]:
    """Check every active account (the daily job); returns one AccountCheck each."""
    ids = list(db.session.scalars(select(Account.id).where(Account.status == "active").order_by(Account.id)))
    db.session.rollback()
    checks = []
    for account_id in ids:
        try:
            checks.append(check_account(account_id, now=now))
        except Exception as exc:  # one broken account must not stop the others
            db.session.rollback()
            log.exception("account check of %s failed", account_id)
            checks.append(AccountCheck(account_id, f"Account {account_id}", errors=[f"unexpected {type(exc).__name__}"]))
    return checks


def request_check(account_id: int) -> None:
    """Run one account's check soon, in the worker ("Check now"); a repeat while queued is one job."""
    from ..jobs import enqueue

    enqueue("inbox.jobs.check_account", account_id, job_id=f"check-account-{account_id}", timeout=300)


def refresh_due(account: Account, now: datetime) -> bool:
    """Whether the account's token should be refreshed now."""
    if (account.api_flavour or "instagram") != "instagram":
        return False  # Page tokens do not expire and have no ig_refresh_token
    if account.token_refreshed_at is not None and now - account.token_refreshed_at < MIN_TOKEN_AGE:
        return False
    window = timedelta(days=current_app.config["TOKEN_REFRESH_WITHIN_DAYS"])
    return account.token_expires_at is None or account.token_expires_at - now <= window


def check_account(account_id: int, *, now: datetime | None = None) -> AccountCheck:
    """Refresh one account's token when due, and check (and restore) its webhook subscription."""
    now = now or utcnow()
    account = db.session.get(Account, account_id)
    if account is None:
        return AccountCheck(account_id, f"Account {account_id}", skipped="no such account")
    check = AccountCheck(account.id, account.label, token_expires_at=account.token_expires_at)
    if account.status != "active":
        check.skipped = "reconnect needed" if account.status == "reconnect_needed" else account.status
        return check
    if not account.access_token_encrypted:
        check.skipped = "no access token"
        return check
    try:
        client = graph.GraphClient.for_account(account)
    except Exception as exc:  # a token the key cannot decrypt: nothing to call Meta with
        check.errors.append(str(exc))
        return check
    due = refresh_due(account, now)
    sealed = account.access_token_encrypted  # the token Meta is asked about
    db.session.rollback()  # no transaction stays open while Meta answers

    try:
        if due:
            try:
                grant = client.refresh_token()
            except graph.TokenInvalid:
                raise
            except graph.GraphError as exc:  # e.g. Meta's "too young to refresh": keep the token, go on
                check.errors.append(f"refresh failed: {exc}")
                log.warning("token refresh of %s failed: %s", check.label, exc)
            else:
                expires_at = now + timedelta(seconds=grant.expires_in) if grant.expires_in else None
                account = set_token(account_id, grant.access_token, expires_at)
                client, sealed = graph.GraphClient.for_account(account), account.access_token_encrypted
                db.session.rollback()
                check.refreshed, check.token_expires_at = True, expires_at
                log.info("token of %s refreshed until %s", check.label, expires_at)
        try:
            check.restored_fields = client.ensure_subscribed()
            check.subscribed = True
            _record_subscription(account_id, client.flavour, now)
        except graph.TokenInvalid:
            raise
        except graph.GraphError as exc:
            check.errors.append(f"webhook subscription check failed: {exc}")
            log.warning("webhook subscription check of %s failed: %s", check.label, exc)
    except graph.TokenInvalid as exc:
        db.session.rollback()
        current = db.session.get(Account, account_id)
        if current is None or current.access_token_encrypted != sealed:
            # Reconnected while Meta answered: the refused token is no longer the account's.
            check.errors.append("the token was replaced during the check")
            return check
        mark_reconnect_needed(account_id, _reason(exc))
        publish(account_id, "account.updated")
        check.reconnect_needed = True
        log.warning("token of %s refused (%s): reconnect needed", check.label, exc)
    return check


def _record_subscription(account_id: int, flavour: str, now: datetime) -> None:
    account = db.session.get(Account, account_id)
    if account is not None:
        account.webhook_fields = ",".join(graph.WEBHOOK_FIELDS[flavour])
        account.webhook_checked_at = now
        db.session.commit()


# Why a token died, by 190 subcode (reference 7.4), in words for the banner.
_TOKEN_DEATHS = {
    463: "the token expired",
    460: "the owner changed their Instagram password, or Instagram ended the session",
    458: "the inbox app was removed from the Instagram account",
    459: "Instagram wants the owner to log in to the Instagram app and confirm the account",
    464: "Instagram wants the owner to log in to the Instagram app and confirm the account",
}


def _reason(exc: graph.GraphError) -> str:
    """A short reason for the banner (never the token): ours by subcode, else Meta's message."""
    if exc.subcode in _TOKEN_DEATHS:
        return _TOKEN_DEATHS[exc.subcode]
    text = exc.message.strip().rstrip(".")
    return text if len(text) <= 200 else text[:197] + "…"


@dataclass(frozen=True)
class AccountRow:
    account: Account
    token_state: str
    staff_count: int


def accounts_overview(now: datetime | None = None) -> list[AccountRow]:
    """Every account with its token state and how many staff work it (the accounts page)."""
    from sqlalchemy import func

    from ..models import Membership

    now = now or utcnow()
    counts = dict(db.session.execute(select(Membership.account_id, func.count()).group_by(Membership.account_id)).all())
    accounts = db.session.scalars(select(Account).order_by(Account.username, Account.id))
    return [AccountRow(a, token_state(a, now), counts.get(a.id, 0)) for a in accounts]


def token_state(account: Account, now: datetime | None = None) -> str:
    """"ok", "soon" (within the refresh window), "expired" or "unknown", for the accounts page."""
    now = now or utcnow()
    if not account.access_token_encrypted:
        return "missing"
    if account.token_expires_at is None:
        return "unknown"
    if account.token_expires_at <= now:
        return "expired"
    window = timedelta(days=current_app.config["TOKEN_REFRESH_WITHIN_DAYS"])
    return "soon" if account.token_expires_at - now <= window else "ok"
