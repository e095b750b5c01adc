"""Who may see what: login everywhere by default, first-run setup, throttling, account scope."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

from flask import Blueprint, Flask, abort, current_app, g, redirect, request, url_for
from flask_login import current_user
from sqlalchemy import select, update

from . import logs
from .extensions import db, get_redis, login_manager, rkey
from .live.publish import publish_access_revoked
from .models import Account, Membership, StaffUser
from .services.staff import has_staff

# Endpoints reachable without a login (everything else needs one).
PUBLIC_ENDPOINTS = {"static", "auth.login", "auth.setup", "health.healthz", "invites.accept"}
# Blueprints that authenticate by other means (Meta's signature, signed URLs).
PUBLIC_BLUEPRINTS = {"webhooks", "public_media", "oauth_public", "metrics", "meta"}


def init_app(app: Flask) -> None:
    app.before_request(_require_login)


@login_manager.user_loader
def _load_user(user_id: str) -> StaffUser | None:
    # The id carries the session version: a password change ends other sessions.
    uid, _, version = user_id.partition(":")
    if not uid.isdigit() or not version.isdigit():
        return None
    user = db.session.get(StaffUser, int(uid))
    if user is None or user.session_version != int(version):
        return None
    return user


@login_manager.unauthorized_handler
def _unauthorized():
    if request.headers.get("HX-Request"):
        # A 302 would be swapped into the fragment; tell htmx to navigate instead.
        return "", 401, {"HX-Redirect": url_for("auth.login")}
    if request.blueprint == "live" or request.path.startswith("/api/"):
        abort(401)
    return redirect(url_for("auth.login", next=request.full_path if request.query_string else request.path))


def _require_login():
    endpoint = request.endpoint or ""
    if endpoint in PUBLIC_ENDPOINTS or request.blueprint in PUBLIC_BLUEPRINTS:
        return None
    if not _has_staff():
        return redirect(url_for("auth.setup"))
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def _has_staff() -> bool:
    """Whether setup is done; once true it stays true for the life of the process."""
    if current_app.extensions.get("inbox_has_staff"):
        return True
    done = has_staff()
    if done:
        current_app.extensions["inbox_has_staff"] = True
    return done


# --- Throttling failed logins ------------------------------------------------------
# Failures are counted per client address (the real one: see TRUSTED_PROXIES) and per email,
# for an hour. Past a few free tries each failure delays the next try from that client, or
# for that email, by a time that doubles but never exceeds LOGIN_MAX_DELAY_SECONDS: guessing
# stays slow, and a stranger typing a colleague's email wrongly locks them out for a minute at
# most. The client limit is looser (an office shares an address), and a right password clears
# the email's count.

def login_lock_remaining(email: str, ip: str) -> int:
    """Seconds until this email or address may try again (0: now)."""
    r = get_redis()
    ttl = max(r.ttl(rkey("login-lock", "email", email)), r.ttl(rkey("login-lock", "ip", ip)), 0)
    return int(ttl)


def record_login_failure(email: str, ip: str) -> int:
    """Count a failure; past the free tries, delay the next one (doubling, capped); returns the delay."""
    cfg = current_app.config
    r = get_redis()
    cap = max(1, int(cfg["LOGIN_MAX_DELAY_SECONDS"]))
    lock_seconds = 0
    for kind, value in (("email", email), ("ip", ip)):
        count_key = rkey("login-fail", kind, value)
        count = r.incr(count_key)
        r.expire(count_key, 3600)
        limit = cfg["LOGIN_MAX_FAILURES"] * (1 if kind == "email" else 4)
        if count >= limit:
            seconds = min(cfg["LOGIN_LOCK_SECONDS"] * int(math.pow(2, min(count - limit, 16))), cap)
            r.set(rkey("login-lock", kind, value), 1, ex=seconds)
            lock_seconds = max(lock_seconds, seconds)
    return lock_seconds


def clear_login_failures(email: str) -> None:
    r = get_redis()
    r.delete(rkey("login-fail", "email", email), rkey("login-lock", "email", email))


# --- Ending access -------------------------------------------------------------------

def revoke_access(user_id: int, account_id: int | None = None) -> None:
    """The one way access ends: logout, a password change, or a membership removed.

    Without account_id the person's sessions end everywhere, server-side (the session
    version moves on, so a copied session cookie and the remember-me cookie stop working)
    and every open /live socket of theirs closes at once. With account_id (their membership
    was removed) their sockets stop hearing that account at once. Commits.
    """
    if account_id is None:
        db.session.execute(update(StaffUser).where(StaffUser.id == user_id)
                           .values(session_version=StaffUser.session_version + 1))
    db.session.commit()
    publish_access_revoked(user_id, account_id)


# --- Account scope -----------------------------------------------------------------

def account_scoped(bp: Blueprint) -> Blueprint:
    """Make every route of bp live under /accounts/<account_id>/ for members only.

    Non-members get 404 (the account's existence is not revealed); g.account and
    g.role are set for the view; url_for fills account_id from g.account.
    """

    @bp.url_value_preprocessor
    def _pull_account(endpoint, values):
        g.account_id = values.pop("account_id", None) if values else None

    @bp.url_defaults
    def _add_account(endpoint, values):
        account = g.get("account")
        if account is not None and "account_id" not in values:
            if current_app.url_map.is_endpoint_expecting(endpoint, "account_id"):
                values["account_id"] = account.id

    @bp.before_request
    def _load_account():
        account_id = g.get("account_id")
        if account_id is None or not current_user.is_authenticated:
            abort(404)
        row = db.session.execute(
            select(Account, Membership.role)
            .join(Membership, Membership.account_id == Account.id)
            .where(Account.id == account_id, Membership.user_id == current_user.id)
        ).first()
        if row is None:
            abort(404)
        g.account, g.role = row
        logs.bind(account_id=g.account.id)

    return bp


def require_role(role: str) -> Callable:
    """Only staff with this role on g.account (admins pass every check)."""

    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if g.get("role") != "admin" and g.get("role") != role:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def require_superadmin(view):
    """Only site administrators (they connect accounts and manage staff)."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated or not current_user.is_superadmin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def member_account_ids(user_id: int) -> set[int]:
    """Accounts a user belongs to (for filtering live events and jobs)."""
    return set(db.session.scalars(select(Membership.account_id).where(Membership.user_id == user_id)))
