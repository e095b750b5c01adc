"""Logging: plain text for a terminal, or one JSON object per line with `LOG_FORMAT=json`.

Every record carries the context it happened in, from context variables: the request id
(`X-Request-ID` when the proxy sent a sane one, else made here, and sent back), the
account and the webhook delivery being worked on, the RQ job, and the process kind
(web, worker, cli). Services add to it with `log_context(account_id=…)`.

What never goes into a line at INFO or above: tokens, secrets, passwords and what
customers wrote. Log ids and counts; the rows hold the rest.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
import uuid
from datetime import datetime, timezone

from flask import Flask, g, request
from rq import get_current_job

PROCESS_VARIABLE = "INBOX_PROCESS"  # web, worker or cli: set by gunicorn's settings and `inbox worker`
_FIELDS = ("request_id", "account_id", "delivery_id")
_context: dict[str, contextvars.ContextVar] = {name: contextvars.ContextVar(name, default=None) for name in _FIELDS}
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Secrets that travel in query strings (the webhook handshake's verify token, OAuth codes) and
# form-style text: their values never reach a log line, whoever logs them (gunicorn's access log).
_SECRET_VALUES = re.compile(r"(?<![A-Za-z_])(hub\.verify_token|verify_token|access_token|client_secret|"
                            r"fb_exchange_token|signed_request|code|state|password|token)=[^&\s\"']+")
# LogRecord's own attributes: anything else on a record came from `extra=` and is logged too.
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def redact(line: str) -> str:
    """Hide the values of secret-looking parameters in a log line."""
    return _SECRET_VALUES.sub(r"\1=[redacted]", line)


def log_format() -> str:
    return "json" if os.environ.get("LOG_FORMAT", "").strip().lower() == "json" else "text"


def process_kind() -> str:
    return os.environ.get(PROCESS_VARIABLE) or "cli"


class ContextFilter(logging.Filter):
    """Put the current request id, account, delivery, job and process on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _context.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        if getattr(record, "job_id", None) is None:
            job = get_current_job()
            record.job_id = job.id if job is not None else None
        record.process_kind = process_kind()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            "process": getattr(record, "process_kind", None) or process_kind(),
            "pid": record.process,
        }
        for name in (*_FIELDS, "job_id"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry and key not in (*_FIELDS, "job_id", "process_kind"):
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The terminal's format, with the request id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        request_id = getattr(record, "request_id", None)
        return f"{line} [request {request_id}]" if request_id else line


def make_handler(stream=None) -> logging.Handler:
    """A stderr handler in the configured format, with the context filter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format() == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    return handler


def configure(*, testing: bool = False) -> None:
    """Install the handler once per process: our loggers at INFO; with JSON, every library's too."""
    root = logging.getLogger()
    if testing or any(getattr(h, "_inbox", False) for h in root.handlers + logging.getLogger("inbox").handlers):
        return
    if log_format() == "json":
        # Libraries (rq, werkzeug) propagate here, so they print JSON too. Under gunicorn its
        # logging settings (gunicorn_logconfig) already put a JSON handler on the root.
        if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
            handler = make_handler()
            handler._inbox = True  # type: ignore[attr-defined]
            root.addHandler(handler)
        root.setLevel(logging.WARNING)
        for name in ("inbox", "rq.worker", "rq.scheduler"):
            logging.getLogger(name).setLevel(logging.INFO)
        return
    handler = make_handler()
    handler._inbox = True  # type: ignore[attr-defined]
    inbox = logging.getLogger("inbox")
    inbox.addHandler(handler)
    inbox.setLevel(logging.INFO)


def gunicorn_logconfig() -> dict | None:
    """gunicorn's logging in JSON (its error and access logs), or None to keep its own format."""
    if log_format() != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context"],
                                "stream": "ext://sys.stderr"}},
        "root": {"level": "WARNING", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        },
    }


# --- Context ----------------------------------------------------------------------------------

@contextlib.contextmanager
def log_context(**fields):
    """Add fields (account_id, delivery_id, request_id) to every line logged inside the block."""
    tokens = [(_context[name], _context[name].set(value)) for name, value in fields.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind(**fields) -> None:
    """Add fields to the rest of the current request's lines (undone when the request ends)."""
    for name, value in fields.items():
        token = _context[name].set(value)
        g.setdefault("log_tokens", []).append((_context[name], token))


def current_request_id() -> str | None:
    return _context["request_id"].get()


def init_app(app: Flask) -> None:
    """Give each request an id (the proxy's X-Request-ID when sane), log under it, send it back."""
    app.before_request(_start_request)
    app.after_request(_send_request_id)
    app.teardown_request(_end_request)


def _start_request() -> None:
    given = request.headers.get("X-Request-ID", "")
    request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    g.request_id = request_id
    bind(request_id=request_id)


def _send_request_id(response):
    request_id = g.get("request_id")
    if request_id:
        response.headers["X-Request-ID"] = request_id
    return response


def _end_request(exc) -> None:
    for var, token in reversed(g.pop("log_tokens", [])):
        try:
            var.reset(token)
        except ValueError:  # set in another context (a websocket's thread): drop it there
            var.set(None)
