"""Background runs of one account: start "Refresh identities" and "Resync", watch their progress.

Any member may refresh identities (it only rereads profiles). Resync is for admins: it
spends the account's Conversations API budget (2 calls/s, shared with everything else
that reads threads), can run for minutes on a large account and may add many
conversations at once, so whoever owns the account decides when.
"""

from __future__ import annotations

import json

from flask import Blueprint, g, redirect, url_for
from flask_login import current_user

from ..auth import account_scoped, require_role
from ..models import JobRun
from ..services import identities, jobruns, sync
from ..templating import is_htmx_fragment_request, render
from .loaders import get_run_or_404

bp = account_scoped(Blueprint("runs", __name__, url_prefix="/accounts/<int:account_id>/runs"))

KINDS = (identities.REFRESH, sync.RESYNC)  # the runs the inbox header starts and lists


@bp.get("/")
def recent():
    """The account's current and recent runs (the inbox header loads them)."""
    runs = jobruns.recent_runs(g.account.id, KINDS)
    return render("runs/index.html", "partials/_runs.html", runs=runs)


@bp.post("/refresh-identities")
def start_refresh():
    """Start "Refresh identities", or show the run already going."""
    run, _ = identities.start_refresh(g.account.id, current_user.id)
    return _started(run)


@bp.post("/resync")
@require_role("admin")
def start_resync():
    """Start a resync from the Conversations API (admins), or show the run already going."""
    run, _ = sync.start_resync(g.account.id, current_user.id)
    return _started(run)


@bp.get("/<int:run_id>")
def status(run_id: int):
    """One run: a progress bar while it works, then its summary (286 stops htmx polling)."""
    run = get_run_or_404(run_id)
    response = render("runs/run.html", "partials/_run.html", run=run)
    if is_htmx_fragment_request() and not run.is_active:
        response.status_code = 286
        # The page may refetch what the run changed (names, conversations).
        response.headers["HX-Trigger"] = json.dumps({"run-finished": {"id": run.id, "kind": run.kind}})
    return response


def _started(run: JobRun):
    if is_htmx_fragment_request():
        runs = jobruns.recent_runs(g.account.id, KINDS)
        if all(r.id != run.id for r in runs):
            runs.insert(0, run)
        return render("runs/index.html", "partials/_runs.html", runs=runs)
    return redirect(url_for("runs.status", run_id=run.id), 303)
