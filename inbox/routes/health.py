"""Health check for load balancers and `inbox run`."""

from __future__ import annotations

from flask import Blueprint, current_app
from sqlalchemy import text

from ..extensions import db, get_redis, rkey
from ..services import obligations
from ..services.applier import apply_lag

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Database, Redis, worker heartbeat, the applier's lag and work owed; 200 only when all are ok."""
    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
        lag = apply_lag(window=0)
        checks["applier"] = ("ok" if not lag.behind else
                             f"behind: {lag.waiting} deliveries waiting, the oldest for "
                             f"{lag.oldest_waiting_seconds:.0f} s")
        db.session.rollback()
    except Exception as exc:  # report, never crash the health check
        checks["database"] = checks.get("database") or f"error: {type(exc).__name__}"
        checks.setdefault("applier", "unknown")
        db.session.rollback()
    try:
        r = get_redis()
        r.ping()
        checks["redis"] = "ok"
        beats = list(r.scan_iter(match=rkey("worker", "heartbeat", "*"), count=100))
        checks["worker"] = "ok" if beats else "no heartbeat"
    except Exception as exc:
        checks["redis"] = checks.get("redis") or f"error: {type(exc).__name__}"
        checks.setdefault("worker", "unknown")
    if checks["database"] == "ok":
        try:
            late = obligations.overdue()
            checks["work"] = "ok" if not late else "overdue: " + ", ".join(
                f"{item.kind} {int(item.overdue_seconds)} s" for item in late)
        except Exception as exc:
            db.session.rollback()
            checks["work"] = f"error: {type(exc).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    current_app.logger.debug("healthz %s", checks)
    return {"status": "ok" if healthy else "degraded", **checks}, 200 if healthy else 503
