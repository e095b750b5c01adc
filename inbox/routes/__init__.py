"""One blueprint per URL area."""

from __future__ import annotations

from flask import Flask

from . import (admin, auth, automations, comments, conversations, deliveries, errors, health, home, insights, invites,
               live, media, meta, metrics, people, products, runs, team, webhooks)


def init_app(app: Flask) -> None:
    for module in (auth, health, metrics, meta, home, conversations, admin, webhooks, deliveries, runs, people, live,
                   products, media, comments, automations, team, invites, insights):
        app.register_blueprint(module.bp)
    app.register_blueprint(media.public_bp)
    errors.init_app(app)
    # Meta's POSTs are acknowledged before Flask's request machinery (routes/webhooks.py).
    app.wsgi_app = webhooks.Acknowledge(app.wsgi_app, app)
