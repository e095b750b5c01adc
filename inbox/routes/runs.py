"""Background runs of one account: start "Refresh identities" and "Resync", watch their progress.

Any member may refresh identities (it only rereads profiles). Resync is for admins: it
spends the account's Conversations API budget (2 calls/s, shared with everything else
that reads threads), can run for minutes on a large account and may add many
conversations at once, so whoever owns the account decides when.
"""

from __future__ import annotations

import json

from flask import Blueprint, abort, g, redirect, url_for
from flask_login import current_user

from ..auth import account_scoped, require_role
from ..models import Account, JobRun
from ..services import identities, jobruns, sync
from ..templating import is_htmx_fragment_request, render

bp = account_scoped(Blueprint("runs", __name__, url_prefix="/accounts/<int:account_id>/runs"))

KINDS = (identities.REFRESH, sync.RESYNC)
LABELS = {identities.REFRESH: "Refresh identities", sync.RESYNC: "Resync"}
_STATE_RANK = {"queued": 0, "running": 1, "finished": 2, "failed": 2}


@bp.app_template_global()
def job_version(run: JobRun) -> int:
    """Grows over a run's life, so a late push never replaces a newer render."""
    return _STATE_RANK.get(run.state, 2) * 10**12 + (run.progress_done or 0)


@bp.app_template_global()
def job_label(run: JobRun) -> str:
    return LABELS.get(run.kind, run.kind.replace("_", " ").capitalize())


@bp.app_template_global()
def identity_picture(identity) -> str | None:
    """The picture to show for an identity (None: show initials); see identities.picture_url."""
    return identities.picture_url(identity)


@bp.app_template_global()
def name_hint(identity) -> str:
    from ..display import name_hint as hint

    return hint(identity)


@bp.get("/")
def recent():
    """The account's current and recent runs (the inbox header loads them)."""
    runs = jobruns.recent_runs(g.account.id, KINDS)
    return render("runs/index.html", "partials/_job_runs.html", runs=runs)


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
    run = jobruns.get_run(g.account.id, run_id)
    if run is None:
        abort(404)
    response = render("runs/run.html", "partials/_job_run.html", run=run, announce=True)
    if is_htmx_fragment_request() and not run.is_active:
        response.status_code = 286
        # The page may refetch what the run changed (names, conversations).
        response.headers["HX-Trigger"] = json.dumps({"job-run-finished": {"id": run.id, "kind": run.kind}})
    return response


def _started(run: JobRun):
    if is_htmx_fragment_request():
        runs = jobruns.recent_runs(g.account.id, KINDS)
        if all(r.id != run.id for r in runs):
            runs.insert(0, run)
        return render("runs/index.html", "partials/_job_runs.html", runs=runs)
    return redirect(url_for("runs.status", run_id=run.id), 303)


def job_frame(account: Account, event: dict) -> str | None:
    """The live push for `job.progress`: the run's partial, swapped in by its id."""
    from flask import render_template

    run = jobruns.get_run(account.id, int(event.get("job_run_id") or 0))
    if run is None:
        return None
    return render_template("partials/_job_run.html", run=run, oob=True, announce=True)


try:  # the live inbox's websocket renders each event once per process (routes/live.py)
    from .live import frame_renderer
except ImportError:  # not on this branch yet: pages poll instead
    frame_renderer = None
if frame_renderer is not None:
    frame_renderer("job.progress")(job_frame)
