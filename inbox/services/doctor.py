"""`inbox doctor`: the checks of what an operator gets wrong, each failure with how to fix it.

Each check returns a `Check`; `run_checks()` runs them all (one failing never stops the
others) and the command exits 0 only when every one passed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import requests
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app
from sqlalchemy import func, select

from ..config import REQUIRED_IN_PRODUCTION
from ..extensions import db, get_redis, migrate, rkey
from ..models import Account, WebhookDelivery, utcnow
from . import graph, obligations
from .accounts import access_token
from .applier import apply_lag


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def run_checks() -> list[Check]:
    checks: list[Check] = []
    for check in (secrets_set, migrations_at_head, redis_reachable, worker_alive, deliveries_draining,
                  obligations_on_time, public_base_url, media_writable):
        checks.append(_safely(check.__name__.replace("_", " "), check))
    checks.extend(account_checks())
    return checks


def _safely(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except Exception as exc:  # a check that breaks is a failed check, not a crashed doctor
        db.session.rollback()
        return Check(name, False, f"the check itself failed: {type(exc).__name__}: {exc}",
                     "Fix what the error says, then run `inbox doctor` again.")


def secrets_set() -> Check:
    cfg = current_app.config
    if cfg["INBOX_ENV"] != "production":
        return Check("secrets", True, f"INBOX_ENV is {cfg['INBOX_ENV']}: secrets are generated under instance/ "
                                      "(set INBOX_ENV=production on a server)")
    missing = [name for name in REQUIRED_IN_PRODUCTION if not cfg.get(name)]
    weak = [name for name in ("SECRET_KEY",) if cfg.get(name) and len(str(cfg[name])) < 32]
    if missing or weak:
        return Check("secrets", False, f"missing: {', '.join(missing) or '-'}; too short: {', '.join(weak) or '-'}",
                     "Set each in the environment (or instance/config.py); make SECRET_KEY 32+ random characters: "
                     "python -c 'import secrets; print(secrets.token_urlsafe(48))'.")
    return Check("secrets", True, "every required secret is set")


def migrations_at_head() -> Check:
    script = ScriptDirectory(migrate.directory)
    heads = set(script.get_heads())
    with db.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    if current == heads:
        return Check("migrations", True, f"the database is at {', '.join(sorted(heads))}")
    return Check("migrations", False, f"the database is at {', '.join(sorted(current)) or 'nothing'}, "
                                      f"the code expects {', '.join(sorted(heads))}",
                 "Apply them: `flask --app inbox db upgrade` (back the database up first).")


def redis_reachable() -> Check:
    try:
        get_redis().ping()
    except Exception as exc:
        return Check("redis", False, f"{type(exc).__name__}: {exc}",
                     "Start Redis, or point REDIS_URL at it (redis://host:6379/0).")
    return Check("redis", True, "answers")


def worker_alive() -> Check:
    beats = list(get_redis().scan_iter(match=rkey("worker", "heartbeat", "*"), count=100))
    if not beats:
        return Check("worker", False, "no worker heartbeat",
                     "Start one: `inbox worker` (or the inbox-worker service / the compose `worker`).")
    return Check("worker", True, f"{len(beats)} alive")


def deliveries_draining() -> Check:
    """Is the applier (in the workers) keeping up: nothing waiting longer than APPLIER_MAX_LAG_SECONDS."""
    lag = apply_lag()
    db.session.rollback()
    recent = (f"; the last {lag.recent} applied waited p50 {lag.p50_seconds:.2f} s, p99 {lag.p99_seconds:.2f} s"
              if lag.recent else "")
    if lag.behind:
        return Check("webhook deliveries", False,
                     f"the applier is not draining: {lag.waiting} waiting, the oldest for "
                     f"{lag.oldest_waiting_seconds:.0f} s{recent}",
                     "Start a worker (`inbox worker`; each runs an applier) or check its log; "
                     "`flask --app inbox webhooks replay --failed` applies them now.")
    waiting = f"{lag.waiting} waiting (oldest {lag.oldest_waiting_seconds:.1f} s)" if lag.waiting else "none waiting"
    return Check("webhook deliveries", True, f"the applier is draining: {waiting}{recent}")


def obligations_on_time() -> Check:
    """Replies, media, profiles and deliveries owed: none overdue (the worker's reconciler moves them)."""
    late = obligations.overdue()
    if late:
        detail = "; ".join(f"{item.count} {item.kind} owed, the oldest {int(item.overdue_seconds)} s overdue"
                           for item in late)
        return Check("work owed", False, detail,
                     "Is a worker running (`inbox worker`) and can it reach the database and Redis? Its reconciler "
                     "picks all of this up within seconds once it runs; its log says why it cannot.")
    return Check("work owed", True, "no reply, media file, profile or delivery is overdue")


def public_base_url() -> Check:
    cfg = current_app.config
    base = cfg.get("PUBLIC_BASE_URL")
    if not base:
        return Check("PUBLIC_BASE_URL", False, "not set",
                     "Set PUBLIC_BASE_URL=https://inbox.example.com (the address Meta and staff use).")
    parts = urlsplit(base)
    if cfg["INBOX_ENV"] == "production" and parts.scheme != "https":
        return Check("PUBLIC_BASE_URL", False, f"{base} is not https",
                     "Serve the inbox over HTTPS with a valid certificate (Meta refuses others) and use https://.")
    url = base.rstrip("/") + "/healthz"
    try:
        answer = requests.get(url, timeout=10, allow_redirects=False)
    except requests.RequestException as exc:
        return Check("PUBLIC_BASE_URL", False, f"{url} is unreachable from here ({type(exc).__name__})",
                     "Check DNS, the proxy and the certificate: Meta must reach this address too.")
    if answer.status_code != 200:
        return Check("PUBLIC_BASE_URL", False, f"{url} answered {answer.status_code}",
                     "The proxy must pass requests to the web process; /healthz says what is down.")
    return Check("PUBLIC_BASE_URL", True, f"{url} answers 200")


def media_writable() -> Check:
    root = Path(current_app.config["MEDIA_ROOT"])
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("media folder", False, f"{root}: {exc.strerror or exc}",
                     f"Create it and give the inbox's user write access: chown -R <user> {root}.")
    free = os.statvfs(root)
    free_gb = free.f_bavail * free.f_frsize / 1e9
    return Check("media folder", True, f"{root} is writable ({free_gb:.1f} GB free)")


def account_checks() -> list[Check]:
    accounts = list(db.session.scalars(select(Account).where(Account.status != "disabled").order_by(Account.id)))
    db.session.rollback()
    checks = []
    for account in accounts:
        checks.append(_safely(f"{account.label} token", lambda: token_valid(account)))
        checks.append(_safely(f"{account.label} webhooks", lambda: webhook_subscription(account)))
    return checks


def token_valid(account: Account) -> Check:
    name = f"{account.label} token"
    if not access_token(account):
        return Check(name, False, f"no token ({account.status})", "Connect the account again (Accounts → Connect).")
    min_days = int(current_app.config["DOCTOR_TOKEN_MIN_DAYS"])
    if account.token_expires_at is not None and account.token_expires_at - utcnow() < timedelta(days=min_days):
        return Check(name, False, f"expires {account.token_expires_at:%Y-%m-%d %H:%M} UTC",
                     "The daily refresh should have renewed it: check the worker, run "
                     f"`flask --app inbox accounts refresh-tokens --account {account.ig_user_id}`, or reconnect.")
    try:
        me = graph.GraphClient.for_account(account).me(fields="user_id,username")
    except graph.TokenInvalid as exc:
        return Check(name, False, f"Instagram refuses it: {exc}", "Connect the account again (Accounts → Connect).")
    if str(me.get("user_id") or account.ig_user_id) != account.ig_user_id:
        return Check(name, False, f"the token belongs to another account ({me.get('user_id')})",
                     "Connect the right Instagram account again.")
    expiry = f", expires {account.token_expires_at:%Y-%m-%d}" if account.token_expires_at else ""
    return Check(name, True, f"valid{expiry}")


def webhook_subscription(account: Account) -> Check:
    name = f"{account.label} webhooks"
    flavour = account.api_flavour or "instagram"
    try:
        have = set(graph.GraphClient.for_account(account).subscribed_fields())
    except graph.TokenInvalid:
        return Check(name, False, "cannot be read: Instagram refuses the token", "Connect the account again.")
    missing = [f for f in graph.WEBHOOK_FIELDS[flavour] if f not in have]
    if missing:
        return Check(name, False, f"not subscribed to {', '.join(missing)}",
                     f"`flask --app inbox accounts refresh-tokens --account {account.ig_user_id}` subscribes them; "
                     "check the app's Webhooks settings in the Meta App Dashboard too.")
    return Check(name, True, "subscribed to " + ", ".join(graph.WEBHOOK_FIELDS[flavour]))
