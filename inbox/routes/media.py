"""Kept media: served to the account's staff only; staff uploads; signed links for Instagram.

- `media.attachment` / `media.picture` (account-scoped: other accounts' staff get 404)
  serve a stored copy with its content type, `nosniff`, a download disposition for files,
  range requests (send_file, conditional) and private long-lived caching (the URL carries
  a version of the file, so a new copy is a new URL).
- `media.retry`: download a failed attachment again (any member).
- `media.upload`: staff attach files to a reply; one message per file.
- `public_media.file` (no login: PUBLIC_BLUEPRINTS): a short-lived signed link Instagram
  fetches a staff upload from. Nothing else is reachable without a login.
"""

from __future__ import annotations

import secrets

from flask import Blueprint, abort, current_app, g, redirect, request, send_file, url_for
from flask_login import current_user

from ..auth import account_scoped
from ..security import same_site
from ..models import Conversation
from ..services import media, sending
from ..services.storage import StorageError, get_storage
from ..templating import is_htmx_fragment_request, render
from .loaders import get_attachment_or_404, get_conversation_or_404, get_identity_or_404

bp = account_scoped(Blueprint("media", __name__, url_prefix="/accounts/<int:account_id>"))
public_bp = Blueprint("public_media", __name__, url_prefix="/m")


@bp.get("/media/attachments/<int:attachment_id>")
def attachment(attachment_id: int):
    """One stored attachment of this account (files download; audio and video answer ranges)."""
    row = get_attachment_or_404(attachment_id)
    if row.media_state != "stored" or not row.storage_key:
        abort(404)
    return _serve(row.storage_key, row.content_type or "application/octet-stream",
                  download=row.type == "file", name=media.download_name(row))


@bp.get("/media/pictures/<int:identity_id>")
def picture(identity_id: int):
    """The stored profile picture of one of this account's participants."""
    row = get_identity_or_404(identity_id)
    if row.profile_pic_state != "stored" or not row.profile_pic_key:
        abort(404)
    ext = row.profile_pic_key.rsplit(".", 1)[-1]
    content_type = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}.get(
        ext, "image/jpeg")
    return _serve(row.profile_pic_key, content_type, download=False, name=f"picture.{ext}")


@bp.post("/media/attachments/<int:attachment_id>/retry")
def retry(attachment_id: int):
    """Download a failed attachment again; answers its state badge."""
    row = get_attachment_or_404(attachment_id)
    media.retry_attachments(g.account.id, states=("failed",), attachment_id=row.id)
    row = get_attachment_or_404(attachment_id)
    if is_htmx_fragment_request():
        return render("partials/_attachment_state.html", attachment=row, message=row.message)
    return redirect(same_site(request.referrer) or url_for("conversations.index"))


@bp.post("/conversations/<int:conversation_id>/attachments")
def upload(conversation_id: int):
    """Send the attached files as replies, one message each (Instagram's types and sizes only)."""
    conversation = get_conversation_or_404(conversation_id)
    refusal = sending.refusal_reason(conversation, g.account)
    if refusal:  # before storing anything
        return _upload_refused(conversation, refusal)
    files = [f for f in request.files.getlist("files") if f and f.filename]
    if not files:
        return _upload_refused(conversation, "Choose a file to send.")
    if len(files) > media.MAX_FILES:
        return _upload_refused(conversation, f"Send at most {media.MAX_FILES} files at once.")
    uploads: list[media.Upload] = []
    try:
        for file in files:
            uploads.append(media.store_upload(file.stream, file.filename, file.mimetype))
    except media.UploadError as exc:
        media.discard_uploads(uploads)
        return _upload_refused(conversation, str(exc))
    token = request.form.get("client_token") or secrets.token_hex(12)
    try:
        messages = sending.queue_attachment_replies(g.account.id, conversation.id, current_user.id, uploads, token)
    except sending.SendRefused as refused:
        return _upload_refused(conversation, refused.reason)
    if not is_htmx_fragment_request():
        return redirect(same_site(request.referrer) or url_for("conversations.index"))
    return render("partials/_attach_response.html", conversation=conversation, messages=messages, status=201)


def _upload_refused(conversation: Conversation, reason: str):
    if not is_htmx_fragment_request():
        abort(422, description=reason)
    # htmx swaps 2xx only: the form comes back saying why.
    return render("partials/_attach_response.html", conversation=conversation, messages=[], error=reason)


@public_bp.get("/<token>.<ext>")
def file(token: str, ext: str):
    """A staff upload, for Instagram to fetch while the signed link is valid."""
    row = media.attachment_for_token(token)
    if row is None:
        abort(404)
    response = _serve(row.storage_key, row.content_type or "application/octet-stream", download=False,
                      name=media.download_name(row), cache=False)
    return response


def _serve(key: str, content_type: str, *, download: bool, name: str, cache: bool = True):
    store = get_storage()
    try:
        path = store.local_path(key)
        if path is None or not store.exists(key):
            abort(404)
    except StorageError:
        abort(404)
    response = send_file(path, mimetype=content_type, as_attachment=download, download_name=name,
                         conditional=True, etag=True, max_age=None)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin" if cache else "cross-origin"
    if cache:
        response.cache_control.private = True
        response.cache_control.max_age = int(current_app.config.get("MEDIA_CACHE_SECONDS", 31536000))
    else:
        response.cache_control.no_store = True
    return response
