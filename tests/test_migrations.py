"""The migrations are one line of history and agree with the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from inbox.extensions import db
from inbox.models.migration_hooks import include_object

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def test_there_is_one_migration_head():
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    heads = ScriptDirectory.from_config(config).get_heads()
    assert len(heads) == 1, f"several heads: {heads}; merge them"


def _schema_differences(app):
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "include_object": include_object, "render_as_batch": True})
        return compare_metadata(context, db.metadata)


def test_models_and_migrations_agree(app, session_db):
    # The session database was built by the migrations alone.
    assert _schema_differences(app) == []


def test_the_agreement_check_sees_a_model_change(app, session_db):
    # Proof the check above can fail: a column only the model has is reported.
    column = sa.Column("not_migrated", sa.Integer)
    db.metadata.tables["products"].append_column(column)
    try:
        diffs = _schema_differences(app)
    finally:
        db.metadata.tables["products"]._columns.remove(column)
    assert any(d[0] == "add_column" and d[3].name == "not_migrated" for d in diffs)


def test_every_model_table_exists_with_its_unique_constraints(app, session_db):
    with app.app_context():
        inspector = sa.inspect(db.engine)
        tables = set(inspector.get_table_names())
        expected = {"accounts", "staff_users", "memberships", "identities", "conversations", "messages",
                    "attachments", "reactions", "posts", "products", "post_products", "assignment_events",
                    "webhook_deliveries", "job_runs"}
        assert expected <= tables

        def uniques(table):
            return {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}

        assert ("account_id", "igsid") in uniques("identities")
        assert ("account_id", "customer_igsid") in uniques("conversations")
        assert ("account_id", "mid") in uniques("messages")
        assert ("client_token",) in uniques("messages")
        assert ("account_id", "media_id") in uniques("posts")
        assert ("account_id", "sku") in uniques("products")
        assert ("post_id",) in uniques("post_products")
        assert ("user_id", "account_id") in uniques("memberships")
        assert ("ig_user_id",) in uniques("accounts")


def test_downgrade_to_nothing_and_back(runner, app, session_db):
    result = runner.invoke(args=["db", "downgrade", "base"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert "messages" not in sa.inspect(db.engine).get_table_names()
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert "messages" in sa.inspect(db.engine).get_table_names()
