"""search: message text, @username and name; the unread conversations

PostgreSQL: pg_trgm GIN indexes, so ILIKE '%text%' over messages and identities is an
index scan. SQLite: an FTS5 table with the trigram tokenizer over messages.text (external
content, kept by triggers), queried with MATCH. Neither is in the models:
models/migration_hooks.include_object leaves them out of the models/migrations check.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

PG_INDEXES = {
    "ix_messages_text_trgm": "messages USING gin (text gin_trgm_ops)",
    "ix_identities_username_trgm": "identities USING gin (username gin_trgm_ops)",
    "ix_identities_name_trgm": "identities USING gin (name gin_trgm_ops)",
}

SQLITE_UP = [
    "CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages', content_rowid='id', tokenize='trigram')",
    "INSERT INTO messages_fts(rowid, text) SELECT id, text FROM messages WHERE text IS NOT NULL",
    # An external-content index must be told the old text to forget it exactly.
    """CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages WHEN new.text IS NOT NULL BEGIN
         INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
       END""",
    """CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages WHEN old.text IS NOT NULL BEGIN
         INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
       END""",
    """CREATE TRIGGER messages_fts_au AFTER UPDATE OF text ON messages BEGIN
         INSERT INTO messages_fts(messages_fts, rowid, text) SELECT 'delete', old.id, old.text WHERE old.text IS NOT NULL;
         INSERT INTO messages_fts(rowid, text) SELECT new.id, new.text WHERE new.text IS NOT NULL;
       END""",
]


def upgrade():
    dialect = op.get_bind().dialect.name
    unread = sa.text("unread_count > 0")
    op.create_index("ix_conversations_unread", "conversations", ["account_id", "last_message_at", "id"],
                    postgresql_where=unread, sqlite_where=unread)
    if dialect == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, target in PG_INDEXES.items():
            op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")
    elif dialect == "sqlite":
        for statement in SQLITE_UP:
            op.execute(statement)


def downgrade():
    dialect = op.get_bind().dialect.name
    op.drop_index("ix_conversations_unread", table_name="conversations")
    if dialect == "postgresql":
        for name in PG_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    elif dialect == "sqlite":
        for trigger in ("messages_fts_ai", "messages_fts_ad", "messages_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS messages_fts")
