"""The Instagram staff inbox: create_app(config=None) builds the Flask app."""

from __future__ import annotations

import logging
import os

from flask import Flask


def create_app(config: dict | None = None) -> Flask:
    """Build the app: config layers, then one init_app per subsystem."""
    # INBOX_INSTANCE_PATH moves instance/ (config, secrets, SQLite, embedded Redis, media).
    app = Flask(__name__, instance_path=os.environ.get("INBOX_INSTANCE_PATH") or None,
                instance_relative_config=True)

    from . import config as config_module

    config_module.load_config(app, config)
    _configure_logging(app)

    from . import extensions, models  # noqa: F401  (models register their tables)

    extensions.init_app(app)

    from . import auth, cli, routes, templating
    from .live import hub

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
