"""The inbox: conversation list and thread of one account."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from flask import Blueprint, abort, g, redirect, request, session, url_for

from ..auth import account_scoped
from ..services import conversations
from ..services.media import allowed_media_host
from ..templating import is_htmx_fragment_request, render

bp = account_scoped(Blueprint("conversations", __name__, url_prefix="/accounts/<int:account_id>"))


@bp.app_template_global()
def quoted_message(message):
    """The message a reply quotes (None when we do not hold it)."""
    return conversations.quoted_message(message)


@bp.app_template_global()
def attachment_post(attachment):
    """(Post, Product) a shared post or reel refers to; either may be None."""
    return conversations.attachment_post(attachment)


@bp.app_template_global()
def conversation_identity(conversation):
    return conversations.conversation_identity(conversation)


@bp.app_template_global()
def conversation_product(conversation):
    return conversations.conversation_product(conversation)


@bp.app_template_global()
def media_url(url: str | None) -> str | None:
    """A media link the browser may load (an allowed Instagram host), else None."""
    return url if url and allowed_media_host(url) else None


@bp.app_template_global()
def template_element(attachment) -> dict:
    """The first product element of a product template attachment ({} when absent or odd)."""
    raw = attachment.raw if isinstance(attachment.raw, dict) else {}
    payload = raw.get("payload") if isinstance(raw.get("payload"), dict) else {}
    product = payload.get("product") if isinstance(payload.get("product"), dict) else {}
    elements = product.get("elements") if isinstance(product.get("elements"), list) else []
    return elements[0] if elements and isinstance(elements[0], dict) else {}


@bp.app_template_filter()
def day_label(day: date) -> str:
    """Today, Yesterday, a weekday this week, else the date (UTC days)."""
    today = datetime.now(timezone.utc).date()
    if day == today:
        return "Today"
    if day == today - timedelta(days=1):
        return "Yesterday"
    if today - day < timedelta(days=7):
        return day.strftime("%A")
    return day.strftime("%A, %-d %B %Y" if day.year != today.year else "%A, %-d %B")


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


@bp.get("/list")
def rows():
    """List rows for htmx: a new filter or search (from the top) or the next page (cursor)."""
    filters = conversations.Filters.from_args(request.args)
    cursor = request.args.get("cursor")
    response = render("conversations/index.html", "partials/_conversation_items.html",
                      **(_page_context(filters) if not is_htmx_fragment_request() else _list_context(filters, cursor)),
                      thread=None, active_id=request.args.get("active", type=int))
    if is_htmx_fragment_request() and not cursor:
        # A new filter: the address bar follows, so a reload keeps it.
        response.headers["HX-Push-Url"] = url_for(".index", **filters.args())
    return response


@bp.get("/c/<int:conversation_id>")
def show(conversation_id: int):
    """One conversation: the whole page, or the thread fragment for htmx. Opening it marks it read."""
    try:
        was_unread = conversations.mark_read(g.account.id, conversation_id)
        thread = conversations.thread(g.account.id, conversation_id)
    except conversations.NotFound:
        abort(404)
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
    try:
        thread = conversations.thread(g.account.id, conversation_id, before=request.args.get("before"))
    except conversations.NotFound:
        abort(404)
    return render("partials/_thread_earlier.html", **_thread_context(thread))


@bp.get("/c/<int:conversation_id>/row")
def row(conversation_id: int):
    """One list row (what a live update or a status change swaps in)."""
    try:
        found = conversations.conversation_row(g.account.id, conversation_id)
    except conversations.NotFound:
        abort(404)
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
    try:
        conversations.set_status(g.account.id, conversation_id, status)
        found = conversations.conversation_row(g.account.id, conversation_id)
    except conversations.NotFound:
        abort(404)
    if not is_htmx_fragment_request():
        return redirect(url_for(".show", conversation_id=conversation_id))
    # The header's status control, and the list row out of band.
    return render("partials/_thread_status.html", conversation=found.conversation, identity=found.identity,
                  product=found.product, oob_row=True)
