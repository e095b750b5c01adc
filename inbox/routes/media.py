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

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from sqlalchemy import select

from ..auth import account_scoped
from ..extensions import db
from ..models import Attachment, Conversation, Identity
from ..services import media
from ..services.storage import StorageError, get_storage
from ..templating import is_htmx_fragment_request

bp = account_scoped(Blueprint("media", __name__, url_prefix="/accounts/<int:account_id>"))
public_bp = Blueprint("public_media", __name__, url_prefix="/m")


@bp.app_template_global("media_state_label")
def media_state_label(attachment) -> str:
    return media.STATE_LABELS.get(getattr(attachment, "media_state", None) or "", "")


@bp.get("/media/attachments/<int:attachment_id>")
def attachment(attachment_id: int):
    """One stored attachment of this account (files download; audio and video answer ranges)."""
    row = db.session.scalars(select(Attachment).where(Attachment.id == attachment_id,
                                                      Attachment.account_id == g.account.id)).first()
    if row is None or row.media_state != "stored" or not row.storage_key:
        abort(404)
    return _serve(row.storage_key, row.content_type or "application/octet-stream",
                  download=row.type == "file", name=media.download_name(row))


@bp.get("/media/pictures/<int:identity_id>")
def picture(identity_id: int):
    """The stored profile picture of one of this account's participants."""
    row = db.session.scalars(select(Identity).where(Identity.id == identity_id,
                                                    Identity.account_id == g.account.id)).first()
    if row is None or row.profile_pic_state != "stored" or not row.profile_pic_key:
        abort(404)
    ext = row.profile_pic_key.rsplit(".", 1)[-1]
    content_type = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}.get(
        ext, "image/jpeg")
    return _serve(row.profile_pic_key, content_type, download=False, name=f"picture.{ext}")


@bp.post("/media/attachments/<int:attachment_id>/retry")
def retry(attachment_id: int):
    """Download a failed attachment again; answers its state badge."""
    row = db.session.scalars(select(Attachment).where(Attachment.id == attachment_id,
                                                      Attachment.account_id == g.account.id)).first()
    if row is None:
        abort(404)
    media.retry_attachments(g.account.id, states=("failed",), attachment_id=attachment_id)
    row = db.session.get(Attachment, attachment_id)
    if is_htmx_fragment_request():
        return render_template("partials/_attachment_state.html", attachment=row, message=row.message)
    return redirect(request.referrer or url_for("conversations.index"))


@bp.post("/conversations/<int:conversation_id>/attachments")
def upload(conversation_id: int):
    """Send the attached files as replies, one message each (Instagram's types and sizes only)."""
    from ..services.sending import SendRefused, queue_attachment_replies, refusal_reason

    conversation = db.session.scalars(select(Conversation).where(
        Conversation.id == conversation_id, Conversation.account_id == g.account.id)).first()
    if conversation is None:
        abort(404)
    refusal = refusal_reason(conversation, g.account)
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
        messages = queue_attachment_replies(g.account.id, conversation.id, current_user.id, uploads, token)
    except SendRefused as refused:
        return _upload_refused(conversation, refused.reason)
    if not is_htmx_fragment_request():
        return redirect(request.referrer or url_for("conversations.index"))
    from .live import _message_html, append_to_thread, with_attributes

    bubbles = "".join(str(_message_html(m, conversation)) for m in messages)
    html = (append_to_thread(conversation, bubbles)
            + with_attributes(render_template("partials/_attach.html", conversation=conversation),
                              hx_swap_oob="true"))
    return _html(html, 201)


def _upload_refused(conversation: Conversation, reason: str):
    if not is_htmx_fragment_request():
        abort(422, description=reason)
    from .live import with_attributes

    html = with_attributes(render_template("partials/_attach.html", conversation=conversation, error=reason),
                           hx_swap_oob="true")
    return _html(html, 200)  # htmx swaps 2xx only: the form shows why


def _html(html: str, status: int):
    response = current_app.response_class(html, status=status, mimetype="text/html")
    response.vary.add("HX-Request")
    return response


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
