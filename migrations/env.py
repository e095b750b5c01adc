"""Alembic environment for Flask-Migrate: one metadata, batch mode for SQLite."""

from __future__ import annotations

import logging

from alembic import context
from flask import current_app

from inbox.models.migration_hooks import include_object, render_item

config = context.config
logger = logging.getLogger("alembic.env")
target_db = current_app.extensions["migrate"].db


def run_migrations_online() -> None:
    def process_revision_directives(context_, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)
    conf_args["include_object"] = include_object
    conf_args["render_item"] = render_item

    connectable = target_db.engine
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_db.metadata, **conf_args)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Offline migrations are not supported; run `flask --app inbox db upgrade`.")
run_migrations_online()
