"""Keyword automations of one account: the rules, their history, a dry run; admins add, pause and resume."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, request, url_for
from flask_login import current_user
from werkzeug.exceptions import NotFound
from werkzeug.datastructures import MultiDict

from ..auth import account_scoped, require_role
from ..services import automations
from ..services.automations import AutomationError, AutomationNotFound
from ..services.products import posts as posts_service
from ..templating import render
from .errors import error_page

bp = account_scoped(Blueprint("automations", __name__, url_prefix="/accounts/<int:account_id>"))


@bp.errorhandler(AutomationNotFound)
def _not_found(_error):
    return error_page(NotFound())


def _histories(rules) -> dict:
    return {rule.id: automations.history(g.account.id, rule.id, limit=10) for rule in rules}


@bp.get("/automations/")
def index():
    """The account's rules, each with its latest firings."""
    rules = automations.list_automations(g.account.id)
    return render("automations/index.html", account=g.account, rules=rules, histories=_histories(rules),
                  is_admin=g.role == "admin")


@bp.get("/automations/<int:automation_id>")
def show(automation_id: int):
    """One rule and its whole history."""
    rule = automations.get_automation(g.account.id, automation_id)
    return render("automations/show.html", account=g.account, rule=rule,
                  history=automations.history(g.account.id, rule.id, limit=200), is_admin=g.role == "admin")


def _form_values() -> dict:
    form = request.form
    chosen = form.getlist("media_ids") if form.get("scope") == "chosen" else None
    return dict(name=form.get("name", ""), keywords=form.get("keywords", ""), template=form.get("template", ""),
                public_replies=[line for line in form.get("public_replies", "").split("\n")],
                media_ids=chosen)


def _form(values: dict | None = None, *, error: str | None = None, matches=None, status: int = 200):
    return render("automations/form.html", account=g.account, values=values or MultiDict(), error=error,
                  matches=matches,
                  posts=posts_service.list_posts(g.account.id, limit=100), status=status)


@bp.get("/automations/new")
@require_role("admin")
def new():
    """The form for a new rule."""
    return _form()


@bp.post("/automations/")
@require_role("admin")
def create():
    """Save a rule (active at once), or show what it would have matched (the dry run button)."""
    values = _form_values()
    try:
        spec = automations.check_rule(g.account.id, **values)
    except AutomationError as exc:
        return _form(request.form, error=str(exc), status=422)
    if request.form.get("dry_run"):
        matches = automations.dry_run(g.account.id, spec.keywords, spec.media_ids)
        return _form(request.form, matches=matches)
    try:
        rule = automations.create_automation(g.account.id, spec, current_user.id)
    except AutomationError as exc:
        return _form(request.form, error=str(exc), status=422)
    flash(f"Rule {rule.name!r} is on.", "success")
    return redirect(url_for("automations.index"), 303)


@bp.post("/automations/<int:automation_id>/pause")
@require_role("admin")
def pause(automation_id: int):
    """Pause a rule: it stops answering at once."""
    return _set(automation_id, False)


@bp.post("/automations/<int:automation_id>/resume")
@require_role("admin")
def resume(automation_id: int):
    """Resume a paused rule."""
    return _set(automation_id, True)


def _set(automation_id: int, active: bool):
    rule = automations.set_active(g.account.id, automation_id, active)
    return render("automations/index.html", "partials/_automation.html", account=g.account, rule=rule,
                  rules=automations.list_automations(g.account.id), is_admin=True,
                  histories=_histories([rule]), history=automations.history(g.account.id, rule.id, limit=10), oob=None)
