"""The Instagram staff inbox: create_app(config=None) builds the Flask app."""

from __future__ import annotations

import logging
import os

from flask import Flask


def create_app(config: dict | None = None) -> Flask:
    """Build the app: config layers, then one init_app per subsystem."""
    # Not at the top: inbox.cli imports create_app from here, and every inbox.* import runs this file.
    from . import auth, cli, config as config_module, extensions, models, routes, templating  # noqa: F401
    from .live import hub  # the same reason

    # INBOX_INSTANCE_PATH moves instance/ (config, secrets, SQLite, embedded Redis, media).
    app = Flask(__name__, instance_path=os.environ.get("INBOX_INSTANCE_PATH") or None,
                instance_relative_config=True)
    config_module.load_config(app, config)
    _configure_logging(app)
    extensions.init_app(app)  # the models registered their tables when imported
    auth.init_app(app)
    templating.init_app(app)
    routes.init_app(app)
    hub.init_app(app)
    cli.init_app(app)
    return app


def _configure_logging(app: Flask) -> None:
    """Our own loggers at INFO on stderr; libraries keep their defaults."""
    logger = logging.getLogger("inbox")
    if not logger.handlers and not app.testing:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
