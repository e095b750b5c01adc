"""Accepting an invite: the link an admin sent (public: the person may have no login yet).

A new person sets their name and password and lands in the account, logged in; someone who
already has a login logs in first and joins with one click (a person can belong to several
accounts). The link works once, until it expires or is revoked.
"""

from __future__ import annotations

from flask import Blueprint, redirect, request, url_for
from flask_login import current_user, login_user

from ..services import staff, team
from ..services.staff import StaffError
from ..templating import render

bp = Blueprint("invites", __name__)


@bp.route("/invite/<token>", methods=["GET", "POST"])
def accept(token: str):
    """Show the invite (set a name and password, or join with your login), and accept it."""
    invite = team.find_invite(token)
    if invite is None:
        return render("team/accept.html", status=404, invite=None, error=None, form={})
    existing = staff.find_user(invite.email)
    joining = team.invite_account(invite)
    if request.method == "GET":
        return render("team/accept.html", invite=invite, invite_account=joining, existing=existing, error=None,
                      form={})
    try:
        if current_user.is_authenticated:
            if current_user.email != invite.email:
                raise StaffError(f"This invite is for {invite.email}; you are logged in as {current_user.email}. "
                                 "Log out first, then open the link again.")
            user, account = team.accept_invite(token, existing_user_id=current_user.id)
        else:
            if request.form.get("password", "") != request.form.get("password_confirm", ""):
                raise StaffError("The two passwords differ.")
            user, account = team.accept_invite(token, name=request.form.get("name", ""),
                                               password=request.form.get("password", ""))
            login_user(user)
    except StaffError as exc:
        return render("team/accept.html", status=422, invite=team.find_invite(token), invite_account=joining,
                      existing=existing, error=str(exc), form=request.form)
    return redirect(url_for("conversations.index", account_id=account.id))
