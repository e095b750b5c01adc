"""What each live event pushes: HTML of out-of-band swaps, rendered once per event and process.

A renderer is `fn(event: dict, account_id: int) -> str | None`, registered for one event type
with `@frame_renderer("message.created")`; a type may have several (their parts go out in the
order they were registered). The hub calls `render_frames` once per batch of an account's events,
in a request context with `g.account` set and no user, because one frame serves every member of
the account: templates must not use `current_user`, and `csrf_token()` renders "" (htmx sends the
token from `<body hx-headers>`). What the batch shows is loaded before the renderers run:
`batch_message(event)` and `batch_row(conversation_id)` read it. Renderers render partials with
`render_push(template, **context)`, which passes `oob` (see templating.py: the partial marks
itself with hx-swap-oob).

A new event type: add it to publish.EVENT_TYPES (and publish.STATE_EVENTS when a repeat says
nothing new), then a renderer here; when a batch may carry many such events, load what they show
in _load_batch rather than one query per event.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, g, render_template

from ..extensions import db
from ..models import Account, Conversation, Message
from ..services import activity, automations, comments, conversations, jobruns, presence, team
from ..services import labels as labels_service
from ..services.conversations import ConversationRow
from .publish import EVENT_TYPES

Renderer = Callable[[dict, int], "str | None"]

_renderers: dict[str, list[Renderer]] = {}


def frame_renderer(event_type: str) -> Callable[[Renderer], Renderer]:
    """Register fn(event, account_id) -> HTML (out-of-band swaps) or None for one event type."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown live event {event_type!r}")

    def decorator(fn: Renderer) -> Renderer:
        if fn not in _renderers.setdefault(event_type, []):
            _renderers[event_type].append(fn)
        return fn

    return decorator


def render_frames(app: Flask, account_id: int, events: list[dict]) -> str | None:
    """One frame for several events of one account, in order; releases the DB session after.

    Under load the listener hands over everything that waited, so one frame (one send per
    socket) carries many swaps, and per-batch work (loading, the unread total) is done once.
    """
    if not any(_renderers.get(event.get("type")) for event in events):
        return None
    with app.test_request_context("/", base_url=app.config.get("LIVE_BASE_URL") or "http://localhost/"):
        try:
            account = db.session.get(Account, account_id)
            if account is None:
                return None
            g.account = account
            g.live_tail = {}
            _load_batch(account_id, events)
            parts = [part for event in events for fn in _renderers.get(event.get("type"), [])
                     if (part := fn(event, account_id))]
            parts.extend(render() for render in g.live_tail.values())
            return "".join(parts) or None
        finally:
            db.session.remove()


def at_end_of_frame(key: str, render: Callable[[], str]) -> None:
    """Add render() once at the end of the frame, however many of its events ask for it."""
    g.live_tail.setdefault(key, render)


def hello_frame(account_id: int | None) -> str:
    """The socket's first frame: "subscribed" (#live-state) and, for one account, its unread total."""
    if account_id is None:
        return render_push("partials/_live_state.html", account_id=None)
    unread = conversations.unread_total(account_id)
    return (render_push("partials/_live_state.html", account_id=account_id, unread_total=unread)
            + render_push("partials/_unread_total.html", unread_total=unread))


def render_push(template: str, **context) -> str:
    """A partial as an out-of-band swap for a push: no personal CSRF token (htmx sends the header)."""
    return render_template(template, csrf_token=lambda: "", oob=context.pop("oob", True), **context)


# --- What a batch shows, loaded once ----------------------------------------------------------

def _load_batch(account_id: int, events: list[dict]) -> None:
    message_ids = {int(e["message_id"]) for e in events
                   if e.get("type") in ("message.created", "message.updated") and e.get("message_id")}
    g.live_messages = conversations.get_messages(account_id, message_ids)
    conversation_ids = {int(e["conversation_id"]) for e in events if e.get("conversation_id")}
    conversation_ids |= {m.conversation_id for m in g.live_messages.values()}
    g.live_rows = conversations.conversation_rows(account_id, conversation_ids)
    event_ids = {int(e["event_id"]) for e in events
                 if e.get("type") in ("conversation.event", "staff.notify") and e.get("event_id")}
    g.live_events = activity.get_events(account_id, event_ids)


def batch_message(event: dict) -> tuple[Message, Conversation] | None:
    """The event's message and its conversation (None: gone, or not this account's)."""
    message = g.live_messages.get(int(event.get("message_id") or 0))
    row = g.live_rows.get(message.conversation_id) if message is not None else None
    return (message, row.conversation) if row is not None else None


def batch_row(conversation_id: int) -> ConversationRow | None:
    """A conversation's list row (None: gone, or not this account's)."""
    return g.live_rows.get(conversation_id)


# --- The renderers ----------------------------------------------------------------------------

@frame_renderer("message.created")
def message_created(event: dict, account_id: int) -> str | None:
    """Append the bubble to its thread when that thread is open (a repeat replaces it); a
    customer's message also brings the data of a desktop notification."""
    found = batch_message(event)
    if found is None:
        return None
    message, conversation = found
    frame = render_push("partials/_message.html", message=message, conversation=conversation, oob="beforeend")
    if message.direction == "in" and message.sender_kind == "customer":
        row = batch_row(conversation.id)
        frame += render_push("partials/_live_notify.html", message=message, conversation=conversation,
                             identity=row.identity)
    return frame


@frame_renderer("message.updated")
def message_updated(event: dict, account_id: int) -> str | None:
    """Replace the bubble in place (sent, seen, failed, edited, unsent, reactions)."""
    found = batch_message(event)
    if found is None:
        return None
    message, conversation = found
    return render_push("partials/_message.html", message=message, conversation=conversation)


@frame_renderer("conversation.updated")
def conversation_updated(event: dict, account_id: int) -> str | None:
    """Drop a merged bubble, replace the list row (live.js moves it by its last message time),
    and once per frame the account's unread total (the page title counts it)."""
    parts = []
    removed = event.get("removed_message_id")
    if removed:
        parts.append(render_push("partials/_message_removed.html", message_id=int(removed)))
    row = batch_row(int(event.get("conversation_id") or 0))
    if row is not None:
        parts.append(render_push("partials/_conversation_row.html", conversation=row.conversation,
                                 identity=row.identity, product=row.product))
    at_end_of_frame("unread-total", lambda: render_push("partials/_unread_total.html",
                                                        unread_total=conversations.unread_total(account_id)))
    return "".join(parts)


@frame_renderer("conversation.updated")
def thread_product(event: dict, account_id: int) -> str | None:
    """After a product decision (`product` set): the open thread's product dropdown and "why"
    list. Other updates (every new message) render nothing here."""
    if not event.get("product"):
        return None
    row = batch_row(int(event.get("conversation_id") or 0))
    if row is None:
        return None
    return render_push("partials/_thread_product.html", conversation=row.conversation, account=g.account)


@frame_renderer("account.updated")
def account_banner(event: dict, account_id: int) -> str | None:
    """The reconnect banner appears (or goes) on open inbox pages."""
    return render_push("partials/_account_banner.html", account=g.account)


@frame_renderer("job.progress")
def run_progress(event: dict, account_id: int) -> str | None:
    """A background run's progress bar or summary, swapped in by its id."""
    run = jobruns.get_run(account_id, int(event.get("job_run_id") or 0))
    if run is None:
        return None
    return render_push("partials/_run.html", run=run)


# --- Comments and automations ------------------------------------------------------------------

def _post_row(account_id: int, post_id: int, oob) -> str:
    summary = comments.post_summary(account_id, post_id) if post_id else None
    if summary is None:
        return ""
    return render_push("partials/_comment_post_row.html", summary=summary, oob=oob, product_id=None)


@frame_renderer("comment.created")
def comment_created(event: dict, account_id: int) -> str | None:
    """Append the comment to its post's open thread (a reply under its parent), and put the post
    first in the comments list with its new count."""
    node = comments.comment_node(account_id, int(event.get("comment_id") or 0))
    if node is None:
        return None
    parent = comments.parent_row_id(node.comment)
    frame = ""
    if node.comment.post_id:
        frame = render_push("partials/_comment.html", node=node, account=g.account, error=None, oob="beforeend",
                            parent_id=parent)
    return frame + _post_row(account_id, node.comment.post_id or 0, "afterbegin")


@frame_renderer("comment.updated")
def comment_updated(event: dict, account_id: int) -> str | None:
    """Replace the comment in place (edited, deleted, hidden, replied to, a rule ran) and its post's row."""
    node = comments.comment_node(account_id, int(event.get("comment_id") or 0))
    if node is None:
        return None
    frame = render_push("partials/_comment.html", node=node, account=g.account, error=None, oob=True)
    return frame + _post_row(account_id, node.comment.post_id or 0, True)


@frame_renderer("message.updated")
def private_reply_state(event: dict, account_id: int) -> str | None:
    """A private reply's status changed (sent, failed): the comment it answers shows it."""
    found = batch_message(event)
    if found is None or not found[0].comment_id:
        return None
    node = comments.comment_node(account_id, found[0].comment_id)
    if node is None:
        return None
    return render_push("partials/_comment.html", node=node, account=g.account, error=None, oob=True)


@frame_renderer("automation.updated")
def automation_updated(event: dict, account_id: int) -> str | None:
    """A rule's card (active or paused, its latest firings) on the automations page."""
    try:
        rule = automations.get_automation(account_id, int(event.get("automation_id") or 0))
    except automations.AutomationNotFound:
        return None
    return render_push("partials/_automation.html", rule=rule, account=g.account,
                       history=automations.history(account_id, rule.id, limit=10), oob=True)


# --- The team: activity, notes, notifications, presence -----------------------------------------

@frame_renderer("conversation.updated")
def thread_team(event: dict, account_id: int) -> str | None:
    """After an assignment or a label change (`team` set): the open thread's assignee and labels."""
    if not event.get("team"):
        return None
    row = batch_row(int(event.get("conversation_id") or 0))
    if row is None:
        return None
    return render_push("partials/_thread_team.html", conversation=row.conversation,
                       staff=_members(account_id), account_labels=_account_labels(account_id))


def _account_labels(account_id: int):
    """The account's labels, read once per frame."""
    if "live_labels" not in g:
        g.live_labels = labels_service.labels(account_id)
    return g.live_labels


def _members(account_id: int):
    """The account's team, read once per frame."""
    if "live_members" not in g:
        g.live_members = team.members(account_id)
    return g.live_members


@frame_renderer("conversation.event")
def conversation_event(event: dict, account_id: int) -> str | None:
    """An activity line or a note, appended to its thread when that thread is open."""
    item = g.live_events.get(int(event.get("event_id") or 0))
    row = batch_row(int(event.get("conversation_id") or 0))
    if item is None or row is None:
        return None
    return render_push("partials/_activity.html", item=item, conversation=row.conversation, oob="beforeend")


@frame_renderer("staff.notify")
def staff_notify(event: dict, account_id: int) -> str | None:
    """A desktop notification for one member (data-user-id: every other page ignores it)."""
    item = g.live_events.get(int(event.get("event_id") or 0))
    row = batch_row(int(event.get("conversation_id") or 0))
    if item is None or row is None:
        return None
    return render_push("partials/_team_notify.html", item=item, row=row, user_id=int(event.get("user_id") or 0),
                       kind=event.get("kind") or "assigned")


@frame_renderer("presence.updated")
def presence_updated(event: dict, account_id: int) -> str | None:
    """Who is viewing and typing in a conversation, in its open thread's header."""
    conversation_id = int(event.get("conversation_id") or 0)
    if batch_row(conversation_id) is None:
        return None
    viewing, typing = presence.in_conversation(account_id, conversation_id)
    people = {m.user.id: m.user for m in _members(account_id)}
    return render_push("partials/_presence.html", conversation_id=conversation_id,
                       viewers=[people[u] for u in sorted(viewing) if u in people],
                       typing_ids=typing)


@frame_renderer("team.updated")
def team_updated(event: dict, account_id: int) -> str | None:
    """The team page's member list (roles, away, who joined)."""
    members = _members(account_id)
    return render_push("team/_members.html", members=members,
                       online=presence.online_user_ids(account_id, [m.user.id for m in members]),
                       account=g.account, role=None)
