"""The Instagram staff inbox: create_app(config=None) builds the Flask app."""

from __future__ import annotations

import os

from flask import Flask


def create_app(config: dict | None = None) -> Flask:
    """Build the app: config layers, then one init_app per subsystem."""
    # Not at the top: inbox.cli imports create_app from here, and every inbox.* import runs this file.
    from . import auth, cli, config as config_module, error_reports, extensions, logs, metrics, models, routes, security, templating  # noqa: F401
    from .live import hub  # the same reason

    # INBOX_INSTANCE_PATH moves instance/ (config, secrets, SQLite, embedded Redis, media).
    app = Flask(__name__, instance_path=os.environ.get("INBOX_INSTANCE_PATH") or None,
                instance_relative_config=True)
    config_module.load_config(app, config)
    logs.configure(testing=app.testing)
    error_reports.init_app(app)
    logs.init_app(app)
    metrics.init_app(app)
    security.init_app(app)  # before the routes: their <int:…> ids use its converter
    extensions.init_app(app)  # the models registered their tables when imported
    auth.init_app(app)
    templating.init_app(app)
    routes.init_app(app)
    hub.init_app(app)
    cli.init_app(app)
    return app
