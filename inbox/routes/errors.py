"""Error pages: a page for browsers, a small JSON body for htmx and API clients."""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from ..templating import render

CODES = (400, 403, 404, 405, 413, 429, 500)


def init_app(app: Flask) -> None:
    for code in CODES:
        app.register_error_handler(code, error_page)


def error_page(error: HTTPException):
    code = error.code or 500
    if request.headers.get("HX-Request") or request.accept_mimetypes.best == "application/json":
        return {"error": error.description or "error"}, code
    return render("errors/error.html", status=code, code=code, error=error)
