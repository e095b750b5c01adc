"""An account's team in the browser: members and roles, invites, removal, your away status, the
assignment settings; the account's labels and saved replies.

Account-scoped (members only; another account's ids 404). Admins invite, change roles, remove,
revoke invites, change settings and manage labels; everyone sets their own status and manages
saved replies.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, g, redirect, request, url_for
from flask_login import current_user

from ..auth import account_scoped, require_role, revoke_access
from ..services import assignees, presence, saved_replies, team
from ..services import labels as labels_service
from ..services.staff import StaffError
from ..templating import render
from .loaders import get_label_or_404, get_saved_reply_or_404

bp = account_scoped(Blueprint("team", __name__, url_prefix="/accounts/<int:account_id>"))


def invite_link(token: str) -> str:
    """The absolute link of an invite (PUBLIC_BASE_URL behind a proxy)."""
    base = current_app.config.get("PUBLIC_BASE_URL") or request.host_url
    return base.rstrip("/") + url_for("invites.accept", token=token)


def _team_page(status: int = 200, **extra):
    people = team.members(g.account.id)
    return render("team/index.html", status=status, members=people, invites=team.pending_invites(g.account.id),
                  online=presence.online_user_ids(g.account.id, [m.user.id for m in people]), role=g.role, **extra)


@bp.get("/team")
def index():
    """The account's team: members, roles, pending invites, your status, assignment settings."""
    return _team_page()


@bp.post("/team/invites")
@require_role("admin")
def invite():
    """Invite a person by email with a role: the link is shown once (and emailed when mail is set up)."""
    try:
        made = team.invite(g.account.id, request.form.get("email", ""), request.form.get("role", "agent"),
                           invited_by=current_user.id, accept_url=invite_link)
    except StaffError as exc:
        return _team_page(422, error=str(exc), form=request.form)
    return _team_page(new_invite=made, new_link=invite_link(made.token))


@bp.post("/team/invites/<int:invite_id>/revoke")
@require_role("admin")
def revoke_invite(invite_id: int):
    """Revoke a pending invite: its link stops working."""
    try:
        team.revoke_invite(g.account.id, invite_id)
    except StaffError as exc:
        flash(str(exc), "error")
    else:
        flash("Invite revoked: its link no longer works.", "success")
    return redirect(url_for(".index"))


@bp.post("/team/members/<int:user_id>/role")
@require_role("admin")
def change_role(user_id: int):
    """Make a member admin or agent."""
    try:
        changed = team.change_role(g.account.id, user_id, request.form.get("role", ""))
    except StaffError as exc:
        flash(str(exc), "error")
    else:
        flash(f"{changed.user.display_name} is now {changed.role}.", "success")
    return redirect(url_for(".index"))


@bp.post("/team/members/<int:user_id>/remove")
@require_role("admin")
def remove(user_id: int):
    """Take a person off the team: their access to this account ends at once."""
    if team.member(g.account.id, user_id) is None:
        abort(404)
    try:
        user = team.remove_member(g.account.id, user_id)
    except StaffError as exc:
        flash(str(exc), "error")
    else:
        revoke_access(user_id, g.account.id)  # their open sockets stop hearing this account now
        flash(f"{user.display_name} no longer has access to {g.account.label}.", "success")
    return redirect(url_for(".index"))


@bp.post("/team/away")
def away():
    """Set your own status: away people get no round-robin conversations."""
    user = team.set_away(current_user.id, request.form.get("away") == "1")
    flash("You are away: new conversations go to others." if user.away else "You are available.", "success")
    return redirect(_local(request.form.get("next", "")) or url_for(".index"))


def _local(path: str) -> str | None:
    """A path on this site to go back to (never another site's address)."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path and len(path) < 2000:
        return path
    return None


@bp.post("/team/settings")
@require_role("admin")
def settings():
    """Assign on reply, and round-robin of new conversations."""
    assignees.set_settings(g.account.id, assign_on_reply=request.form.get("assign_on_reply") == "1",
                           auto_assign=request.form.get("auto_assign") == "1")
    flash("Assignment settings saved.", "success")
    return redirect(url_for(".index"))


# --- Labels -----------------------------------------------------------------------------------

@bp.get("/labels")
def labels():
    """The account's labels (admins add, rename, recolour and delete them)."""
    return render("team/labels.html", labels=labels_service.labels(g.account.id), role=g.role)


@bp.post("/labels")
@require_role("admin")
def create_label():
    """Add a label."""
    try:
        labels_service.create_label(g.account.id, request.form.get("name", ""), request.form.get("color", "gray"))
    except labels_service.LabelError as exc:
        return render("team/labels.html", status=422, labels=labels_service.labels(g.account.id), role=g.role,
                      error=str(exc), form=request.form)
    return redirect(url_for(".labels"))


@bp.post("/labels/<int:label_id>")
@require_role("admin")
def update_label(label_id: int):
    """Rename or recolour a label."""
    label = get_label_or_404(label_id)
    try:
        labels_service.update_label(g.account.id, label.id, name=request.form.get("name"),
                                    color=request.form.get("color"))
    except labels_service.LabelError as exc:
        flash(str(exc), "error")
    return redirect(url_for(".labels"))


@bp.post("/labels/<int:label_id>/delete")
@require_role("admin")
def delete_label(label_id: int):
    """Delete a label (it comes off every conversation)."""
    label = get_label_or_404(label_id)
    labels_service.delete_label(g.account.id, label.id)
    flash(f"Label “{label.name}” deleted.", "success")
    return redirect(url_for(".labels"))


# --- Saved replies ----------------------------------------------------------------------------

@bp.get("/replies")
def replies():
    """The account's saved replies (`/shortcut` in the composer)."""
    return render("team/replies.html", replies=saved_replies.replies(g.account.id))


@bp.post("/replies")
def create_reply():
    """Add a saved reply."""
    try:
        saved_replies.create_reply(g.account.id, request.form.get("shortcut", ""), request.form.get("text", ""),
                                   user_id=current_user.id)
    except saved_replies.SavedReplyError as exc:
        return render("team/replies.html", status=422, replies=saved_replies.replies(g.account.id), error=str(exc),
                      form=request.form)
    return redirect(url_for(".replies"))


@bp.post("/replies/<int:reply_id>")
def update_reply(reply_id: int):
    """Change a saved reply's shortcut or text."""
    reply = get_saved_reply_or_404(reply_id)
    try:
        saved_replies.update_reply(g.account.id, reply.id, request.form.get("shortcut", ""),
                                   request.form.get("text", ""))
    except saved_replies.SavedReplyError as exc:
        flash(str(exc), "error")
    return redirect(url_for(".replies"))


@bp.post("/replies/<int:reply_id>/delete")
def delete_reply(reply_id: int):
    """Delete a saved reply."""
    reply = get_saved_reply_or_404(reply_id)
    saved_replies.delete_reply(g.account.id, reply.id)
    return redirect(url_for(".replies"))
