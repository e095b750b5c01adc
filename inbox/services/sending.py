"""Staff replies: a pending row at once, then the Send API in a job, reconciled with the echo.

The life of a reply:

- `queue_reply` checks what can be checked here (text, size, the 24-hour window, the
  account's token), writes a pending outgoing `Message` with the composer's client token
  (a double submit finds the first row), and after the commit enqueues `send_message` on
  the `high` queue and publishes `message.created` + `conversation.updated`.
- `send_message` (the job) sends once. Before calling Meta it marks the row "sending"
  (committed), so a job that died mid-call is never sent again blindly. The Send API's
  `message_id` goes through `ingest.echoes.reconcile_sent`, which merges with an echo that got
  there first. Final errors fail the row with a human reason; throttling and outages leave
  it pending and raise, so RQ retries the job; an ambiguous failure (the send may have
  left) is never resent: the row waits for its echo ("waiting for Instagram") and
  `expire_unconfirmed` fails it if none came within SEND_ECHO_WAIT_SECONDS.
- `queue_attachment_replies` does the same for staff files, one message per file.
- `retry_send` puts a failed row back in the queue.

Every status change publishes `message.updated`.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timedelta, timezone

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .. import metrics
from ..extensions import db, on_commit
from ..live.publish import publish_after_commit
from ..models import Account, Attachment, Comment, Conversation, Message, utcnow
from ..queue import enqueue
from . import assignees, conversations, graph, media, presence, staff
from .accounts import mark_reconnect_needed
from .ingest.echoes import reconcile_sent

log = logging.getLogger(__name__)

MAX_TEXT_BYTES = 1000  # Meta's limit for a text message, in UTF-8 bytes
WINDOW = timedelta(hours=24)
# error_code values for rows that are still pending (the UI says why it waits).
SENDING = "sending"  # the Send API call is in flight (or the worker died during it)
AMBIGUOUS = "ambiguous"  # the send may have left: waiting for Instagram's echo
RETRYING = "retrying"  # throttled or Meta unavailable: the job retries later

DEFAULT_RETRY_INTERVALS = (5, 30, 120, 600, 1800)
DEFAULT_ECHO_WAIT_SECONDS = 600


class SendRefused(Exception):
    """The reply cannot be queued; `reason` is shown to the staff member as is."""

    def __init__(self, reason: str, *, status: int = 422):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Collision(SendRefused):
    """A colleague replied to this conversation seconds ago: sending needs a confirmation."""

    def __init__(self, colleague: str):
        super().__init__(f"{colleague} replied to this customer a moment ago. Send yours as well?", status=409)
        self.colleague = colleague


class RetryLater(Exception):
    """Meta is throttling or unavailable: RQ runs the job again later (the row still says what is owed)."""


class NotFound(SendRefused):
    """No such conversation or message in this account (the route answers 404)."""

    def __init__(self, what: str = "conversation"):
        super().__init__(f"No such {what}.", status=404)


# --- The 24-hour window and the composer's checks ----------------------------------------

def window_closes_at(conversation: Conversation):
    """When replying stops being allowed (None: the customer never wrote)."""
    if conversation.last_customer_message_at is None:
        return None
    return conversation.last_customer_message_at + WINDOW


def refusal_reason(conversation: Conversation, account: Account | None = None, *, now=None) -> str | None:
    """Why a reply cannot be sent in this conversation now (None: it can)."""
    now = now or utcnow()
    if account is not None and account.status == "reconnect_needed":
        return "Replies are paused until an admin reconnects this Instagram account."
    if account is not None and account.status == "disabled":
        return "This Instagram account is disabled."
    if account is not None and account.status == "disconnected":
        return "The owner removed the inbox's access on Instagram; replies resume once an admin connects it again."
    closes = window_closes_at(conversation)
    if closes is None:
        return "You can reply once the customer has written to you."
    if now >= closes:
        return ("Instagram only allows replies within 24 hours of the customer's last message. "
                "You can reply again when they write.")
    return None


def text_problem(text: str) -> str | None:
    """What is wrong with a reply's text (None: nothing)."""
    if not text or not text.strip():
        return "Write a message first."
    size = len(text.encode("utf-8"))
    if size > MAX_TEXT_BYTES:
        return f"The message is {size:,} bytes; Instagram accepts at most {MAX_TEXT_BYTES:,}. Shorten it."
    return None


def normalise_text(text: str | None) -> str:
    """Line endings as \\n, no trailing whitespace at either end."""
    return (text or "").replace("\r\n", "\n").replace("\r", "\n").strip()


# --- Queue a reply -------------------------------------------------------------------------

def queue_reply(account_id: int, conversation_id: int, user_id: int | None, text: str,
                client_token: str, *, check_collision: bool = False) -> Message:
    """Write the pending outgoing message and queue its send (committed); SendRefused says why not.

    The same client_token again returns the first message (a double submit is one message).
    With check_collision, a colleague's reply in the last COLLISION_SECONDS raises Collision
    (the composer asks, then sends again without the check). Replying to an unassigned
    conversation assigns it to the replier when the account says so.
    """
    token = (client_token or "").strip()
    if not token or len(token) > 64:
        raise SendRefused("This form is out of date; reload the page and try again.", status=400)
    existing = _by_token(token)
    if existing is not None:
        return _same_reply(existing, account_id, conversation_id)
    text = normalise_text(text)
    problem = text_problem(text)
    if problem:
        raise SendRefused(problem)
    conversation = db.session.scalar(select(Conversation).where(
        Conversation.id == conversation_id, Conversation.account_id == account_id))
    if conversation is None:
        raise NotFound()
    account = db.session.get(Account, account_id)
    reason = refusal_reason(conversation, account)
    if reason:
        raise SendRefused(reason)
    if check_collision and user_id is not None:
        colleague = presence.recent_reply_by_other(account_id, conversation.id, user_id)
        if colleague is not None:
            raise Collision(staff.name_of(colleague))
    now = utcnow()
    message = Message(
        account_id=account_id, conversation_id=conversation.id, mid=None, direction="out", sender_kind="staff",
        sender_igsid=account.ig_user_id, text=text, status="pending", sent_by_user_id=user_id,
        client_token=token, send_attempts=0, meta_timestamp=int(time.time() * 1000), created_at=now, updated_at=now,
        is_unsupported=False, is_deleted=False, edit_count=0,
    )
    db.session.add(message)
    try:
        db.session.flush()
    except IntegrityError:  # the same token committed by a concurrent request
        db.session.rollback()
        existing = _by_token(token)
        if existing is None:
            raise
        return _same_reply(existing, account_id, conversation_id)
    conversations.touch(conversation, message, preview=conversations.preview_text(text))
    if user_id is not None:
        assignees.assign_on_reply(account_id, conversation, user_id)
        on_commit(lambda: presence.note_reply(account_id, conversation_id, user_id))
    enqueue_send(message.id)
    publish_after_commit(account_id, "message.created", conversation_id=conversation.id,
                         message_id=message.id)
    publish_after_commit(account_id, "conversation.updated", conversation_id=conversation.id)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        existing = _by_token(token)
        if existing is None:
            raise
        return _same_reply(existing, account_id, conversation_id)
    return message


def queue_attachment_replies(account_id: int, conversation_id: int, user_id: int | None, uploads: list[media.Upload],
                             client_token: str) -> list[Message]:
    """One pending outgoing message per stored upload, each sent by its own job (committed)."""
    if not uploads:
        return []
    token = re.sub(r"[^A-Za-z0-9_-]", "", client_token or "")[:48]
    if token:
        existing = list(db.session.scalars(select(Message).where(
            Message.account_id == account_id, Message.client_token.like(f"{token}-a%")).order_by(Message.id)))
        if existing:  # the same form sent twice: nothing new
            media.discard_uploads(uploads)
            return existing
    conversation = db.session.scalars(select(Conversation).where(
        Conversation.id == conversation_id, Conversation.account_id == account_id).with_for_update()).first()
    if conversation is None:
        media.discard_uploads(uploads)
        raise LookupError("no such conversation")
    account = db.session.get(Account, account_id)
    reason = refusal_reason(conversation, account)
    if reason:
        db.session.rollback()
        media.discard_uploads(uploads)
        raise SendRefused(reason)
    now = utcnow()
    base_ms = int(now.timestamp() * 1000)
    messages = []
    for index, upload in enumerate(uploads):
        message = Message(account_id=account_id, conversation_id=conversation.id, direction="out",
                          sender_kind="staff", sender_igsid=account.ig_user_id, status="pending",
                          sent_by_user_id=user_id, client_token=f"{token}-a{index}" if token else None,
                          meta_timestamp=base_ms + index, send_attempts=0, created_at=now, updated_at=now)
        message.attachments = [Attachment(account_id=account_id, position=0, type=upload.kind,
                                          storage_key=upload.key, media_state="stored",
                                          content_type=upload.content_type, size_bytes=upload.size,
                                          filename=upload.filename, fetched_at=now)]
        db.session.add(message)
        db.session.flush()
        conversations.touch(conversation, message, preview=conversations.preview_text(None, [upload.kind]))
        messages.append(message)
    for message in messages:
        enqueue_send(message.id)  # sending.send_message sends it (outgoing_attachment)
        publish_after_commit(account_id, "message.created", conversation_id=conversation.id,
                             message_id=message.id)
    publish_after_commit(account_id, "conversation.updated", conversation_id=conversation.id)
    try:
        db.session.commit()
    except BaseException:
        db.session.rollback()
        media.discard_uploads(uploads)
        raise
    return messages


def _by_token(token: str) -> Message | None:
    return db.session.scalar(select(Message).where(Message.client_token == token))


def _same_reply(message: Message, account_id: int, conversation_id: int) -> Message:
    if message.account_id != account_id or message.conversation_id != conversation_id:
        raise SendRefused("This form was already used for another conversation; reload the page.", status=409)
    return message


def enqueue_send(message_id: int) -> None:
    """After the commit: the send job on the high queue, one per message at a time.

    When Redis is away the row stays pending and the worker's reconciler enqueues it later."""
    on_commit(lambda: enqueue_send_now(message_id))


def enqueue_send_now(message_id: int) -> None:
    """The send job for a committed pending row, now (a job already queued or running is kept)."""
    intervals = list(current_app.config.get("SEND_RETRY_INTERVALS", DEFAULT_RETRY_INTERVALS))
    enqueue("inbox.tasks.send_message", message_id, queue="high", timeout=120,
            retries=len(intervals), retry_intervals=intervals)


def enqueue_expiry_now(message_id: int) -> None:
    """The job that fails a send whose echo never came, now (its wait is over)."""
    enqueue("inbox.tasks.expire_unconfirmed_send", message_id)


def send_message(message_id: int) -> str:
    """Send one pending message through the Send API; returns what happened (for logs and tests)."""
    message = db.session.get(Message, message_id)
    if message is None or message.direction != "out":
        return "missing"
    if message.mid is not None:
        return "already-sent"  # an echo claimed it, or a previous run finished
    if message.status != "pending":
        return f"not-pending ({message.status})"
    if message.error_code in (SENDING, AMBIGUOUS):
        # A run before us reached Meta (or died while it did): resending could double it.
        if message.error_code == SENDING:
            _wait_for_echo(message, "The previous attempt was interrupted; waiting for Instagram to confirm it.")
        db.session.commit()
        return "waiting-for-echo"
    account = db.session.get(Account, message.account_id)
    conversation = db.session.get(Conversation, message.conversation_id)
    if account is None or conversation is None:
        return "missing"
    if account.status != "active":
        _fail(message, "account", "Replies are paused until an admin reconnects this Instagram account.")
        db.session.commit()
        metrics.reply_finished("failed")
        return "failed"
    try:
        outgoing = media.outgoing_attachment(message)  # a staff file: (kind, signed public URL)
    except media.UploadError as exc:
        _fail(message, "media", f"Not sent: {exc}")
        db.session.commit()
        metrics.reply_finished("failed")
        return "failed"
    # A private reply goes to the comment (Instagram finds its author), not to an IGSID.
    comment = db.session.get(Comment, message.comment_id) if message.comment_id else None
    if message.comment_id and (comment is None or not comment.comment_id):
        _fail(message, "comment", "Not sent: the comment it answers is gone.")
        db.session.commit()
        return "failed"
    attempts_allowed = len(current_app.config.get("SEND_RETRY_INTERVALS", DEFAULT_RETRY_INTERVALS)) + 1
    message.send_attempts = (message.send_attempts or 0) + 1
    message.error_code, message.error_message = SENDING, None
    attempt = message.send_attempts
    recipient, text = conversation.customer_igsid, message.text or ""
    comment_ig_id = comment.comment_id if comment is not None else None
    db.session.commit()

    try:
        client = graph.GraphClient.for_account(account)
        if comment_ig_id is not None:
            result = client.private_reply(comment_ig_id, text)
        elif outgoing:
            result = client.send_attachment(recipient, *outgoing)
        else:
            result = client.send_text(recipient, text)
    except graph.AmbiguousSendFailure as exc:
        metrics.reply_finished("unconfirmed", exc.code)
        message = _reload(message_id)
        if message is not None and message.mid is None and message.status == "pending":
            _wait_for_echo(message, "Waiting for Instagram to confirm this message was sent.")
            db.session.commit()
        return "waiting-for-echo"
    except (graph.RateLimited, graph.Transient) as exc:
        metrics.reply_finished("retry", exc.code)
        message = _reload(message_id)
        if message is None or message.mid is not None or message.status != "pending":
            db.session.commit()
            return "already-sent"
        if attempt >= attempts_allowed:
            _fail(message, "unavailable", "Instagram did not accept the message after several tries "
                                          "(it was busy or unavailable). Try again later.")
            db.session.commit()
            return "failed"
        message.error_code = RETRYING
        message.error_message = (("Instagram's budget for private replies is spent for now; retrying later."
                                  if comment_ig_id else
                                  "Instagram is limiting how fast this account can send; retrying shortly.")
                                 if isinstance(exc, graph.RateLimited) else
                                 "Instagram is not answering right now; retrying shortly.")
        publish_after_commit(message.account_id, "message.updated",
                             conversation_id=message.conversation_id, message_id=message.id)
        db.session.commit()
        raise RetryLater(str(exc)) from None
    except graph.GraphError as exc:
        metrics.reply_finished("failed", exc.code)
        message = _reload(message_id)
        if message is None:
            return "missing"
        if message.mid is not None:
            db.session.commit()
            return "already-sent"
        code, reason = _final_reason(exc, private_reply=comment_ig_id is not None)
        _fail(message, code, reason)
        if isinstance(exc, graph.TokenInvalid):
            db.session.commit()
            mark_reconnect_needed(message.account_id, "Instagram refused the access token while sending a reply.")
        db.session.commit()
        return "failed"
    except Exception:
        # Not a Graph answer (a bug or a crash mid-call): the request may have left.
        log.exception("send of message %s failed unexpectedly", message_id)
        metrics.reply_finished("unconfirmed")
        message = _reload(message_id)
        if message is not None and message.mid is None and message.status == "pending":
            _wait_for_echo(message, "Waiting for Instagram to confirm this message was sent.")
            db.session.commit()
        return "waiting-for-echo"

    metrics.reply_finished("sent")
    reconcile_sent(message_id, result.message_id)
    return "sent"


def _reload(message_id: int) -> Message | None:
    db.session.rollback()
    return db.session.scalar(select(Message).where(Message.id == message_id)
                             .execution_options(populate_existing=True))


def _final_reason(exc: graph.GraphError, *, private_reply: bool = False) -> tuple[str, str]:
    detail = exc.message.rstrip(".") if exc.message else ""
    if isinstance(exc, graph.TokenInvalid):
        return "token", "Instagram refused this account's access token. An admin must reconnect the account."
    if private_reply and isinstance(exc, graph.OutsideWindow):
        return "window", "Not sent: Instagram allows a private reply only within 7 days of the comment."
    if private_reply and isinstance(exc, (graph.PermissionDenied, graph.InvalidRequest)):
        return "comment", f"Not sent: Instagram refused a private reply to this comment ({detail})."
    if isinstance(exc, graph.OutsideWindow):
        return "window", ("Not sent: Instagram only allows replies within 24 hours of the customer's last "
                          "message.")
    if isinstance(exc, graph.UserUnavailable):
        return "unavailable_user", ("Not sent: this person isn't available on Instagram (they may have blocked "
                                    "the account or turned off messages).")
    if isinstance(exc, graph.PermissionDenied):
        return "permission", f"Not sent: Instagram says this account may not send this message ({detail})."
    if isinstance(exc, graph.InvalidRequest):
        return "invalid", f"Not sent: Instagram rejected the message ({detail})."
    return "error", f"Not sent: Instagram answered with an error ({detail or exc})."


def _fail(message: Message, code: str, reason: str) -> None:
    message.status = "failed"
    message.error_code, message.error_message = code, reason
    publish_after_commit(message.account_id, "message.updated",
                         conversation_id=message.conversation_id, message_id=message.id)


def _wait_for_echo(message: Message, reason: str) -> None:
    """Never resend: the echo confirms it; a job fails it if no echo comes in time."""
    message.error_code, message.error_message = AMBIGUOUS, reason
    publish_after_commit(message.account_id, "message.updated",
                         conversation_id=message.conversation_id, message_id=message.id)
    wait = int(current_app.config.get("SEND_ECHO_WAIT_SECONDS", DEFAULT_ECHO_WAIT_SECONDS))
    message_id = message.id
    on_commit(lambda: enqueue("inbox.tasks.expire_unconfirmed_send", message_id,
                              at=datetime.now(timezone.utc) + timedelta(seconds=wait)))


def expire_unconfirmed(message_id: int, *, older_than: float | None = None) -> bool:
    """Fail a send still waiting for its echo after SEND_ECHO_WAIT_SECONDS; True when it did."""
    wait = older_than if older_than is not None else int(
        current_app.config.get("SEND_ECHO_WAIT_SECONDS", DEFAULT_ECHO_WAIT_SECONDS))
    cutoff = utcnow() - timedelta(seconds=wait)
    message = db.session.get(Message, message_id)
    if (message is None or message.mid is not None or message.status != "pending"
            or message.error_code not in (AMBIGUOUS, SENDING) or message.updated_at > cutoff):
        return False
    _fail(message, "unconfirmed", "Instagram never confirmed this message. It may not have been delivered: "
                                  "check the conversation in the Instagram app before you retry.")
    db.session.commit()
    return True


def sweep_unconfirmed(*, older_than: float | None = None) -> int:
    """Fail every send that waited too long for its echo (any account); returns how many."""
    wait = older_than if older_than is not None else int(
        current_app.config.get("SEND_ECHO_WAIT_SECONDS", DEFAULT_ECHO_WAIT_SECONDS))
    cutoff = utcnow() - timedelta(seconds=wait)
    ids = list(db.session.scalars(select(Message.id).where(
        Message.direction == "out", Message.status == "pending", Message.mid.is_(None),
        Message.error_code.in_((AMBIGUOUS, SENDING)), Message.updated_at <= cutoff)))
    return sum(1 for message_id in ids if expire_unconfirmed(message_id, older_than=wait))


# --- Retry ---------------------------------------------------------------------------------

def retry_send(account_id: int, message_id: int, user_id: int | None = None) -> Message:
    """Queue a failed send again (committed); SendRefused says why not."""
    message = db.session.scalar(select(Message).where(Message.id == message_id, Message.account_id == account_id))
    if message is None or message.direction != "out" or message.sender_kind != "staff":
        raise NotFound("message")
    if message.status != "failed" or message.mid is not None:
        if message.status == "pending":
            return message  # already queued again (a double click)
        raise SendRefused("Only a message that failed can be sent again.", status=409)
    conversation = db.session.get(Conversation, message.conversation_id)
    account = db.session.get(Account, account_id)
    reason = refusal_reason(conversation, account)
    if reason:
        raise SendRefused(reason)
    # Atomic: of two retries racing, one requeues it.
    changed = db.session.execute(
        update(Message).where(Message.id == message.id, Message.status == "failed", Message.mid.is_(None))
        .values(status="pending", error_code=None, error_message=None, send_attempts=0, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed:
        enqueue_send(message.id)
        publish_after_commit(account_id, "message.updated", conversation_id=message.conversation_id,
                             message_id=message.id)
    db.session.commit()
    return db.session.scalar(select(Message).where(Message.id == message.id)
                             .execution_options(populate_existing=True))


# --- What the UI shows ---------------------------------------------------------------------

def status_label(message: Message) -> str:
    """The word under an outgoing bubble: Sending…, Waiting for Instagram, Sent, Seen, Failed."""
    if message.status == "pending":
        if message.error_code == AMBIGUOUS:
            return "Waiting for Instagram"
        if message.error_code == RETRYING:
            return "Retrying…"
        return "Sending…"
    return {"sent": "Sent", "seen": "Seen", "failed": "Failed"}.get(message.status or "", "")
