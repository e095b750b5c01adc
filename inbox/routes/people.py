"""The people an account talks to: who they are on Instagram, what we could not load, and erasing one."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, request, url_for
from flask_login import current_user

from ..auth import account_scoped, require_role
from ..services import erasure, identities
from ..templating import render

bp = account_scoped(Blueprint("people", __name__, url_prefix="/accounts/<int:account_id>/people"))


@bp.get("/")
def index():
    """Every customer of the account with their @username, name, picture and last fetch."""
    people = identities.people(g.account.id)
    return render("people/index.html", account=g.account, people=people,
                  counts=identities.identity_counts(g.account.id))


@bp.get("/<igsid>")
def show(igsid: str):
    """One customer: who they are, their conversation, and (for admins) erasing them."""
    person = identities.person(g.account.id, igsid)
    if person is None:
        abort(404)
    return render("people/show.html", account=g.account, person=person, role=g.role,
                  holdings=erasure.customer_holdings(g.account.id, igsid))


@bp.post("/<igsid>/erase")
@require_role("admin")
def erase(igsid: str):
    """Delete everything the account holds about this customer (admins; confirmed by a checkbox)."""
    if identities.person(g.account.id, igsid) is None:
        abort(404)
    if request.form.get("confirm") != "erase":
        flash("Tick the box to confirm the erasure.", "error")
        return redirect(url_for("people.show", igsid=igsid))
    done = erasure.erase_customer(g.account.id, igsid, requested_by="staff", actor_user_id=current_user.id)
    counts = done.counts or {}
    flash(f"The customer was erased: {counts.get('messages', 0)} messages, {counts.get('attachments', 0)} "
          f"attachments and {counts.get('files', 0)} stored files deleted.", "success")
    return redirect(url_for("people.index"))
