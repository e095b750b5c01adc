"""One blueprint per URL area."""

from __future__ import annotations

from flask import Flask, render_template, request


def init_app(app: Flask) -> None:
    from . import (admin, auth, conversations, deliveries, health, home, live, media, people, products, runs,
                   webhooks)

    for module in (auth, health, home, conversations, admin, webhooks, deliveries, runs, people, live, products,
                   media):
        app.register_blueprint(module.bp)
    app.register_blueprint(media.public_bp)

    for code in (400, 403, 404, 405, 413, 429, 500):
        app.register_error_handler(code, _error_page)


def _error_page(error):
    code = getattr(error, "code", 500) or 500
    if request.headers.get("HX-Request") or request.accept_mimetypes.best == "application/json":
        return {"error": getattr(error, "description", "error")}, code
    return render_template("errors/error.html", code=code, error=error), code
