"""The landing page: straight to the inbox of the user's first account."""

from __future__ import annotations

from flask import Blueprint, redirect, session, url_for
from flask_login import current_user

from ..services.staff import accounts_for
from ..templating import render

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    """Open the last used account's inbox, or explain how to connect one."""
    accounts = accounts_for(current_user)
    if not accounts:
        return render("home/no_accounts.html")
    last = session.get("account_id")
    chosen = next((a for a in accounts if a.id == last), accounts[0])
    return redirect(url_for("conversations.index", account_id=chosen.id))
