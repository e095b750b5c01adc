"""Jinja setup: every template global and filter, and the one helper that decides page vs fragment.

Out-of-band swaps have one form: a partial that responses or pushes also send out of band takes
the template parameter `oob` and puts `hx-swap-oob` on itself. `oob=true` replaces the element
with the partial's id; a message bubble also takes `oob="beforeend"` (and a message group
`oob="afterbegin"`), which wraps it in the container htmx inserts into its conversation's open
thread (htmx inserts a container's children). A partial that includes another oob-capable
partial resets `oob` around the include. Python code never writes or patches `hx-swap-oob`.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

from flask import Flask, g, make_response, render_template, request
from markupsafe import Markup, escape
from flask_login import current_user

from .display import display_name, dom_id, is_fallback_name, name_hint
from .models import JobRun
from .models.team import LABEL_COLORS
from .services import activity, comments, conversations, identities, media, notes, sending, sync
from .services.insights import hours, sales
from .services.products import panel, posts
from .services.staff import accounts_for

# What the inbox calls each kind of background run (others: the kind, in words).
RUN_LABELS = {identities.REFRESH: "Refresh identities", sync.RESYNC: "Resync"}
_RUN_STATE_RANK = {"queued": 0, "running": 1, "finished": 2, "failed": 2}


def init_app(app: Flask) -> None:
    app.jinja_env.globals.update(
        # Names and ids
        dom_id=dom_id, display_name=display_name, is_fallback_name=is_fallback_name, name_hint=name_hint,
        identity_picture=identities.picture_url,
        # Messages and attachments
        attachment_src=media.attachment_src, media_url=media_url,
        quoted_message=conversations.quoted_message, attachment_post=conversations.attachment_post,
        template_element=template_element,
        # The composer
        new_client_token=new_client_token, reply_refusal=reply_refusal,
        reply_window_closes_at=sending.window_closes_at, send_status_label=sending.status_label,
        # Products and posts
        product_panel=panel.product_panel, post_link_state=posts.post_link_state,
        # Background runs
        run_label=run_label, run_version=run_version,
        # Comments
        post_label=comments.post_label, private_reply_refusal=comments.private_reply_refusal,
        private_reply_context=comments.private_reply_context,
        # The team
        row_team=conversations.row_team, describe_event=activity.describe, merge_timeline=activity.merge_timeline,
        mention_handle=notes.mention_handle, note_html=note_html, label_colors=LABEL_COLORS,
        # Insights and sales outcomes
        sale_outcome=sale_outcome,
    )
    app.jinja_env.filters.update(reltime=reltime, datetime=format_datetime, ms_datetime=ms_datetime,
                                 day_label=day_label, duration=duration, money=money,
                                 hhmm=hours.format_minute)
    app.context_processor(_staff_context)


def _staff_context() -> dict:
    if not current_user.is_authenticated:
        return {"staff_accounts": [], "account": None}
    if "staff_accounts" not in g:
        g.staff_accounts = accounts_for(current_user)
    return {"staff_accounts": g.staff_accounts, "account": g.get("account")}


# --- Page or fragment ---------------------------------------------------------------------

def is_htmx_fragment_request() -> bool:
    """An htmx request that wants a fragment (a history restore wants the whole page)."""
    return bool(request.headers.get("HX-Request")) and not request.headers.get("HX-History-Restore-Request")


def render(page: str, fragment: str | None = None, *, status: int = 200, **context):
    """Render the page, or only its fragment for htmx; always Vary on HX-Request."""
    template = fragment if fragment and is_htmx_fragment_request() else page
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response


# --- Globals --------------------------------------------------------------------------------

def sale_outcome(conversation) -> sales.OutcomeView:
    """The thread's Sold / Not sold box: the current outcome, who marked it, the products to choose from."""
    return sales.outcome_view(conversation.account_id, conversation.id)


def duration(seconds) -> str:
    """Seconds as staff read a wait: "45 s", "12 min", "3 h 05 min", "2 d 4 h"; blank for none."""
    if seconds is None:
        return "–"
    s = int(round(float(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def money(amount, currency: str | None = None) -> str:
    """49.9 → "49.90 EUR"."""
    if amount is None:
        return "–"
    text = f"{amount:,.2f}"
    return f"{text} {currency}" if currency else text


def note_html(text: str) -> Markup:
    """A note's text, escaped, with @mentions marked and line breaks kept."""
    escaped = str(escape(text or ""))
    marked = notes.MENTION_PATTERN.sub(lambda m: f'<span class="mention">{m.group(0)}</span>', escaped)
    return Markup(marked.replace("\n", "<br>"))


def new_client_token() -> str:
    """A fresh token for one composer submit (the same token twice is one message)."""
    return uuid.uuid4().hex


def reply_refusal(conversation, account=None) -> str | None:
    """Why the composer is disabled in this conversation (None: replying is allowed)."""
    return sending.refusal_reason(conversation, account if account is not None else g.get("account"))


def media_url(url: str | None) -> str | None:
    """A media link the browser may load (an allowed Instagram host), else None."""
    return url if url and media.allowed_media_host(url) else None


def template_element(attachment) -> dict:
    """The first product element of a product template attachment ({} when absent or odd)."""
    raw = attachment.raw if isinstance(attachment.raw, dict) else {}
    payload = raw.get("payload") if isinstance(raw.get("payload"), dict) else {}
    product = payload.get("product") if isinstance(payload.get("product"), dict) else {}
    elements = product.get("elements") if isinstance(product.get("elements"), list) else []
    return elements[0] if elements and isinstance(elements[0], dict) else {}


def run_label(run: JobRun) -> str:
    return RUN_LABELS.get(run.kind, run.kind.replace("_", " ").capitalize())


def run_version(run: JobRun) -> int:
    """Grows over a run's life, so a late push never replaces a newer render."""
    return _RUN_STATE_RANK.get(run.state, 2) * 10**12 + (run.progress_done or 0)


# --- Filters --------------------------------------------------------------------------------

def reltime(value: datetime | None, now: datetime | None = None) -> str:
    """A short relative time: "now", "5m", "3h", "2d", or a date."""
    if value is None:
        return ""
    now = now or datetime.now(timezone.utc)
    seconds = (now - value).total_seconds()
    if seconds < 60:
        return "now"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    if seconds < 7 * 86400:
        return f"{int(seconds // 86400)}d"
    if value.year == now.year:
        return value.strftime("%-d %b")
    return value.strftime("%-d %b %Y")


def ms_datetime(ms: int | None) -> datetime | None:
    """Meta's millisecond timestamp as an aware UTC datetime."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def format_datetime(value: datetime | None) -> str:
    return value.strftime("%-d %b %Y, %H:%M UTC") if value else ""


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
