"""The people an account talks to: who they are on Instagram, and what we could not load."""

from __future__ import annotations

from flask import Blueprint, g

from ..auth import account_scoped
from ..services import identities
from ..templating import render

bp = account_scoped(Blueprint("people", __name__, url_prefix="/accounts/<int:account_id>/people"))


@bp.get("/")
def index():
    """Every customer of the account with their @username, name, picture and last fetch."""
    people = identities.people(g.account.id)
    return render("people/index.html", account=g.account, people=people,
                  counts=identities.identity_counts(g.account.id))
