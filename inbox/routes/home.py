"""The landing page: straight to the inbox of the user's first account."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, session, url_for
from flask_login import current_user

from ..services.staff import accounts_for

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    """Open the last used account's inbox, or explain how to connect one."""
    accounts = accounts_for(current_user)
    if not accounts:
        return render_template("home/no_accounts.html")
    last = session.get("account_id")
    chosen = next((a for a in accounts if a.id == last), accounts[0])
    return redirect(url_for("conversations.index", account_id=chosen.id))
