"""Errors from web, worker and CLI to Sentry, when SENTRY_DSN is set; nothing is loaded otherwise.

Personal data stays here: no IP addresses, cookies, headers that authenticate, form or
JSON bodies (passwords, replies, webhook payloads), query strings, or local variables;
the staff user is reported by id only. Log lines are breadcrumbs at INFO, which carry
no personal data by the logging rule (inbox/logs.py).
"""

from __future__ import annotations

import logging
import re

from flask import Flask

log = logging.getLogger(__name__)

_initialised_with: str | None = None
_KEEP_HEADERS = {"host", "user-agent", "x-request-id", "hx-request", "content-type", "content-length", "accept"}
_SECRETISH = re.compile(r"(access_token|client_secret|token|signed_request|password)=[^&\s]+", re.I)


def init_app(app: Flask) -> None:
    """Start the Sentry SDK once per process with the Flask and RQ integrations (SENTRY_DSN only)."""
    global _initialised_with
    dsn = app.config.get("SENTRY_DSN")
    if not dsn or _initialised_with == dsn:
        return
    import sentry_sdk  # here, not at the top: an optional dependency, loaded only with SENTRY_DSN
    from sentry_sdk.integrations.flask import FlaskIntegration  # the same reason
    from sentry_sdk.integrations.rq import RqIntegration  # the same reason

    sentry_sdk.init(
        dsn=dsn,
        environment=app.config.get("SENTRY_ENVIRONMENT") or app.config.get("INBOX_ENV"),
        integrations=[FlaskIntegration(), RqIntegration()],
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrub,
        before_breadcrumb=_scrub_breadcrumb,
    )
    _initialised_with = dsn
    log.info("error reports go to Sentry")


def scrub(event: dict, hint: dict | None = None) -> dict:
    """Take personal data out of an event before it leaves the process."""
    req = event.get("request")
    if isinstance(req, dict):
        req.pop("cookies", None)
        req.pop("data", None)
        req.pop("env", None)
        if req.get("query_string"):
            req["query_string"] = "[removed]"
        headers = req.get("headers")
        if isinstance(headers, dict):
            req["headers"] = {k: v for k, v in headers.items() if k.lower() in _KEEP_HEADERS}
        if isinstance(req.get("url"), str):
            req["url"] = req["url"].split("?", 1)[0]
    user = event.get("user")
    if isinstance(user, dict):
        event["user"] = {"id": user["id"]} if "id" in user else {}
    for entry in (event.get("exception") or {}).get("values") or []:
        for frame in (entry.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)
        if isinstance(entry.get("value"), str):
            entry["value"] = _SECRETISH.sub(r"\1=[removed]", entry["value"])
    extra = event.get("extra")
    if isinstance(extra, dict):
        extra.pop("sys.argv", None)
    return event


def _scrub_breadcrumb(crumb: dict, hint: dict | None = None) -> dict | None:
    if crumb.get("category") in ("httplib", "http") and isinstance(crumb.get("data"), dict):
        url = crumb["data"].get("url")
        if isinstance(url, str):
            crumb["data"]["url"] = url.split("?", 1)[0]
        crumb["data"].pop("http.query", None)
    if isinstance(crumb.get("message"), str):
        crumb["message"] = _SECRETISH.sub(r"\1=[removed]", crumb["message"])
    return crumb
