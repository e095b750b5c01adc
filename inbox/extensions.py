"""Extensions created once, unbound, and bound to the app in create_app; the Redis connection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import redis
from flask import current_app
from flask_login import LoginManager
from flask_mail import Mail
from flask_migrate import Migrate
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData, event
from sqlalchemy.orm import DeclarativeBase, Session

from . import embedded_redis

log = logging.getLogger(__name__)

# Stable constraint names, so migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
sock = Sock()
mail = Mail()  # invites by email; sends only when MAIL_SERVER is set


def init_app(app) -> None:
    """Bind every extension to the app."""
    db.init_app(app)
    # The project's migrations/ beside the package; an installed copy (the image) says where it put them.
    directory = app.config.get("MIGRATIONS_DIR") or str(Path(__file__).resolve().parent.parent / "migrations")
    migrate.init_app(app, db, directory=directory, render_as_batch=True, compare_type=True)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to continue."
    login_manager.login_message_category = "info"
    csrf.init_app(app)
    sock.init_app(app)
    mail.init_app(app)
    app.config.setdefault("SOCK_SERVER_OPTIONS", {"ping_interval": 25})


# --- Redis -------------------------------------------------------------------------

def redis_url(app=None) -> str:
    """The configured Redis URL, or the embedded server's (started on first use)."""
    app = app or current_app
    url = app.config.get("REDIS_URL")
    if url:
        return url
    url, _ = embedded_redis.ensure_running(Path(app.instance_path) / "redis")
    app.config["REDIS_URL"] = url
    return url


def get_redis(app=None) -> redis.Redis:
    """One client (with its own pool) per app and process."""
    app = app or current_app
    client = app.extensions.get("inbox_redis")
    if client is None:
        client = redis.Redis.from_url(redis_url(app), health_check_interval=30)
        app.extensions["inbox_redis"] = client
    return client


def rkey(*parts: object, app=None) -> str:
    """A Redis key in this deployment's namespace: rkey("live", 3) -> "inbox:live:3"."""
    app = app or current_app
    return ":".join([app.config["REDIS_NAMESPACE"], *map(str, parts)])


# --- Work that must wait for the transaction --------------------------------------

def on_commit(callback: Callable[[], None], *, last: bool = False) -> None:
    """Run callback after the current db.session transaction commits; drop it on rollback.

    Callbacks run in the order they were registered, which is how services keep the
    rule "commit, then enqueue, then publish"; `last=True` ones run after all the others
    (the live publishes of a transaction, sent together).
    """
    db.session.info.setdefault("on_commit_last" if last else "on_commit", []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_on_commit(session: Session) -> None:
    callbacks = session.info.pop("on_commit", []) + session.info.pop("on_commit_last", [])
    for callback in callbacks:
        try:
            callback()
        except Exception:  # the data is committed; a failed follow-up must not undo it
            log.exception("after-commit callback %r failed", callback)


@event.listens_for(Session, "after_rollback")
def _drop_on_rollback(session: Session) -> None:
    session.info.pop("on_commit", None)
    session.info.pop("on_commit_last", None)
