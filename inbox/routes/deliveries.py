"""Webhook deliveries for site administrators: what failed, and a button to apply it again.

Site-wide rather than per account: one delivery can carry entries of several accounts
(and of accounts we do not have yet), so only a site administrator may see its body.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, request, url_for

from ..auth import require_superadmin
from ..extensions import db
from ..models import WebhookDelivery
from ..services import obligations
from ..services.applier import apply_lag
from ..services.deliveries import StorageUnavailable, list_deliveries, replay_delivery
from ..templating import render

bp = Blueprint("deliveries", __name__, url_prefix="/admin/deliveries")


@bp.get("/")
@require_superadmin
def index():
    """Work owed per kind, and failed and interrupted deliveries (or all recent ones with ?show=all)."""
    show_all = request.args.get("show") == "all"
    deliveries = list_deliveries(failed_only=not show_all)
    return render("deliveries/index.html", deliveries=deliveries, show_all=show_all, lag=apply_lag(),
                  owed=obligations.oldest(), owed_labels=OWED_LABELS)


OWED_LABELS = {"reply": "Replies to send", "media": "Media files to keep", "profile": "Profiles to fetch",
               "delivery": "Webhook deliveries to apply", "check": "Periodic checks (daily check, recovery)"}


@bp.get("/<int:delivery_id>")
@require_superadmin
def show(delivery_id: int):
    """One delivery: its body as received and what each event did."""
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        abort(404)
    body = bytes(delivery.body).decode("utf-8", "replace")
    return render("deliveries/show.html", delivery=delivery, body=body)


@bp.post("/<int:delivery_id>/replay")
@require_superadmin
def replay(delivery_id: int):
    """Apply a stored delivery again (idempotent)."""
    try:
        result = replay_delivery(delivery_id)
    except StorageUnavailable:
        flash("The database is unavailable; try again in a moment.", "error")
        return redirect(url_for("deliveries.index"))
    if result is None:
        abort(404)
    if result.status == "failed":
        flash(f"Delivery {delivery_id} failed again: {result.error}", "error")
    else:
        flash(f"Delivery {delivery_id} applied again: {result.status}.", "success")
    target = request.form.get("next")
    if target == "show":
        return redirect(url_for("deliveries.show", delivery_id=delivery_id))
    return redirect(url_for("deliveries.index"))
