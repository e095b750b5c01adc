"""Connecting an Instagram account through Business Login for Instagram.

The flow (Business Login for Instagram,
https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login):
the admin's browser goes to Meta's authorize URL with a
`state` bound to their session; Meta sends it back to our callback with a one-time
code. The callback records a `JobRun` (the code encrypted in it) and enqueues
`inbox.tasks.connect_account`, because routes never call Meta. The job trades the code for a
short-lived token, that for a long-lived one (60 days), reads `/me?fields=user_id,...`
(`user_id` is the webhook `entry.id`; `/me` `id` is app-scoped and useless to us),
subscribes the webhook fields, and stores the account with its token encrypted. The
same `user_id` again is a reconnect: the row is updated, never doubled.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from flask import current_app
from sqlalchemy import select

from ..crypto import TokenDecryptError, decrypt_token, encrypt_token
from ..extensions import db, on_commit
from ..live.publish import publish_after_commit
from ..models import Account, JobRun, Membership, utcnow
from ..queue import enqueue, job_id
from . import graph
from .accounts import store_token
from .transactions import retry_on_conflict

log = logging.getLogger(__name__)

# Business Login scopes for the inbox (the old business_* names died on 27 Jan 2025).
SCOPES = ("instagram_business_basic", "instagram_business_manage_messages")
_IG_ID = re.compile(r"^\d{1,64}$")


class ConnectError(RuntimeError):
    """Connecting failed; the message is for the admin who tried."""


@dataclass(frozen=True)
class OAuthApp:
    client_id: str | None
    client_secret: str | None

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret)


def oauth_app() -> OAuthApp:
    """The Instagram app's id and secret (Business Login uses the Instagram app's pair when set)."""
    cfg = current_app.config
    return OAuthApp(cfg.get("META_INSTAGRAM_APP_ID") or cfg.get("META_APP_ID"),
                    cfg.get("META_INSTAGRAM_APP_SECRET") or cfg.get("META_APP_SECRET"))


def authorization_url(redirect_uri: str, state: str) -> str:
    """Meta's authorize URL for this app, asking for the inbox's scopes."""
    app = oauth_app()
    if not app.configured:
        raise ConnectError("Set META_INSTAGRAM_APP_ID and META_INSTAGRAM_APP_SECRET (the Instagram app's id "
                           "and secret from the App Dashboard) before connecting an account.")
    params = {"client_id": app.client_id, "redirect_uri": redirect_uri, "response_type": "code",
              "scope": ",".join(SCOPES), "state": state}
    base = current_app.config["OAUTH_AUTHORIZE_URL"]
    return f"{base}{'&' if '?' in base else '?'}{urlencode(params)}"


# --- The callback: record and enqueue ----------------------------------------------------

def begin_connect(user_id: int, code: str, redirect_uri: str) -> int:
    """Record a connect run for the code Meta returned and enqueue it; returns the JobRun id."""
    # The code is single-use and short-lived, but it is still a credential: kept encrypted,
    # and only until the job reads it.
    run = JobRun(kind="connect", rq_job_id=f"connect-{uuid.uuid4().hex}", state="queued",
                 started_by_user_id=user_id, summary={"redirect_uri": redirect_uri, "code": encrypt_token(code)})
    db.session.add(run)
    db.session.flush()
    run_id = run.id
    run.rq_job_id = job_id("inbox.tasks.connect_account", run_id)
    on_commit(lambda: enqueue("inbox.tasks.connect_account", run_id, timeout=120))
    db.session.commit()
    return run_id


def connect_run(run_id: int) -> JobRun | None:
    run = db.session.get(JobRun, run_id)
    return run if run is not None and run.kind == "connect" else None


# --- The job ----------------------------------------------------------------------------

def run_connect(run_id: int) -> None:
    """Finish a connect run: tokens, /me, webhook subscription, the account row, the admin."""
    run = connect_run(run_id)
    if run is None or run.state != "queued":
        return  # a repeat of a run that already started must not redeem the code twice
    summary = dict(run.summary or {})
    sealed, redirect_uri, user_id = summary.pop("code", None), summary.get("redirect_uri", ""), run.started_by_user_id
    run.state, run.started_at, run.summary = "running", utcnow(), summary
    db.session.commit()

    try:
        if not sealed:
            raise ConnectError("The authorization code is missing. Start again.")
        try:
            code = decrypt_token(sealed)
        except TokenDecryptError as exc:
            raise ConnectError("The authorization code cannot be read (TOKEN_ENCRYPTION_KEY changed?). "
                               "Start again.") from exc
        result = connect_with_code(code, redirect_uri, user_id, run_id=run_id)
    except ConnectError as exc:
        _finish(run_id, "failed", error=str(exc))
        return
    except Exception:
        log.exception("connect run %s failed", run_id)
        _finish(run_id, "failed", error="Something went wrong while connecting; the error has been logged. "
                                        "Start again.")
        raise
    log.info("connect run %s: %s %s", run_id, "connected" if result.created else "reconnected", result.label)


def _finish(run_id: int, state: str, *, error: str | None = None) -> None:
    db.session.rollback()
    run = db.session.get(JobRun, run_id)
    run.state, run.error, run.finished_at = state, error, utcnow()
    db.session.commit()


@dataclass(frozen=True)
class Connected:
    account_id: int
    label: str
    created: bool
    warning: str | None


def connect_with_code(code: str, redirect_uri: str, user_id: int | None, *, run_id: int | None = None) -> Connected:
    """Trade the code for a long-lived token, identify the account, subscribe, and store it."""
    app = oauth_app()
    if not app.configured:
        raise ConnectError("The Instagram app id and secret are not configured.")
    try:
        grant = graph.exchange_code(code, redirect_uri, client_id=app.client_id, client_secret=app.client_secret)
    except graph.Transient as exc:
        raise ConnectError(f"Instagram did not answer ({exc}). Start again in a minute.") from exc
    except graph.GraphError as exc:
        raise ConnectError("Instagram refused the authorization code: it has expired, was already used, or was "
                           f"issued for another redirect URI ({exc}). Start again.") from exc
    if grant.permissions is not None:
        missing = [s for s in SCOPES if s not in grant.permissions]
        if missing:
            raise ConnectError(f"Instagram did not grant {', '.join(missing)}. Connect again and allow the inbox "
                               "to manage messages.")

    short = graph.GraphClient(grant.access_token, ig_user_id=grant.user_id or "me")
    try:
        long_lived = short.exchange_token(app.client_secret)
    except graph.GraphError as exc:
        raise ConnectError(f"Instagram would not issue a long-lived token ({exc}). Start again.") from exc
    expires_at = utcnow() + timedelta(seconds=long_lived.expires_in) if long_lived.expires_in else None

    client = graph.GraphClient(long_lived.access_token, ig_user_id=grant.user_id or "me")
    try:
        me = client.me()
    except graph.GraphError as exc:
        raise ConnectError(f"Instagram accepted the login, but reading the account (/me) failed ({exc}). "
                           "Start again; if it keeps failing, check the app's permissions.") from exc
    ig_user_id = str(me.get("user_id") or "")
    if not _IG_ID.match(ig_user_id):
        raise ConnectError("Instagram did not say which professional account this is (/me has no user_id). "
                           "Only Instagram professional accounts (business or creator) can be connected.")

    # Subscribe before storing: a failure here is a warning, the daily check retries it.
    client = graph.GraphClient(long_lived.access_token, ig_user_id=ig_user_id)
    warning = None
    try:
        client.ensure_subscribed()
        fields: str | None = ",".join(graph.WEBHOOK_FIELDS["instagram"])
    except graph.GraphError as exc:
        fields = None
        warning = (f"The webhook subscription failed ({exc}); new messages will not arrive until it works. "
                   "Use “Check now” on the accounts page, or wait for the daily check.")
        log.warning("connect: subscribing %s failed: %s", ig_user_id, exc)

    # Meta's data-deletion and deauthorize callbacks name the person by this app-scoped id.
    me = {**me, "app_user_id": grant.user_id or me.get("id")}
    # The same account connected at the same moment by another run: the second try updates it.
    return retry_on_conflict(
        lambda: _store(ig_user_id, me, long_lived.access_token, expires_at, fields, user_id, run_id, warning),
        attempts=2)


def _store(ig_user_id: str, me: dict, token: str, expires_at, fields: str | None, user_id: int | None,
           run_id: int | None, warning: str | None) -> Connected:
    """The account row (new or reconnected), the connecting admin's membership, the run (the caller commits)."""
    now = utcnow()
    account = db.session.scalar(select(Account).where(Account.ig_user_id == ig_user_id))
    created = account is None
    if created:
        account = Account(ig_user_id=ig_user_id)
        db.session.add(account)
    account.username = str(me.get("username") or account.username or "").lstrip("@")
    account.name = me.get("name") or account.name
    account.profile_pic_url = me.get("profile_picture_url") or account.profile_pic_url
    account.app_user_id = str(me.get("app_user_id") or "") or account.app_user_id
    # The token is an Instagram Login token now, whatever the account used before.
    account.api_flavour, account.page_id = "instagram", None
    store_token(account, token, expires_at)
    # Connecting is an admin's explicit act: whatever stopped the account, it works again.
    account.status, account.status_reason = "active", None
    if fields is not None:
        account.webhook_fields, account.webhook_checked_at = fields, now
    db.session.flush()

    if user_id is not None:
        membership = db.session.scalar(select(Membership).where(Membership.user_id == user_id,
                                                                Membership.account_id == account.id))
        if membership is None:
            db.session.add(Membership(user_id=user_id, account_id=account.id, role="admin"))
        else:
            membership.role = "admin"
    if run_id is not None:
        run = db.session.get(JobRun, run_id)
        run.account_id = account.id
        run.state, run.finished_at = "finished", now
        run.summary = {**(run.summary or {}), "account_id": account.id, "label": account.label,
                       "created": created, "warning": warning}
    if not created:
        publish_after_commit(account.id, "account.updated")  # the reconnect banner goes away
    return Connected(account.id, account.label, created, warning)
