"""The inbox: conversation list and thread of one account."""

from __future__ import annotations

from flask import Blueprint, g, session

from ..auth import account_scoped
from ..templating import render

bp = account_scoped(Blueprint("conversations", __name__, url_prefix="/accounts/<int:account_id>"))


@bp.get("/")
def index():
    """The inbox page of one account."""
    session["account_id"] = g.account.id
    return render("inbox/index.html", account=g.account, conversations=[], conversation=None)
