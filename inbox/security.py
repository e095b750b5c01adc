"""What every response and request goes through for safety: headers, proxies, ids, redirects.

- Headers on every response: a Content-Security-Policy with no inline script (pages load
  their scripts from /static; htmx is configured not to eval), `frame-ancestors 'none'` and
  `X-Frame-Options: DENY` (no page of any origin may frame the inbox), `nosniff`, and a
  `Referrer-Policy` that never sends our URLs to another site.
- Behind TRUSTED_PROXIES proxies, the client's address, scheme and host come from their
  X-Forwarded-* headers (Werkzeug's ProxyFix); with none, those headers are ignored.
- Ids: a URL's `<int:…>` and a form's id fit a 64-bit signed column, else 404 / 400.
- Redirects built from what a browser sent (`next`, `Referer`) stay within the site.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, abort, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from .models.types import MAX_ID


def content_security_policy(media_schemes: str = "https:") -> str:
    """The policy; `media_schemes` are where customers' pictures and videos may still load from
    (Instagram's CDN until a copy is kept: https, or the simulator's http when MEDIA_REQUIRE_HTTPS is off)."""
    return "; ".join((
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        f"img-src 'self' data: {media_schemes}",
        f"media-src 'self' {media_schemes}",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
    ))


HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class BoundedIntegerConverter(IntegerConverter):
    """`<int:…>` in URLs: a number a database id can be (0 … 2^63-1); anything longer is a 404."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_ID, signed=False):  # noqa: A002 (Werkzeug's names)
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def init_app(app: Flask) -> None:
    app.url_map.converters["int"] = BoundedIntegerConverter
    proxies = int(app.config.get("TRUSTED_PROXIES") or 0)
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    headers = {"Content-Security-Policy": content_security_policy(
        "https:" if app.config.get("MEDIA_REQUIRE_HTTPS", True) else "https: http:"), **HEADERS}

    def add_headers(response):
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response

    app.after_request(add_headers)


def form_id(value: str | None, *, required: bool = True) -> int | None:
    """An id from a form or query string: None when absent (and not required), else 400 unless it fits."""
    value = (value or "").strip()
    if not value:
        if required:
            abort(400, "An id is missing.")
        return None
    if not value.isdigit() or int(value) > MAX_ID:
        abort(400, "That id is not valid.")
    return int(value)


def same_site(target: str | None) -> str | None:
    """target when it stays on this site (a path, or a URL on this host), else None."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        if parts.scheme not in ("http", "https") or parts.netloc != request.host:
            return None
        return target
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None
