"""Meta's data-deletion and deauthorize callbacks, and the status page of a deletion request."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, request, url_for

from ..extensions import csrf
from ..services import erasure, meta_callbacks
from ..templating import render

log = logging.getLogger(__name__)

bp = Blueprint("meta", __name__, url_prefix="/meta")
# Meta signs these POSTs (signed_request); it cannot send our CSRF token.
csrf.exempt(bp)


def _public_url(path: str) -> str:
    base = current_app.config.get("PUBLIC_BASE_URL") or request.host_url
    return base.rstrip("/") + path


@bp.post("/data-deletion")
def data_deletion():
    """Verify Meta's signed_request, queue the erasure, answer with the status URL and confirmation code."""
    try:
        requested = meta_callbacks.request_data_deletion(request.form.get("signed_request", ""))
    except meta_callbacks.BadSignedRequest as exc:
        log.warning("data-deletion callback refused: %s", exc)
        return {"error": "invalid signed_request"}, 400
    code = requested.confirmation_code
    return {"url": _public_url(url_for("meta.deletion_status", code=code)), "confirmation_code": code}, 200


@bp.get("/data-deletion/<code>")
def deletion_status(code: str):
    """What became of a data-deletion request, for the person who made it."""
    requested = erasure.find_request(code)
    if requested is None:
        abort(404)
    return render("meta/deletion_status.html", erasure=requested)


@bp.post("/deauthorize")
def deauthorize():
    """The person removed the app on Instagram: their account is disconnected and its token dropped."""
    try:
        meta_callbacks.deauthorize(request.form.get("signed_request", ""))
    except meta_callbacks.BadSignedRequest as exc:
        log.warning("deauthorize callback refused: %s", exc)
        return {"error": "invalid signed_request"}, 400
    return {"status": "ok"}, 200
