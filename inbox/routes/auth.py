"""Login, logout and the one-time setup of the first administrator."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, request, session, url_for
from flask_login import current_user, login_user, logout_user

from .. import auth as access
from .. import metrics
from ..extensions import db, get_redis, rkey
from ..models import utcnow
from ..security import same_site
from ..services import staff
from ..templating import render

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    """Only same-site paths; anything else goes to the inbox."""
    if target and not urlsplit(target).netloc and same_site(target):
        return target
    return url_for("home.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Log a staff user in; repeated failures are slowed down."""
    if not access._has_staff():
        return redirect(url_for("auth.setup"))
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    email = ""
    status = 200
    if request.method == "POST":
        email = staff.normalize_email(request.form.get("email", ""))
        ip = request.remote_addr or "unknown"
        wait = access.login_lock_remaining(email, ip)
        if wait:
            metrics.login_attempt("throttled")
            flash(f"Too many failed attempts. Try again in {wait} seconds.", "error")
            status = 429
        else:
            user = staff.authenticate(email, request.form.get("password", ""))
            if user is None:
                locked = access.record_login_failure(email, ip)
                metrics.login_attempt("throttled" if locked else "failure")
                if locked:
                    flash(f"Too many failed attempts. Try again in {locked} seconds.", "error")
                    status = 429
                else:
                    flash("Wrong email or password.", "error")
                    status = 401
            else:
                metrics.login_attempt("success")
                access.clear_login_failures(email)
                user.last_login_at = utcnow()
                db.session.commit()
                _new_session()
                login_user(user, remember=bool(request.form.get("remember")))
                return redirect(_safe_next(request.args.get("next")))
    return render("auth/login.html", status=status, email=email)


def _new_session() -> None:
    """A login starts a new session: nothing of the anonymous one (its CSRF token) carries over."""
    session.clear()


@bp.post("/logout")
def logout():
    """End the session here and everywhere it was copied, and close the person's live sockets."""
    if current_user.is_authenticated:
        access.revoke_access(current_user.id)
    logout_user()
    session.clear()
    flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    """Create the first administrator; impossible once any staff user exists."""
    if access._has_staff():
        abort(404)
    form = {"email": "", "name": ""}
    status = 200
    if request.method == "POST":
        form = {"email": request.form.get("email", ""), "name": request.form.get("name", "")}
        password = request.form.get("password", "")
        if password != request.form.get("password_confirm", ""):
            flash("The two passwords differ.", "error")
            status = 400
        else:
            # One setup at a time: two racing first-admin forms must not both win.
            lock = get_redis().lock(rkey("setup-lock"), timeout=30, blocking_timeout=5)
            with lock:
                if access._has_staff():
                    abort(404)
                try:
                    user = staff.create_user(form["email"], password, name=form["name"], superadmin=True)
                except staff.StaffError as exc:
                    flash(str(exc), "error")
                    status = 400
                else:
                    _new_session()
                    login_user(user)
                    flash("Welcome! Your administrator account is ready.", "success")
                    return redirect(url_for("home.index"))
    return render("auth/setup.html", status=status, form=form)
