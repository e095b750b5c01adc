"""The inbox of one account: the conversation list, a thread, and what staff do in it.

Reading: the list (filtered, searched, paged), a thread and its earlier messages, one row.
Acting: done/reopen, reply (or a private note), retry a failed reply, "read" (the open thread
got a customer message while someone was looking at it), assign (one, or several from the
list), labels on a conversation, and the composer's saved-reply picker.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, request, session, url_for
from flask_login import current_user

from ..auth import account_scoped
from ..models.types import MAX_ID
from ..services import assignees, conversations, notes, presence, saved_replies, sending, team
from ..services import labels as labels_service
from ..services.staff import StaffError
from ..templating import is_htmx_fragment_request, render
from .loaders import get_conversation_or_404, get_label_or_404, get_message_or_404, get_saved_reply_or_404

bp = account_scoped(Blueprint("conversations", __name__, url_prefix="/accounts/<int:account_id>"))


def _filters() -> conversations.Filters:
    return conversations.Filters.from_args(request.args, user_id=current_user.id)


def _list_context(filters: conversations.Filters, cursor: str | None = None) -> dict:
    page = conversations.list_conversations(g.account.id, filters, cursor)
    return {"listing": page, "filters": filters}


def _team_context() -> dict:
    return {"staff": team.members(g.account.id), "account_labels": labels_service.labels(g.account.id)}


def _page_context(filters: conversations.Filters) -> dict:
    return {"products": conversations.account_products(g.account.id, filters.product_id),
            "unread_total": conversations.unread_total(g.account.id), **_team_context(), **_list_context(filters)}


@bp.get("/")
def index():
    """The inbox page of one account: the list, filtered and searched by the query string."""
    session["account_id"] = g.account.id
    filters = _filters()
    return render("conversations/index.html", **_page_context(filters), thread=None, active_id=None)


def _active_id() -> int | None:
    """The highlighted row's id; anything that is not one is ignored."""
    value = request.args.get("active", "")
    return int(value) if value.isdigit() and int(value) <= MAX_ID else None


@bp.get("/list")
def rows():
    """List rows for htmx: a new filter or search (from the top) or the next page (cursor)."""
    filters = _filters()
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
        return render("conversations/index.html", "partials/_thread_response.html", **_thread_context(thread),
                      **_team_context(), **extra)
    filters = _filters()
    return render("conversations/index.html", **_page_context(filters), **_thread_context(thread),
                  thread=thread, active_id=conversation_id)


def _thread_context(thread: conversations.Thread) -> dict:
    viewers, typing = presence.who_is_here(g.account.id, thread.conversation.id)
    return {"conversation": thread.conversation, "identity": thread.identity, "product": thread.product,
            "messages": thread.messages, "events": thread.events, "earlier_cursor": thread.earlier_cursor,
            "viewers": viewers, "typing_ids": typing}


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
    conversations.set_status(g.account.id, conversation.id, status, actor_id=current_user.id)
    found = conversations.conversation_row(g.account.id, conversation.id)
    if not is_htmx_fragment_request():
        return redirect(url_for(".show", conversation_id=conversation.id))
    return render("partials/_thread_status_response.html", conversation=found.conversation,
                  identity=found.identity, product=found.product)


@bp.post("/conversations/<int:conversation_id>/reply")
def reply(conversation_id: int):
    """Queue a reply (the pending bubble appears at once), or save a private note (mode=note)."""
    conversation = get_conversation_or_404(conversation_id)
    text = request.form.get("text", "")
    token = request.form.get("client_token", "")
    if request.form.get("mode") == "note":
        return _note(conversation, text, token)
    try:
        message = sending.queue_reply(g.account.id, conversation.id, current_user.id, text, token,
                                      check_collision=request.form.get("confirm") != "1")
    except sending.SendRefused as refused:
        if not is_htmx_fragment_request() or refused.status == 404:
            abort(refused.status, refused.reason)
        # htmx swaps 2xx only: the composer comes back with the draft and the reason (or the question).
        return render("partials/_reply_response.html", conversation=conversation, message=None, text=text,
                      error=refused.reason, client_token=token,
                      confirm_collision=isinstance(refused, sending.Collision))
    if not is_htmx_fragment_request():
        return redirect(url_for(".show", conversation_id=conversation.id))
    return render("partials/_reply_response.html", conversation=conversation, message=message)


def _note(conversation, text: str, token: str):
    """A private note: stored and shown to the team, never sent to Instagram."""
    try:
        note = notes.add_note(g.account.id, conversation.id, current_user.id, text)
    except notes.NoteRefused as refused:
        if not is_htmx_fragment_request():
            abort(422, str(refused))
        return render("partials/_reply_response.html", conversation=conversation, message=None, text=text,
                      error=str(refused), client_token=token, mode="note")
    if not is_htmx_fragment_request():
        return redirect(url_for(".show", conversation_id=conversation.id))
    # The note itself arrives through the live push (conversation.event), like a colleague's.
    return render("partials/_reply_response.html", conversation=conversation, message=None, mode="note",
                  note=note)


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


# --- Assignment and labels ----------------------------------------------------------------------

def _assignee_from_form() -> int | None:
    value = request.form.get("assignee", "")
    if value == "me":
        return current_user.id
    if value in ("", "none"):
        return None
    if not value.isdigit():
        abort(400, "Choose someone.")
    return int(value)


def _team_response(conversation_id: int):
    if not is_htmx_fragment_request():
        return redirect(url_for(".show", conversation_id=conversation_id))
    found = conversations.conversation_row(g.account.id, conversation_id)
    return render("partials/_thread_team_response.html", conversation=found.conversation, identity=found.identity,
                  product=found.product, **_team_context())


@bp.post("/c/<int:conversation_id>/assign")
def assign(conversation_id: int):
    """Give the conversation to a colleague, to me ("me"), or to nobody."""
    conversation = get_conversation_or_404(conversation_id)
    try:
        assignees.assign(g.account.id, conversation.id, _assignee_from_form(), actor_id=current_user.id)
    except StaffError as exc:
        abort(400, str(exc))
    return _team_response(conversation.id)


@bp.post("/bulk-assign")
def bulk_assign():
    """Assign the conversations selected in the list."""
    ids = [int(v) for v in request.form.getlist("ids") if v.isdigit()]
    try:
        changed = assignees.assign_many(g.account.id, ids, _assignee_from_form(), actor_id=current_user.id)
    except StaffError as exc:
        abort(400, str(exc))
    if is_htmx_fragment_request():
        # The rows change through the live push; the bar says what happened.
        return render("partials/_bulk_result.html", changed=changed, selected=len(ids))
    flash(f"{changed} conversation{'s' if changed != 1 else ''} assigned.", "success")
    return redirect(url_for(".index"))


@bp.post("/c/<int:conversation_id>/labels")
def add_label(conversation_id: int):
    """Put one of the account's labels on the conversation."""
    conversation = get_conversation_or_404(conversation_id)
    value = request.form.get("label_id", "")
    if not value.isdigit():
        abort(400, "Choose a label.")
    label = get_label_or_404(int(value))
    labels_service.add_label(g.account.id, conversation.id, label.id, actor_id=current_user.id)
    return _team_response(conversation.id)


@bp.post("/c/<int:conversation_id>/labels/<int:label_id>/remove")
def remove_label(conversation_id: int, label_id: int):
    """Take a label off the conversation."""
    conversation = get_conversation_or_404(conversation_id)
    label = get_label_or_404(label_id)
    labels_service.remove_label(g.account.id, conversation.id, label.id, actor_id=current_user.id)
    return _team_response(conversation.id)


# --- The composer's saved replies ---------------------------------------------------------------

@bp.get("/c/<int:conversation_id>/saved-replies")
def reply_picker(conversation_id: int):
    """The `/` picker: saved replies matching what follows the slash."""
    conversation = get_conversation_or_404(conversation_id)
    found = saved_replies.search(g.account.id, request.args.get("q", ""))
    return render("partials/_reply_picker.html", replies=found, conversation=conversation,
                  q=request.args.get("q", ""))


@bp.get("/c/<int:conversation_id>/saved-replies/<int:reply_id>")
def reply_fill(conversation_id: int, reply_id: int):
    """A saved reply's text for this conversation, variables filled (plain text for the composer)."""
    conversation = get_conversation_or_404(conversation_id)
    reply = get_saved_reply_or_404(reply_id)
    text = saved_replies.fill(g.account.id, reply.id, conversation.id, current_user.id)
    return text, 200, {"Content-Type": "text/plain; charset=utf-8"}
