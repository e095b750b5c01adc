"""Replies, retries and the /live websocket; the frames live updates push.

- `POST /accounts/<a>/conversations/<c>/reply` (htmx): queues a reply; answers the pending
  bubble (appended to the open thread) and a fresh composer, both out of band.
- `POST /accounts/<a>/messages/<m>/retry` (`live.retry`): sends a failed reply again.
- `/live` (websocket): login required; listens to the staff member's accounts (or the one
  `?account=<id>` names); pings every 25 s; closes with 1012 on shutdown so clients
  reconnect and refetch.

Frames: each event type has renderers registered with `@frame_renderer(event_type)`. A
renderer is `fn(event: dict, account_id: int) -> str | None` and returns HTML whose top-level
elements carry `hx-swap-oob`. They run once per event and process (services/realtime.Hub),
in a request context with `g.account` set and no user: a frame is the same for every
member, so templates must not depend on `current_user`, and `csrf_token()` renders empty
(htmx sends the token from `<body hx-headers>`).
"""

from __future__ import annotations

import inspect
import logging
import re
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from flask_login import current_user
from jinja2 import TemplateNotFound
from markupsafe import Markup, escape
from sqlalchemy import func, select

from ..auth import account_scoped, member_account_ids
from ..extensions import db, sock
from ..models import Account, Conversation, Identity, Message
from ..services import realtime, sending
from ..templating import is_htmx_fragment_request

log = logging.getLogger(__name__)

bp = account_scoped(Blueprint("live", __name__), unscoped=("socket",))

MEMBERSHIP_CHECK_SECONDS = 60  # an open socket re-reads its user's accounts this often
# Where a new message goes: the message list of that conversation's thread, only when it is open
# (live-ui's partials/_thread.html: <section id="thread" data-conversation-id=…> … <div id="messages">).
THREAD_MESSAGES_SELECTOR = '#thread[data-conversation-id="{conversation_id}"] #messages'

# --- The frame renderer registry --------------------------------------------------------

_renderers: dict[str, list[Callable[[dict, int], str | None]]] = {}


def frame_renderer(event_type: str):
    """Register fn(event, account_id) -> HTML of out-of-band swaps for one event type.

    The older form fn(account, event) (an Account row first, as routes/jobs.py writes it) is
    accepted too.
    """
    if event_type not in realtime.EVENT_TYPES:
        raise ValueError(f"unknown live event {event_type!r}")

    def decorator(fn):
        params = list(inspect.signature(fn).parameters)
        if params and params[0] == "account":
            def call(event: dict, account_id: int, _fn=fn):
                account = g.get("account") or db.session.get(Account, account_id)
                return _fn(account, event) if account is not None else None
        else:
            call = fn
        if call not in _renderers.setdefault(event_type, []):
            _renderers[event_type].append(call)
        return fn

    return decorator


def render_frame(event: dict, app=None) -> str | None:
    """The HTML frame for one event (None: nothing to send)."""
    return render_frames(int(event["account_id"]), [event], app)


def render_frames(account_id: int, events: list[dict], app=None) -> str | None:
    """One frame for several events of one account, in order; releases the DB session after.

    Under load the listener hands over everything that waited, so one frame (one send per
    socket) carries many swaps, and per-batch work (the account, the unread total) is done once.
    """
    app = app or current_app._get_current_object()
    if not any(_renderers.get(event.get("type")) for event in events):
        return None
    with app.test_request_context("/", base_url=app.config.get("LIVE_BASE_URL") or "http://localhost/"):
        try:
            account = db.session.get(Account, account_id)
            if account is None:
                return None
            g.account = account
            _preload(account_id, events)
            parts = [part for event in events for fn in _renderers.get(event.get("type"), [])
                     if (part := fn(event, account_id))]
            tail = g.pop("live_tail", None)  # once per frame: the unread total, after the rows
            if tail:
                parts.append(tail)
            return "".join(parts) or None
        finally:
            db.session.remove()


def _render(template: str, **context) -> str:
    # One frame serves every member: no personal CSRF token in it (htmx sends the header).
    return render_template(template, csrf_token=lambda: "", live_push=True, **context)


_ROOT_TAG = re.compile(r"^(\s*<[a-zA-Z][a-zA-Z0-9-]*)")


def with_attributes(html: str, **attributes: str) -> str:
    """Add attributes to the root element of a rendered partial (hx_swap_oob -> hx-swap-oob)."""
    extra = "".join(f' {name.replace("_", "-")}="{escape(value)}"' for name, value in attributes.items()
                    if not re.search(rf'\s{name.replace("_", "-")}=', html[:html.find(">") + 1]))
    return _ROOT_TAG.sub(lambda m: m.group(1) + extra, html, count=1)


# --- Jinja helpers the composer and bubbles use --------------------------------------------

@bp.app_template_global()
def new_client_token() -> str:
    """A fresh token for one composer submit (the same token twice is one message)."""
    return uuid.uuid4().hex


@bp.app_template_global()
def reply_refusal(conversation, account=None) -> str | None:
    """Why the composer is disabled in this conversation (None: replying is allowed)."""
    return sending.refusal_reason(conversation, account if account is not None else g.get("account"))


@bp.app_template_global()
def reply_window_closes_at(conversation):
    return sending.window_closes_at(conversation)


@bp.app_template_global()
def send_status_label(message) -> str:
    """Sending…, Waiting for Instagram, Retrying…, Sent, Seen or Failed."""
    return sending.status_label(message)


def append_to_thread(conversation, bubble: str) -> str:
    """An out-of-band wrapper that appends bubble to the conversation's thread if it is open."""
    selector = THREAD_MESSAGES_SELECTOR.format(conversation_id=int(conversation.id))
    return f"<div hx-swap-oob='beforeend:{selector}'>{bubble}</div>"


# --- Reply and retry -------------------------------------------------------------------------

@bp.post("/accounts/<int:account_id>/conversations/<int:conversation_id>/reply")
def reply(conversation_id: int):
    """Queue a reply: the pending bubble appears at once and the composer resets."""
    text = request.form.get("text", "")
    token = request.form.get("client_token", "")
    conversation = db.session.scalar(select(Conversation).where(
        Conversation.id == conversation_id, Conversation.account_id == g.account.id))
    if conversation is None:
        abort(404)
    try:
        message = sending.queue_reply(g.account.id, conversation_id, current_user.id, text, token)
    except sending.SendRefused as refused:
        if refused.status == 404:
            abort(404)
        db.session.rollback()
        conversation = db.session.get(Conversation, conversation_id)
        if not is_htmx_fragment_request():
            abort(refused.status, refused.reason)
        html = with_attributes(_composer_html(conversation, text=text, error=refused.reason, client_token=token),
                               hx_swap_oob="true")
        return _fragment(html, status=200)
    if not is_htmx_fragment_request():
        return redirect(_thread_url(conversation))
    bubble = _message_html(message, conversation)
    html = append_to_thread(conversation, bubble) + with_attributes(_composer_html(conversation), hx_swap_oob="true")
    return _fragment(html)


@bp.post("/accounts/<int:account_id>/messages/<int:message_id>/retry")
def retry(message_id: int):
    """Send a failed reply again; answers its bubble, now pending."""
    try:
        message = sending.retry_send(g.account.id, message_id, current_user.id)
    except sending.SendRefused as refused:
        if refused.status == 404:
            abort(404)
        db.session.rollback()
        message = db.session.scalar(select(Message).where(Message.id == message_id,
                                                          Message.account_id == g.account.id))
        if message is None:
            abort(404)
        if not is_htmx_fragment_request():
            abort(refused.status, refused.reason)
        conversation = db.session.get(Conversation, message.conversation_id)
        html = _message_html(message, conversation, retry_error=refused.reason)
        return _fragment(html, status=200)
    conversation = db.session.get(Conversation, message.conversation_id)
    if not is_htmx_fragment_request():
        return redirect(_thread_url(conversation))
    return _fragment(_message_html(message, conversation))


@bp.post("/accounts/<int:account_id>/conversations/<int:conversation_id>/read")
def read(conversation_id: int):
    """The open thread got a customer message while someone was looking at it: it is read."""
    conversation = db.session.scalar(select(Conversation.id).where(
        Conversation.id == conversation_id, Conversation.account_id == g.account.id))
    if conversation is None:
        abort(404)
    try:
        from ..services.conversations import mark_read
    except ImportError:  # live-ui's read state is not on this branch
        return "", 204
    mark_read(g.account.id, conversation_id)
    return "", 204


def _fragment(html: str, status: int = 200):
    response = current_app.response_class(html, status=status, mimetype="text/html")
    response.vary.add("HX-Request")
    return response


def _thread_url(conversation: Conversation) -> str:
    if "conversations.show" in current_app.view_functions:
        return url_for("conversations.show", account_id=conversation.account_id, conversation_id=conversation.id)
    return url_for("conversations.index", account_id=conversation.account_id)


def _composer_html(conversation: Conversation, **context) -> str:
    return render_template("partials/_composer.html", conversation=conversation, account=g.account, **context)


def _message_html(message: Message, conversation: Conversation, *, push: bool = False, **context) -> str:
    render = _render if push else render_template
    try:
        return render("partials/_message.html", message=message, conversation=conversation, **context)
    except TemplateNotFound:  # live-ui's bubble is not on this branch: a plain one
        label = sending.status_label(message) if message.direction == "out" else ""
        return Markup('<div id="{}" class="bubble bubble-{}" data-status="{}">{}<small class="bubble-status">{}'
                      '</small></div>').format(f"message-{message.id}", message.direction, message.status or "",
                                               message.text or "", label)


# --- The websocket ---------------------------------------------------------------------------

def live_hub():
    app = current_app._get_current_object()
    return realtime.hub(app, lambda account_id, events: render_frames(account_id, events, app))


@bp.record_once
def _on_register(state) -> None:
    realtime.install_shutdown(state.app)


@bp.before_request
def _check_socket():
    """Before the handshake: same origin, and the accounts this socket may hear."""
    if request.endpoint != "live.socket":
        return None
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        abort(403)  # another site's page must not ride on the staff member's cookie
    accounts = member_account_ids(current_user.id)
    wanted = request.args.get("account", type=int)
    if wanted is not None:
        if wanted not in accounts:
            abort(404)
        accounts = {wanted}
    g.live_account_ids = accounts
    g.live_wanted = wanted
    return None


@sock.route("/live", bp=bp)
def socket(ws):
    """Live updates for the staff member's accounts, as htmx out-of-band swaps."""
    user_id, session_version, wanted = current_user.id, current_user.session_version, g.live_wanted
    connection = realtime.Connection(user_id, g.live_account_ids, send=ws.send)
    # The first frame says "subscribed" (the indicator turns live on it) and brings the count.
    hello = _hello_html(wanted)
    db.session.remove()  # hold no database connection while the socket is open
    hub = live_hub()
    hub.add(connection)  # the listener is subscribed once this returns
    try:
        # A socket that cannot take a frame in time is dropped rather than holding the writer up.
        ws.sock.settimeout(realtime.SEND_TIMEOUT)
    except (AttributeError, OSError):
        pass
    ws.send(hello)
    connection.ready = True  # from here the hub's writer sends to it (one writer per process)
    next_check = time.monotonic() + MEMBERSHIP_CHECK_SECONDS
    try:
        while ws.connected and not connection.closed:
            connection.wake.wait(1.0)
            connection.wake.clear()
            while ws.connected and ws.receive(timeout=0) is not None:
                pass  # the client has nothing to say; drop whatever it sends
            if time.monotonic() >= next_check and not connection.closed:
                next_check = time.monotonic() + MEMBERSHIP_CHECK_SECONDS
                accounts = _still_allowed(user_id, session_version, wanted)
                if not accounts:
                    connection.close(1008, "Signed out or no longer a member")
                elif accounts != connection.account_ids:
                    hub.resubscribe(connection, accounts)
        if connection.closed and ws.connected:
            ws.close(reason=connection.close_code, message=connection.close_reason)
    finally:
        connection.closed = True
        hub.remove(connection)


def _still_allowed(user_id: int, session_version: int, wanted: int | None) -> frozenset[int]:
    from ..models import StaffUser

    try:
        user = db.session.get(StaffUser, user_id)
        if user is None or not user.active or user.session_version != session_version:
            return frozenset()
        accounts = member_account_ids(user_id)
        return frozenset(accounts if wanted is None else accounts & {wanted})
    finally:
        db.session.remove()


# --- Frames ------------------------------------------------------------------------------------

def _preload(account_id: int, events: list[dict]) -> None:
    """Load what a batch of events shows in a few queries (not a few per event)."""
    try:
        from ..services import conversations
    except ImportError:
        return
    message_ids = {int(e["message_id"]) for e in events
                   if e.get("type") in ("message.created", "message.updated") and e.get("message_id")}
    conversation_ids = {int(e["conversation_id"]) for e in events if e.get("conversation_id")}
    if not message_ids and not conversation_ids:
        return
    from sqlalchemy import and_
    from sqlalchemy.orm import selectinload

    messages = list(db.session.scalars(
        select(Message).where(Message.account_id == account_id, Message.id.in_(message_ids))
        .options(selectinload(Message.attachments), selectinload(Message.reactions)))) if message_ids else []
    if messages:
        conversations.prepare_messages(account_id, messages)
    g.live_messages = {m.id: m for m in messages}
    rows_of = getattr(conversations, "_rows", None)
    if rows_of is not None and conversation_ids:
        rows = rows_of(and_(Conversation.account_id == account_id, Conversation.id.in_(conversation_ids)),
                       (Conversation.id,), len(conversation_ids))
        conversations._remember_rows(rows)
        g.live_rows = {r.conversation.id: {"conversation": r.conversation, "identity": r.identity,
                                           "product": r.product} for r in rows}


def _load_message(event: dict, account_id: int) -> tuple[Message, Conversation] | None:
    """The message with what its bubble shows (live-ui's inbox.get_message), and its conversation."""
    message_id = int(event.get("message_id") or 0)
    preloaded = g.get("live_messages")
    if preloaded is not None and message_id in preloaded:
        message = preloaded[message_id]
        row = (g.get("live_rows") or {}).get(message.conversation_id)
        conversation = row["conversation"] if row else db.session.get(Conversation, message.conversation_id)
        return (message, conversation) if conversation is not None else None
    try:
        from ..services.conversations import NotFound as InboxNotFound, get_message
    except ImportError:
        message = db.session.scalar(select(Message).where(Message.id == message_id, Message.account_id == account_id))
    else:
        try:
            message = get_message(account_id, message_id)
        except InboxNotFound:
            message = None
    if message is None:
        return None
    conversation = db.session.get(Conversation, message.conversation_id)
    return (message, conversation) if conversation is not None else None


def _row_context(account_id: int, conversation_id: int) -> dict | None:
    """conversation, identity and product for the list row (live-ui's inbox.conversation_row)."""
    preloaded = g.get("live_rows")
    if preloaded is not None and conversation_id in preloaded:
        return preloaded[conversation_id]
    try:
        from ..services.conversations import NotFound as InboxNotFound, conversation_row
    except ImportError:
        conversation = db.session.scalar(select(Conversation).where(
            Conversation.id == conversation_id, Conversation.account_id == account_id))
        if conversation is None:
            return None
        identity = db.session.scalar(select(Identity).where(Identity.account_id == account_id,
                                                            Identity.igsid == conversation.customer_igsid))
        return {"conversation": conversation, "identity": identity}
    try:
        row = conversation_row(account_id, conversation_id)
    except InboxNotFound:
        return None
    return {"conversation": row.conversation, "identity": row.identity, "product": row.product}


@frame_renderer("message.created")
def message_created_frame(event: dict, account_id: int) -> str | None:
    """Append the bubble to the open thread (a repeat replaces it); a customer's may notify."""
    found = _load_message(event, account_id)
    if found is None:
        return None
    message, conversation = found
    bubble = _message_html(message, conversation, push=True)
    frame = append_to_thread(conversation, bubble)
    if message.direction == "in" and message.sender_kind == "customer":
        frame += _notify_html(message, conversation)
    return frame


@frame_renderer("message.updated")
def message_updated_frame(event: dict, account_id: int) -> str | None:
    """Replace the bubble in place (sent, seen, failed, edited, unsent, reactions)."""
    found = _load_message(event, account_id)
    if found is None:
        return None
    message, conversation = found
    return with_attributes(_message_html(message, conversation, push=True), hx_swap_oob="true")


@frame_renderer("conversation.updated")
def conversation_updated_frame(event: dict, account_id: int) -> str | None:
    """Replace the list row (live.js moves it by its last message time), drop a merged bubble,
    and the account's unread count for the page title."""
    parts = []
    removed = event.get("removed_message_id")
    if removed:
        parts.append(f'<div id="message-{int(removed)}" hx-swap-oob="delete"></div>')
    context = _row_context(account_id, int(event.get("conversation_id") or 0))
    if context is not None:
        try:
            row = _render("partials/_conversation_row.html", oob=True, **context)
        except TemplateNotFound:
            row = ""
        if row.strip():
            parts.append(with_attributes(row, hx_swap_oob="true"))
    if "live_tail" not in g:
        try:
            g.live_tail = _render("partials/_unread_total.html", unread_total=unread_conversations(account_id),
                                  oob=True)
        except TemplateNotFound:
            g.live_tail = _state_html(account_id)
    return "".join(parts)


@frame_renderer("account.updated")
def account_updated_frame(event: dict, account_id: int) -> str | None:
    """The reconnect banner appears (or goes) on open inbox pages."""
    try:
        banner = _render("partials/_account_banner.html", account=g.account)
    except TemplateNotFound:
        return None
    return f'<div id="account-banners" hx-swap-oob="true">{banner}</div>'


def unread_conversations(account_id: int) -> int:
    """Conversations with unread messages (live-ui's services.inbox.unread_total when present)."""
    try:
        from ..services.conversations import unread_total
    except ImportError:
        return db.session.scalar(select(func.count()).select_from(Conversation).where(
            Conversation.account_id == account_id, Conversation.unread_count > 0)) or 0
    return unread_total(account_id)


def _hello_html(account_id: int | None) -> str:
    """The first frame: "subscribed" (#live-state) and, for one account, its unread total."""
    if account_id is None:
        return '<div id="live-state" hx-swap-oob="true" hidden></div>'
    html = _state_html(account_id)
    try:
        html += _render("partials/_unread_total.html", unread_total=unread_conversations(account_id), oob=True)
    except TemplateNotFound:
        pass
    return html


def _state_html(account_id: int) -> str:
    return (f'<div id="live-state" hx-swap-oob="true" hidden data-account="{account_id}" '
            f'data-unread="{unread_conversations(account_id)}"></div>')


def _notify_html(message: Message, conversation: Conversation) -> str:
    from ..display import display_name

    context = _row_context(conversation.account_id, conversation.id) or {}
    identity = context.get("identity")
    body = " ".join(message.text.split())[:200] if message.text else (conversation.last_message_preview or "")
    values = {"message": message.id, "conversation": conversation.id, "body": body or "New message",
              "title": display_name(identity, conversation.customer_igsid), "url": _thread_url(conversation)}
    attrs = " ".join(f'data-{name}="{escape(value)}"' for name, value in values.items())
    return f'<div id="live-notify" hx-swap-oob="true" hidden {attrs}></div>'
