"""search: rare phrases of common words through an index of adjacent word pairs (PostgreSQL)

A phrase such as "ship to" is rare while both of its words are everywhere, so the
trigram index (migration 0002) reads long posting lists and rechecks thousands of rows
for a few matches. This index holds, for every message, each pair of adjacent words as
the last two characters of one and the first two of the next ("ship to" -> "ip to"):
every text containing "ship to" holds that pair, and few others do. The search asks it
first and checks the phrase on what it finds (services/conversations._text_matches).
Not in the models: models/migration_hooks.include_object leaves it out.

Revision ID: pipeline2
Revises: insights
Create Date: 2026-12-03

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'pipeline2'
down_revision = 'insights'
branch_labels = None
depends_on = None

# Words are what whitespace separates; the pairs of one message, each once.
FUNCTION = r"""
CREATE OR REPLACE FUNCTION message_word_pairs(body text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$
  SELECT coalesce(array_agg(DISTINCT pair), '{}') FROM (
    SELECT right(word, 2) || ' ' || left(lead(word) OVER (ORDER BY n), 2) AS pair
    FROM unnest(regexp_split_to_array(lower(body), '\s+')) WITH ORDINALITY AS w(word, n)
    WHERE word <> ''
  ) pairs WHERE pair IS NOT NULL
$$
"""


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(FUNCTION)
    op.execute("CREATE INDEX IF NOT EXISTS ix_messages_word_pairs ON messages "
               "USING gin (message_word_pairs(text))")
    # Statistics of the new expression now (a few seconds), not when autovacuum comes by: without
    # them the planner guesses thousands of rows and starts parallel workers for a dozen.
    op.execute("ANALYZE messages")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_messages_word_pairs")
    op.execute("DROP FUNCTION IF EXISTS message_word_pairs(text)")
