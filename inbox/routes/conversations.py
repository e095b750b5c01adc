"""The inbox of one account: the conversation list, a thread, and what staff do in it.

Reading: the list (filtered, searched, paged), a thread and its earlier messages, one row.
Acting: done/reopen, reply, retry a failed reply, and "read" (the open thread got a customer
message while someone was looking at it).
"""

from __future__ import annotations

from flask import Blueprint, abort, g, redirect, request, session, url_for
from flask_login import current_user

from ..auth import account_scoped
from ..models.types import MAX_ID
from ..services import conversations, sending
from ..templating import is_htmx_fragment_request, render
from .loaders import get_conversation_or_404, get_message_or_404

bp = account_scoped(Blueprint("conversations", __name__, url_prefix="/accounts/<int:account_id>"))


def _list_context(filters: conversations.Filters, cursor: str | None = None) -> dict:
    page = conversations.list_conversations(g.account.id, filters, cursor)
    return {"listing": page, "filters": filters}


def _page_context(filters: conversations.Filters) -> dict:
    return {"products": conversations.account_products(g.account.id, filters.product_id),
            "unread_total": conversations.unread_total(g.account.id), **_list_context(filters)}


@bp.get("/")
def index():
    """The inbox page of one account: the list, filtered and searched by the query string."""
    session["account_id"] = g.account.id
    filters = conversations.Filters.from_args(request.args)
    return render("conversations/index.html", **_page_context(filters), thread=None, active_id=None)


def _active_id() -> int | None:
    """The highlighted row's id; anything that is not one is ignored."""
    value = request.args.get("active", "")
    return int(value) if value.isdigit() and int(value) <= MAX_ID else None


@bp.get("/list")
def rows():
    """List rows for htmx: a new filter or search (from the top) or the next page (cursor)."""
    filters = conversations.Filters.from_args(request.args)
    cursor = request.args.get("cursor")
    response = render("conversations/index.html", "partials/_conversation_items.html",
                      **(_page_context(filters) if not is_htmx_fragment_request() else _list_context(filters, cursor)),
                      thread=None, active_id=_active_id())
    if is_htmx_fragment_request() and not cursor:
        # A new filter: the address bar follows, so a reload keeps it.
        response.headers["HX-Push-Url"] = url_for(".index", **filters.args())
    return response


@bp.get("/c/<int:conversation_id>")
def show(conversation_id: int):
    """One conversation: the whole page, or the thread fragment for htmx. Opening it marks it read."""
    conversation = get_conversation_or_404(conversation_id)
    was_unread = conversations.mark_read(g.account.id, conversation.id)
    thread = conversations.thread(g.account.id, conversation.id)
    session["account_id"] = g.account.id
    if is_htmx_fragment_request():
        # Its row and the unread total change only when it was unread.
        extra = {"was_unread": True, "unread_total": conversations.unread_total(g.account.id)} if was_unread else {}
        return render("conversations/index.html", "partials/_thread_response.html", **_thread_context(thread), **extra)
    filters = conversations.Filters.from_args(request.args)
    return render("conversations/index.html", **_page_context(filters), **_thread_context(thread),
                  thread=thread, active_id=conversation_id)


def _thread_context(thread: conversations.Thread) -> dict:
    return {"conversation": thread.conversation, "identity": thread.identity,
            "product": thread.product, "messages": thread.messages, "earlier_cursor": thread.earlier_cursor}


@bp.get("/c/<int:conversation_id>/earlier")
def earlier(conversation_id: int):
    """Older messages of a thread, put above the ones shown."""
    conversation = get_conversation_or_404(conversation_id)
    thread = conversations.thread(g.account.id, conversation.id, before=request.args.get("before"))
    return render("partials/_thread_earlier.html", **_thread_context(thread))


@bp.get("/c/<int:conversation_id>/row")
def row(conversation_id: int):
    """One list row (what a live update or a status change swaps in)."""
    conversation = get_conversation_or_404(conversation_id)
    found = conversations.conversation_row(g.account.id, conversation.id)
    return render("partials/_conversation_row.html", conversation=found.conversation, identity=found.identity,
                  product=found.product)


@bp.post("/c/<int:conversation_id>/done")
def mark_done(conversation_id: int):
    """Mark a conversation done."""
    return _set_status(conversation_id, "done")


@bp.post("/c/<int:conversation_id>/reopen")
def reopen(conversation_id: int):
    """Open a done conversation again."""
    return _set_status(conversation_id, "open")


def _set_status(conversation_id: int, status: str):
    conversation = get_conversation_or_404(conversation_id)
    conversations.set_status(g.account.id, conversation.id, status)
    found = conversations.conversation_row(g.account.id, conversation.id)
    if not is_htmx_fragment_request():
        return redirect(url_for(".show", conversation_id=conversation.id))
    return render("partials/_thread_status_response.html", conversation=found.conversation,
                  identity=found.identity, product=found.product)


@bp.post("/conversations/<int:conversation_id>/reply")
def reply(conversation_id: int):
    """Queue a reply: the pending bubble appears at once and the composer resets."""
    conversation = get_conversation_or_404(conversation_id)
    text = request.form.get("text", "")
    token = request.form.get("client_token", "")
    try:
        message = sending.queue_reply(g.account.id, conversation.id, current_user.id, text, token)
    except sending.SendRefused as refused:
        if not is_htmx_fragment_request() or refused.status == 404:
            abort(refused.status, refused.reason)
        # htmx swaps 2xx only: the composer comes back with the draft and the reason.
        return render("partials/_reply_response.html", conversation=conversation, message=None, text=text,
                      error=refused.reason, client_token=token)
    if not is_htmx_fragment_request():
        return redirect(url_for(".show", conversation_id=conversation.id))
    return render("partials/_reply_response.html", conversation=conversation, message=message)


@bp.post("/messages/<int:message_id>/retry")
def retry(message_id: int):
    """Send a failed reply again; answers its bubble, now pending (or still failed, with why)."""
    message = get_message_or_404(message_id)
    error = None
    try:
        message = sending.retry_send(g.account.id, message.id, current_user.id)
    except sending.SendRefused as refused:
        if not is_htmx_fragment_request() or refused.status == 404:
            abort(refused.status, refused.reason)
        error = refused.reason
    conversation = get_conversation_or_404(message.conversation_id)
    if not is_htmx_fragment_request():
        return redirect(url_for(".show", conversation_id=conversation.id))
    return render("partials/_message.html", message=message, conversation=conversation, retry_error=error)


@bp.post("/conversations/<int:conversation_id>/read")
def read(conversation_id: int):
    """The open thread got a customer message while someone was looking at it: it is read."""
    conversation = get_conversation_or_404(conversation_id)
    conversations.mark_read(g.account.id, conversation.id)
    return "", 204
