"""Rows for tests, made through the same services the app uses where there is one."""

from __future__ import annotations

import itertools

from inbox.extensions import db
from inbox.services import accounts as account_service
from inbox.services import staff

PASSWORD = "correct horse battery"
_seq = itertools.count(1)


def _detached(obj):
    """Loaded, then detached, so tests can read it outside an app context."""
    db.session.refresh(obj)
    db.session.expunge(obj)
    return obj


class Factory:
    def __init__(self, app):
        self.app = app

    def user(self, email: str | None = None, *, name: str = "", superadmin: bool = False,
             password: str = PASSWORD):
        with self.app.app_context():
            user = staff.create_user(email or f"staff{next(_seq)}@example.com", password, name=name,
                                     superadmin=superadmin)
            return _detached(user)

    def account(self, ig_user_id: str | None = None, username: str | None = None, *, token: str | None = "TOKEN"):
        n = next(_seq)
        with self.app.app_context():
            account = account_service.add_account(ig_user_id or str(17840000000000000 + n),
                                                  username or f"shop{n}", token=token)
            return _detached(account)

    def grant(self, user, account, role: str = "agent"):
        with self.app.app_context():
            staff.grant(user.id, account.id, role)

    def staff_on(self, account, role: str = "agent", **kwargs):
        """A user with a role on an account."""
        user = self.user(**kwargs)
        self.grant(user, account, role)
        return user
