"""/metrics for Prometheus: off unless METRICS_TOKEN is set, then only with that bearer token."""

from __future__ import annotations

import hmac

from flask import Blueprint, abort, current_app, request

from .. import metrics
from ..services import obligations

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape():
    """Every process's counters and the state read now, in Prometheus' text format."""
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        abort(404)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        return "a bearer token is required", 401, {"WWW-Authenticate": 'Bearer realm="metrics"',
                                                   "Content-Type": "text/plain; charset=utf-8"}
    return metrics.exposition(current_app, obligations.oldest()), 200, {"Content-Type": metrics.CONTENT_TYPE, "Cache-Control": "no-store"}
