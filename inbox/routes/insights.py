"""The Insights page: charts for a period, each chart's CSV, the account's hours, and sales outcomes."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, flash, g, redirect, request, url_for
from flask_login import current_user

from ..auth import account_scoped, require_role
from ..services.insights import charts, export, facts, hours, report, sales
from ..templating import render

bp = account_scoped(Blueprint("insights", __name__, url_prefix="/accounts/<int:account_id>/insights"))


def _period() -> tuple[hours.Period, str | None]:
    settings = facts.settings_for(g.account.id)
    try:
        return report.parse_period(settings.timezone, request.args.get("days"), request.args.get("from"),
                                   request.args.get("to")), None
    except report.PeriodError as exc:
        return report.parse_period(settings.timezone, None, None, None), str(exc)


def _period_args(period: hours.Period) -> dict:
    if request.args.get("from") or request.args.get("to"):
        return {"from": period.first.isoformat(), "to": period.last.isoformat()}
    return {"days": (period.last - period.first).days + 1}


@bp.get("/")
def index():
    """Charts for 7, 30 or 90 days or a custom period, compared with the period before."""
    if facts.first_build_pending(g.account.id):
        return render("insights/preparing.html", account=g.account, status=202)
    period, error = _period()
    result = report.build(g.account.id, period, max_age=current_app.config["INSIGHTS_REFRESH_SECONDS"])
    settings = facts.settings_for(g.account.id)
    return render("insights/index.html", account=g.account, role=g.role, report=result, error=error,
                  charts=charts.page_charts(result), tables=export.tables(result),
                  period_args=_period_args(period) if not error else {"days": 30},
                  settings=settings, schedule=hours.schedule_from_json(settings.business_hours),
                  zones=hours.zone_names(), weekdays=hours.WEEKDAYS, labels=report.SOURCE_LABELS,
                  colours=charts.SOURCE_COLOURS,
                  status=400 if error else 200)


@bp.get("/<chart>.csv")
def csv(chart: str):
    """One chart's numbers as CSV for the same period."""
    if chart not in export.CHARTS:
        abort(404)
    if facts.first_build_pending(g.account.id):
        return Response("Insights are being prepared; try again in a minute.\n", status=503, mimetype="text/plain",
                        headers={"Retry-After": "30"})
    period, error = _period()
    if error:
        abort(400, error)
    result = report.build(g.account.id, period)
    return Response(export.to_csv(export.table(result, chart)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{export.filename(result, chart)}"'})


@bp.post("/settings")
@require_role("admin")
def save_settings():
    """The account's time zone, business hours (or every hour) and currency (admins)."""
    form = request.form
    try:
        schedule = None
        if form.get("hours") == "schedule":
            schedule = hours.parse_schedule({d: (form.get(f"open_{d}", ""), form.get(f"close_{d}", ""))
                                             for d in range(7) if form.get(f"day_{d}")})
        facts.update_settings(g.account.id, timezone=form.get("timezone", "UTC"), schedule=schedule,
                              currency=form.get("currency", ""))
    except hours.HoursError as exc:
        flash(str(exc), "error")
    else:
        flash("Saved. Response times now count these hours.", "success")
    return redirect(url_for("insights.index", **{k: v for k, v in request.args.items() if k in ("days", "from", "to")}))


@bp.route("/conversations/<int:conversation_id>/outcome", methods=["GET", "POST"])
def outcome(conversation_id: int):
    """A conversation's sale outcome: Sold (product, quantity, amount), Not sold (a reason), or cleared."""
    error = None
    if request.method == "POST":
        action = request.form.get("action")
        try:
            if action == "sold":
                sales.mark_sold(g.account.id, conversation_id, product_id=request.form.get("product_id"),
                                quantity=request.form.get("quantity"), amount=request.form.get("amount"),
                                user_id=current_user.id)
            elif action == "not_sold":
                sales.mark_not_sold(g.account.id, conversation_id, reason=request.form.get("reason"),
                                    user_id=current_user.id)
            elif action == "clear":
                sales.clear_outcome(g.account.id, conversation_id, user_id=current_user.id)
            else:
                error = "Choose Sold, Not sold or Clear."
        except sales.NotFound:
            abort(404)
        except sales.OutcomeError as exc:
            error = str(exc)
        if not request.headers.get("HX-Request"):
            if error:
                flash(error, "error")
            return redirect(url_for("conversations.show", conversation_id=conversation_id))
    try:
        view = sales.outcome_view(g.account.id, conversation_id)
    except sales.NotFound:
        abort(404)
    return render("partials/_thread_outcome.html", outcome=view, error=error, account_id=g.account.id,
                  status=422 if error else 200)
