"""Site administration: connect Instagram accounts (Business Login), see their health, manage staff.

Site administrators only (`require_superadmin`, for every view of the blueprint). The
OAuth callback is not public: the admin who started the flow comes back to it in the
same session, and the `state` kept there must match, so nobody can make an admin's
browser connect an account the admin did not choose (login CSRF).
"""

from __future__ import annotations

import hmac
import secrets
import time

from flask import Blueprint, abort, current_app, flash, redirect, request, session, url_for
from flask_login import current_user

from ..auth import require_superadmin, revoke_access
from ..security import form_id
from ..models import utcnow
from ..services import accounts_maintenance, staff
from ..services import connect as connecting
from ..templating import render

bp = Blueprint("admin", __name__, url_prefix="/admin")

# The pending Business Login in this session: its state, who started it, when.
_PENDING = "connect_oauth"
_PENDING_MAX_AGE = 3600  # Meta's codes live an hour


@bp.before_request
@require_superadmin
def _superadmins_only():
    return None


def _public_url(path: str) -> str:
    """An absolute URL of this inbox as Meta must see it (PUBLIC_BASE_URL behind a proxy)."""
    base = current_app.config.get("PUBLIC_BASE_URL") or request.host_url
    return base.rstrip("/") + path


def _redirect_uri() -> str:
    """The OAuth redirect URI; it must match the one registered in the App Dashboard exactly."""
    return _public_url(url_for("admin.connect_callback"))


def _connect_page(error: str | None = None, status: int = 200):
    return render("admin/connect.html", status=status, error=error, oauth=connecting.oauth_app(),
                  redirect_uri=_redirect_uri(), webhook_url=_public_url("/webhooks/instagram"),
                  scopes=connecting.SCOPES)


@bp.get("/connect")
def connect():
    """Explain Business Login and offer the button that starts it."""
    return _connect_page()


@bp.post("/connect")
def connect_start():
    """Start Business Login: remember a fresh state in the session, go to Instagram."""
    state = secrets.token_urlsafe(32)
    try:
        url = connecting.authorization_url(_redirect_uri(), state)
    except connecting.ConnectError as exc:
        return _connect_page(str(exc), 400)
    session[_PENDING] = {"state": state, "user": current_user.id, "at": int(time.time())}
    return redirect(url)


@bp.get("/connect/callback")
def connect_callback():
    """Instagram sends the admin back here with a code (or an error); the work goes to a job."""
    pending = session.pop(_PENDING, None)
    error = request.args.get("error")
    if error:
        # The person pressed Cancel (access_denied), or Meta refused the request itself.
        if error == "access_denied":
            return _connect_page("The authorization was cancelled on Instagram, so no account was connected. "
                                 "Start again and choose “Allow” to connect.")
        detail = request.args.get("error_description") or request.args.get("error_reason") or error
        return _connect_page(f"Instagram refused the authorization: {detail[:300]}.", 400)

    state = request.args.get("state", "")
    if not _state_matches(pending, state):
        return _connect_page("This Instagram sign-in does not belong to your session: it was already used, it "
                             "expired, or it was started in another browser. Nothing was connected. Start again.",
                             400)
    code = request.args.get("code", "").strip().removesuffix("#_")
    if not code or len(code) > 4096:
        return _connect_page("Instagram sent no authorization code. Start again.", 400)
    run_id = connecting.begin_connect(current_user.id, code, _redirect_uri())
    return redirect(url_for("admin.connect_run", run_id=run_id))


def _state_matches(pending, state: str) -> bool:
    if not isinstance(pending, dict) or not state or not isinstance(pending.get("state"), str):
        return False
    if pending.get("user") != current_user.id or time.time() - pending.get("at", 0) > _PENDING_MAX_AGE:
        return False
    return hmac.compare_digest(pending["state"].encode(), state.encode())


@bp.get("/connect/runs/<int:run_id>")
def connect_run(run_id: int):
    """How a connect run is going (htmx polls the fragment until it is done)."""
    run = connecting.connect_run(run_id)
    if run is None:
        abort(404)
    return render("admin/connect_run.html", "admin/_connect_run.html", run=run, now=utcnow())


@bp.get("/accounts")
def accounts():
    """Every connected account: status, token expiry, webhook subscription."""
    return render("admin/accounts.html", rows=accounts_maintenance.accounts_overview(), now=utcnow(),
                  refresh_days=current_app.config["TOKEN_REFRESH_WITHIN_DAYS"],
                  check_hour=current_app.config["ACCOUNT_CHECK_HOUR_UTC"])


@bp.post("/accounts/check")
def account_check():
    """Run the daily check for one account now, in the worker."""
    accounts_maintenance.request_check(_form_int("account_id"))
    flash("Checking the token and webhook subscription now. Reload this page in a moment.", "info")
    return redirect(url_for("admin.accounts"))


@bp.get("/staff")
def staff_page():
    """Staff users and their roles; grant and revoke."""
    return render("admin/staff.html", users=staff.list_staff(),
                  accounts=[row.account for row in accounts_maintenance.accounts_overview()])


def _form_int(name: str) -> int:
    return form_id(request.form.get(name))


@bp.post("/staff/grant")
def staff_grant():
    """Give a staff user a role on an account (or change it)."""
    try:
        membership = staff.grant_role(_form_int("user_id"), _form_int("account_id"), request.form.get("role", ""))
    except staff.StaffError as exc:
        flash(str(exc), "error")
    else:
        flash(f"{membership.user.display_name} is now {membership.role} on {membership.account.label}.", "success")
    return redirect(url_for("admin.staff_page"))


@bp.post("/staff/revoke")
def staff_revoke():
    """Take a staff user's role on an account away."""
    user_id, account_id = _form_int("user_id"), _form_int("account_id")
    if staff.revoke(user_id, account_id):
        revoke_access(user_id, account_id)  # their open sockets stop hearing the account at once
        flash("Access removed.", "success")
    else:
        flash("That person had no role on that account.", "info")
    return redirect(url_for("admin.staff_page"))
