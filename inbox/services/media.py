"""Attachment media: keep a copy before Instagram's links expire, serve it, send staff files.

Instagram's media links are signed and stop working after hours or days (CDN links carry
their expiry as `oe`), so the inbox keeps its own copy. The rules:

- `note_attachments(ids)` runs inside the ingest transaction. Attachments whose media may
  be kept (image, video, audio, file, and the previews of shared posts and reels) become
  `pending` and get a `download_media` job on the `low` queue after the commit (one job
  per attachment, so a replay never doubles it). Story media (`story_mention`,
  `ig_story`) is never downloaded: `not_kept`, the link only, shown while it lives
  (Meta's rules forbid storing it:
  https://developers.facebook.com/docs/messenger-platform/instagram/features/story-mention).
- `download_attachment(id)` fetches through `safe_fetch` (allow-listed hosts, no private
  addresses, size cap, content-type check) into `storage`, records the state (stored,
  expired, too_large, refused, failed) and publishes `message.updated`. No transaction is
  open while bytes travel. A transient failure is recorded, then raised so RQ retries.
- A deleted Attachment row (unsend, merge) deletes its file after the commit; rows removed
  by database cascades leave orphans that `media sweep` deletes.
- Profile pictures go the same way (`note_profile_picture` → `keep_profile_picture`).
- Staff uploads are checked against the Send API's limits and stored (`store_upload`);
  `sending.queue_attachment_replies` sends them, one message per attachment, and
  Instagram fetches each through a short-lived signed public URL (`public_url`).
"""

from __future__ import annotations

import logging
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, urlsplit

from flask import current_app, has_request_context, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from ..extensions import db, on_commit
from ..live.publish import publish_after_commit
from ..models import Account, Attachment, Identity, Message, utcnow
from ..queue import enqueue
from . import safe_fetch
from .graph import GraphClient, GraphError, NotFound
from .storage import StorageError, get_storage, new_key

log = logging.getLogger(__name__)

# Attachment type -> the kind of media safe_fetch accepts for it.
KEEP_KINDS = {"image": "image", "video": "video", "audio": "audio", "file": "file",
              "share": "preview", "ig_post": "preview", "ig_reel": "preview", "reel": "preview"}
STORY_TYPES = ("story_mention", "ig_story")
STATE_LABELS = {
    "pending": "Saving a copy…", "stored": "Saved", "expired": "Expired on Instagram before a copy was kept",
    "too_large": "Too large to keep", "refused": "Not downloaded", "failed": "Download failed",
    "not_kept": "Story (not kept)",
}


class MediaUnavailable(RuntimeError):
    """A transient failure (recorded on the row); raised so the RQ job is retried."""


# --- Ingestion's hook ------------------------------------------------------------------------

def note_attachments(attachment_ids: list[int]) -> None:
    """Called inside the ingest transaction once new attachments have ids (after flush)."""
    ids = [int(i) for i in attachment_ids or () if i is not None]
    if not ids:
        return
    table = Attachment.__table__
    db.session.execute(
        update(table).where(table.c.id.in_(ids), table.c.type.in_(STORY_TYPES)).values(media_state="not_kept"))
    pending = db.session.scalars(
        update(table).where(table.c.id.in_(ids), table.c.type.in_(tuple(KEEP_KINDS)),
                            table.c.source_url.is_not(None), table.c.storage_key.is_(None))
        .values(media_state="pending").returning(table.c.id)).all()
    if pending:
        on_commit(lambda: enqueue_downloads(sorted(pending)))


def enqueue_downloads(ids: list[int]) -> None:
    """A download job per attachment (one that is queued or running already is kept)."""
    for attachment_id in ids:
        enqueue("inbox.tasks.download_media", attachment_id, queue="low", timeout=300, retries=3,
                retry_intervals=[30, 300, 1800])


# --- Downloading -----------------------------------------------------------------------------

def download_attachment(attachment_id: int, *, force: bool = False) -> str:
    """Keep a copy of one attachment's media; returns its state ("gone" when the row is)."""
    row = db.session.execute(
        select(Attachment.id, Attachment.type, Attachment.source_url, Attachment.media_state,
               Attachment.storage_key, Attachment.account_id, Attachment.message_id, Message.conversation_id,
               Message.mid)
        .join(Message, Message.id == Attachment.message_id).where(Attachment.id == attachment_id)).first()
    db.session.rollback()  # no transaction stays open while bytes travel
    if row is None:
        return "gone"
    if row.media_state == "stored" and row.storage_key and not force:
        return "stored"
    kind = KEEP_KINDS.get(row.type)
    if kind is None:
        return row.media_state or "not_kept"
    fresh_url = None
    if not row.source_url:
        fetched = safe_fetch.Fetched("refused", "Instagram gave no link for this media")
    else:
        fetched = safe_fetch.fetch(row.source_url, kind, area="att")
    if fetched.outcome == "expired" and row.mid:
        # The Conversations API hands out a fresh link for a thread's 20 newest messages.
        fresh_url, why = fresh_link(row.account_id, row.message_id, row.mid, attachment_id)
        if fresh_url and fresh_url != row.source_url:
            fetched = safe_fetch.fetch(fresh_url, kind, area="att")
        elif why:
            fetched = safe_fetch.Fetched("expired", f"{fetched.reason}; {why}", status=fetched.status)
    values: dict[str, Any] = {"media_state": fetched.outcome, "media_error": fetched.reason,
                              "fetched_at": utcnow()}
    if fresh_url:
        values["source_url"] = fresh_url
    if fetched.outcome == "stored":
        values.update(storage_key=fetched.key, content_type=fetched.content_type, size_bytes=fetched.size,
                      media_error=None)
    elif row.storage_key:
        values.pop("media_state")  # a failed re-download keeps the copy we have
        values["media_error"] = None
    table = Attachment.__table__
    updated = db.session.execute(update(table).where(table.c.id == attachment_id).values(**values)).rowcount
    if not updated:
        db.session.rollback()
        if fetched.key:  # unsent while we downloaded: the copy must not outlive the row
            get_storage().delete(fetched.key)
        return "gone"
    if fetched.outcome == "stored" and row.storage_key and row.storage_key != fetched.key:
        _delete_after_commit(row.storage_key)
    publish_after_commit(row.account_id, "message.updated", conversation_id=row.conversation_id,
                         message_id=row.message_id)
    db.session.commit()
    if fetched.outcome == "failed" and fetched.transient:
        raise MediaUnavailable(f"attachment {attachment_id}: {fetched.reason}")
    return values.get("media_state", "stored")


def fresh_link(account_id: int, message_id: int, mid: str, attachment_id: int) -> tuple[str | None, str | None]:
    """A new link for one attachment from the Conversations API, or (None, why not)."""
    account = db.session.get(Account, account_id)
    siblings = list(db.session.execute(
        select(Attachment.id, Attachment.type).where(Attachment.message_id == message_id)
        .order_by(Attachment.position, Attachment.id)))
    db.session.rollback()
    if account is None or account.status != "active":
        return None, "the account is not connected, so no new link could be asked for"
    try:
        body = GraphClient.for_account(account).message(mid, fields="id,attachments,shares")
    except NotFound:
        return None, "Instagram re-serves links only for a thread's 20 newest messages"
    except GraphError as exc:
        return None, f"asking Instagram for a new link failed ({type(exc).__name__})"
    files = [a.id for a in siblings if a.type in ("image", "video", "audio", "file")]
    shares = [a.id for a in siblings if a.type in ("share", "ig_post", "ig_reel", "reel")]
    if attachment_id in files:
        items = ((body.get("attachments") or {}).get("data") or []) if isinstance(body, dict) else []
        index = files.index(attachment_id)
        item = items[index] if index < len(items) and isinstance(items[index], dict) else {}
        url = ((item.get("image_data") or {}).get("url") or (item.get("video_data") or {}).get("url")
               or item.get("file_url"))
    elif attachment_id in shares:
        items = ((body.get("shares") or {}).get("data") or []) if isinstance(body, dict) else []
        index = shares.index(attachment_id)
        url = items[index].get("link") if index < len(items) and isinstance(items[index], dict) else None
    else:
        url = None
    if not isinstance(url, str) or not url:
        return None, "Instagram gave no new link (it re-serves them only for a thread's 20 newest messages)"
    return url, None


def retry_attachments(account_id: int, *, states: tuple[str, ...] = ("failed",),
                      attachment_id: int | None = None) -> list[int]:
    """Queue another download for an account's attachments in these states; returns their ids."""
    table = Attachment.__table__
    stmt = update(table).where(table.c.account_id == account_id, table.c.media_state.in_(states),
                               table.c.type.in_(tuple(KEEP_KINDS)), table.c.source_url.is_not(None))
    if attachment_id is not None:
        stmt = stmt.where(table.c.id == attachment_id)
    ids = sorted(db.session.scalars(stmt.values(media_state="pending", media_error=None).returning(table.c.id)))
    if ids:
        on_commit(lambda: enqueue_downloads(ids))
        for message_id, conversation_id in db.session.execute(
                select(Message.id, Message.conversation_id).join(Attachment, Attachment.message_id == Message.id)
                .where(Attachment.id.in_(ids)).distinct()):
            publish_after_commit(account_id, "message.updated", conversation_id=conversation_id,
                                 message_id=message_id)
    db.session.commit()
    return ids


# --- What the browser loads ------------------------------------------------------------------

def allowed_media_host(url: str, config=None) -> bool:
    """Whether a link points at an allowed Instagram media host (https unless told otherwise)."""
    cfg = config or current_app.config
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    schemes = ("https",) if cfg.get("MEDIA_REQUIRE_HTTPS", True) else ("https", "http")
    hosts = cfg.get("MEDIA_ALLOWED_HOSTS") or ()
    return parts.scheme in schemes and safe_fetch.host_allowed(parts.hostname or "", hosts)


def link_expires_at(url: str | None) -> datetime | None:
    """When an Instagram CDN link stops working: its `oe` parameter (hex epoch seconds)."""
    if not url:
        return None
    try:
        query = dict(parse_qsl(urlsplit(url).query))
        return datetime.fromtimestamp(int(query["oe"], 16), tz=timezone.utc)
    except (KeyError, ValueError, OverflowError, OSError):
        return None


def attachment_src(attachment: Any) -> str | None:
    """The URL the browser should load for an attachment's media, or None (show a placeholder).

    The stored copy when there is one; else Instagram's link while it is on an allowed
    media host and has not expired (`oe`); else None.
    """
    if attachment is None:
        return None
    key = getattr(attachment, "storage_key", None)
    if getattr(attachment, "media_state", None) == "stored" and key:
        return _url("media.attachment", account_id=attachment.account_id, attachment_id=attachment.id,
                    v=_version(key))
    url = getattr(attachment, "source_url", None)
    if not url or getattr(attachment, "media_state", None) in ("expired", "refused"):
        return None
    if getattr(attachment, "type", None) in STORY_TYPES and _story_gone(attachment):
        return None
    if not allowed_media_host(url):
        return None
    expires = link_expires_at(url)
    if expires is not None and expires <= utcnow():
        return None
    return url


def _story_gone(attachment: Any) -> bool:
    """Stories vanish a day after they were posted; the mention came at most then."""
    message = getattr(attachment, "message", None)
    ms = getattr(message, "meta_timestamp", None)
    if not ms:
        return False
    age = utcnow().timestamp() - ms / 1000
    return age > float(current_app.config.get("MEDIA_STORY_SECONDS", 24 * 3600))


def picture_src(identity: Any) -> str | None:
    """The stored copy of an identity's picture, or None."""
    key = getattr(identity, "profile_pic_key", None)
    if getattr(identity, "profile_pic_state", None) == "stored" and key and getattr(identity, "id", None):
        return _url("media.picture", account_id=identity.account_id, identity_id=identity.id, v=_version(key))
    return None


def _url(endpoint: str, **values: Any) -> str:
    """url_for in a request; the same path outside one (a worker rendering, a CLI)."""
    if has_request_context():
        return url_for(endpoint, **values)
    root = current_app.config.get("APPLICATION_ROOT") or "/"
    return current_app.url_map.bind("localhost", script_name=root).build(endpoint, values)


def _version(key: str) -> str:
    return key.rsplit("/", 1)[-1][:8]


def download_name(attachment: Attachment) -> str:
    ext = (attachment.storage_key or "").rsplit(".", 1)[-1] or "bin"
    name = attachment.filename or f"{attachment.type}-{attachment.id}.{ext}"
    return safe_filename(name) or f"{attachment.type}-{attachment.id}.{ext}"


def safe_filename(name: str | None) -> str:
    """A display name for a file: no paths, no control characters, at most 120 characters."""
    name = unicodedata.normalize("NFC", str(name or "")).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '"<>|:*?').strip(" .")
    return name[:120]


# --- Deleting files whose rows are gone -------------------------------------------------------

_DELETED_KEYS = "media_deleted_keys"


@event.listens_for(Attachment, "before_delete")
def _attachment_deleted(mapper, connection, target: Attachment) -> None:
    if target.storage_key:
        session = Session.object_session(target)
        if session is not None:
            session.info.setdefault(_DELETED_KEYS, []).append(target.storage_key)


def _delete_after_commit(key: str) -> None:
    db.session.info.setdefault(_DELETED_KEYS, []).append(key)


@event.listens_for(Session, "after_commit")
def _delete_files(session: Session) -> None:
    keys = session.info.pop(_DELETED_KEYS, None)
    if not keys:
        return
    try:
        store = get_storage()
    except RuntimeError:  # no app context: the sweep will find them
        return
    for key in keys:
        try:
            store.delete(key)
        except (StorageError, OSError):
            log.warning("could not delete stored media %s", key, exc_info=True)


@event.listens_for(Session, "after_rollback")
def _keep_files(session: Session) -> None:
    session.info.pop(_DELETED_KEYS, None)


def sweep(*, grace_seconds: float = 3600, dry_run: bool = False) -> list[str]:
    """Delete stored files no row refers to (older than grace_seconds: a download may be committing)."""
    store = get_storage()
    orphans: list[str] = []
    batch: list[str] = []

    def check(keys: list[str]) -> None:
        used = set(db.session.scalars(select(Attachment.storage_key).where(Attachment.storage_key.in_(keys))))
        used |= set(db.session.scalars(select(Identity.profile_pic_key).where(Identity.profile_pic_key.in_(keys))))
        orphans.extend(k for k in keys if k not in used)

    for key in store.keys(older_than=time.time() - grace_seconds):
        batch.append(key)
        if len(batch) >= 500:
            check(batch)
            batch = []
    if batch:
        check(batch)
    db.session.rollback()
    if not dry_run:
        for key in orphans:
            store.delete(key)
    return orphans


# --- Profile pictures ------------------------------------------------------------------------

def note_profile_picture(account_id: int, igsid: str) -> None:
    """Called inside the transaction that saved a profile with a picture: keep it after the commit."""
    on_commit(lambda: enqueue("inbox.tasks.keep_profile_picture", account_id, igsid, queue="low", timeout=120,
                              retries=2, retry_intervals=[60, 600]))


def keep_profile_picture(account_id: int, igsid: str) -> str:
    """Keep a copy of a participant's current profile picture; returns the state."""
    row = db.session.execute(
        select(Identity.id, Identity.profile_pic_url, Identity.profile_pic_key)
        .where(Identity.account_id == account_id, Identity.igsid == igsid)).first()
    db.session.rollback()
    if row is None or not row.profile_pic_url:
        return "gone"
    url = row.profile_pic_url
    fetched = safe_fetch.fetch(url, "picture", area="pic")
    table = Identity.__table__
    stmt = update(table).where(table.c.id == row.id, table.c.profile_pic_url == url)
    if fetched.outcome == "stored":
        updated = db.session.execute(stmt.values(profile_pic_key=fetched.key, profile_pic_state="stored")).rowcount
        if not updated:  # a newer picture arrived meanwhile; its own job keeps it
            db.session.rollback()
            get_storage().delete(fetched.key)
            return "gone"
        if row.profile_pic_key and row.profile_pic_key != fetched.key:
            _delete_after_commit(row.profile_pic_key)
    elif not row.profile_pic_key:
        db.session.execute(stmt.values(profile_pic_state=fetched.outcome))
    # No live event: the page already shows Instagram's (still valid) link; the next render uses the copy.
    db.session.commit()
    if fetched.outcome == "failed" and fetched.transient:
        raise MediaUnavailable(f"picture of {igsid}: {fetched.reason}")
    return fetched.outcome


# --- Staff uploads: outgoing attachments ------------------------------------------------------

MB = 1024 * 1024
# What the Send API takes: kind -> (content types, largest size).
# https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/messaging-api/
SEND_LIMITS = {
    "image": ({"image/png", "image/jpeg"}, 8 * MB),
    "audio": ({"audio/aac", "audio/mp4", "audio/x-m4a", "audio/wav", "audio/x-wav", "video/mp4"}, 25 * MB),
    "video": ({"video/mp4", "video/ogg", "video/x-msvideo", "video/quicktime", "video/webm"}, 25 * MB),
    "file": ({"application/pdf"}, 25 * MB),
}
MAX_FILES = 10
_EXTENSION_KINDS = {
    "png": ("image", "image/png"), "jpg": ("image", "image/jpeg"), "jpeg": ("image", "image/jpeg"),
    "m4a": ("audio", "audio/mp4"), "aac": ("audio", "audio/aac"), "wav": ("audio", "audio/wav"),
    "mp4": ("video", "video/mp4"), "mov": ("video", "video/quicktime"), "webm": ("video", "video/webm"),
    "ogg": ("video", "video/ogg"), "ogv": ("video", "video/ogg"), "avi": ("video", "video/x-msvideo"),
    "pdf": ("file", "application/pdf"),
}


class UploadError(ValueError):
    """A file staff tried to send that Instagram would not take; the message says why."""


@dataclass(frozen=True)
class Upload:
    kind: str
    content_type: str
    size: int
    key: str
    filename: str


def store_upload(stream: BinaryIO, filename: str | None, declared_type: str | None = None) -> Upload:
    """Check a staff file against the Send API's types and sizes and store it; raises UploadError."""
    name = safe_filename(filename) or "attachment"
    kind, content_type = _upload_kind(name, (declared_type or "").split(";")[0].strip().lower())
    types, limit = SEND_LIMITS[kind]
    head = stream.read(64)
    sniffed = safe_fetch.sniff(head)
    if kind == "image" and sniffed != content_type:
        if sniffed in types:
            content_type = sniffed
        else:
            raise UploadError(f"{name} is not a PNG or JPEG image.")
    if not head:
        raise UploadError(f"{name} is empty.")
    if kind == "file" and sniffed != "application/pdf":
        raise UploadError(f"{name} is not a PDF.")
    if kind in ("audio", "video") and not _signature_fits(content_type, head):
        raise UploadError(f"{name} is not a {content_type.split('/')[1].upper()} file.")

    def chunks():
        total = len(head)
        yield head
        while True:
            chunk = stream.read(64 * 1024)
            if not chunk:
                return
            total += len(chunk)
            if total > limit:
                raise UploadError(f"{name} is larger than Instagram's {limit // MB} MB limit for this kind of file.")
            yield chunk

    key = new_key("out", content_type)
    size = get_storage().put(key, chunks())
    return Upload(kind, content_type, size, key, name)


def _signature_fits(content_type: str, head: bytes) -> bool:
    """Whether the first bytes look like the audio or video container the type names."""
    box = head[4:8]
    if content_type in ("video/mp4", "audio/mp4", "audio/x-m4a"):
        return box == b"ftyp"
    if content_type == "video/quicktime":
        return box in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
    if content_type == "video/webm":
        return head.startswith(b"\x1a\x45\xdf\xa3")
    if content_type == "video/ogg":
        return head.startswith(b"OggS")
    if content_type in ("audio/wav", "audio/x-wav"):
        return head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    if content_type == "video/x-msvideo":
        return head[:4] == b"RIFF" and head[8:12] == b"AVI "
    if content_type == "audio/aac":
        return head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0)
    return False


def _upload_kind(name: str, declared: str) -> tuple[str, str]:
    for kind, (types, _) in SEND_LIMITS.items():
        if declared in types and not (kind == "audio" and declared == "video/mp4"):
            return kind, declared
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext in _EXTENSION_KINDS:
        return _EXTENSION_KINDS[ext]
    raise UploadError(f"Instagram cannot send {name}: send a PNG or JPEG image, an MP4/MOV/WebM video, "
                      "M4A/AAC/WAV audio or a PDF.")


def discard_uploads(uploads: list[Upload]) -> None:
    store = get_storage()
    for upload in uploads:
        store.delete(upload.key)


def public_url(attachment: Attachment) -> str:
    """A short-lived signed link Instagram fetches the file from (MEDIA_PUBLIC_URL_SECONDS)."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    if not base:
        raise UploadError("PUBLIC_BASE_URL is not set, so Instagram cannot fetch the file.")
    token = _serializer().dumps({"a": attachment.id, "v": _version(attachment.storage_key or "")})
    ext = (attachment.storage_key or "").rsplit(".", 1)[-1]
    root = (current_app.config.get("APPLICATION_ROOT") or "/").rstrip("/")
    path = current_app.url_map.bind("localhost").build("public_media.file", {"token": token, "ext": ext})
    return base.rstrip("/") + root + path


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="inbox.public-media")


def attachment_for_token(token: str) -> Attachment | None:
    """The outgoing attachment a signed link names, while it is valid; else None."""
    try:
        data = _serializer().loads(token, max_age=int(current_app.config.get("MEDIA_PUBLIC_URL_SECONDS", 3600)))
    except (SignatureExpired, BadSignature):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("a"), int):
        return None
    attachment = db.session.get(Attachment, data["a"])
    if attachment is None or not attachment.storage_key or _version(attachment.storage_key) != data.get("v"):
        return None
    if attachment.message.direction != "out" or attachment.media_state != "stored":
        return None
    return attachment


def outgoing_attachment(message: Message) -> tuple[str, str] | None:
    """What sending.send_message sends for a staff file: (kind, signed public URL); None for text."""
    attachment = message.attachments[0] if message.attachments and message.direction == "out" else None
    if attachment is None or not attachment.storage_key or attachment.type not in SEND_LIMITS:
        return None
    return attachment.type, public_url(attachment)


def media_summary(account_id: int) -> dict[str, int]:
    """How many attachments of an account are in each state (the CLI prints it)."""
    rows = db.session.execute(select(Attachment.media_state, func.count()).where(Attachment.account_id == account_id)
                              .group_by(Attachment.media_state))
    return {state or "none": count for state, count in rows}
