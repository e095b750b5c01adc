"""Jinja setup and the one helper that decides page vs fragment."""

from __future__ import annotations

from datetime import datetime, timezone

from flask import Flask, g, make_response, render_template, request
from flask_login import current_user

from .display import display_name, dom_id, is_fallback_name
from .services.media import attachment_src
from .services.staff import accounts_for


def init_app(app: Flask) -> None:
    app.jinja_env.filters["reltime"] = reltime
    app.jinja_env.filters["datetime"] = format_datetime
    app.jinja_env.globals.update(dom_id=dom_id, display_name=display_name, is_fallback_name=is_fallback_name,
                                 has_endpoint=lambda name: name in app.view_functions,
                                 attachment_src=attachment_src)
    app.jinja_env.filters["ms_datetime"] = ms_datetime
    app.context_processor(_staff_context)


def _staff_context() -> dict:
    if not current_user.is_authenticated:
        return {"staff_accounts": [], "account": None}
    if "staff_accounts" not in g:
        g.staff_accounts = accounts_for(current_user)
    return {"staff_accounts": g.staff_accounts, "account": g.get("account")}


def is_htmx_fragment_request() -> bool:
    """An htmx request that wants a fragment (a history restore wants the whole page)."""
    return bool(request.headers.get("HX-Request")) and not request.headers.get("HX-History-Restore-Request")


def render(page: str, fragment: str | None = None, *, status: int = 200, **context):
    """Render the page, or only its fragment for htmx; always Vary on HX-Request."""
    template = fragment if fragment and is_htmx_fragment_request() else page
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response


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
