"""insights: account time zone, business hours and currency; per-conversation facts;
15-minute activity slots; sales outcomes; two message indexes the refresh reads

Revision ID: insights
Revises: team
Create Date: 2026-12-03

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = 'insights'
down_revision = 'team'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
BIGID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table(
        'insight_settings',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('timezone', sa.String(length=64), nullable=False),
        sa.Column('business_hours', JSON, nullable=True),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('refreshed_through', sa.DateTime(), nullable=True),
        sa.Column('facts_key', sa.String(length=64), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_insight_settings_account_id_accounts'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('account_id', name=op.f('pk_insight_settings')),
    )
    op.create_table(
        'insight_conversations',
        sa.Column('conversation_id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('started_ms', sa.BigInteger(), nullable=False),
        sa.Column('started_day', sa.Date(), nullable=False),
        sa.Column('first_customer_day', sa.Date(), nullable=True),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('post_media_id', sa.String(length=64), nullable=True),
        sa.Column('ad_id', sa.String(length=64), nullable=True),
        sa.Column('ad_title', sa.Text(), nullable=True),
        sa.Column('first_customer_ms', sa.BigInteger(), nullable=True),
        sa.Column('first_response_ms', sa.BigInteger(), nullable=True),
        sa.Column('response_seconds', sa.Integer(), nullable=True),
        sa.Column('responder_user_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                                name=op.f('fk_insight_conversations_account_id_accounts'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'],
                                name=op.f('fk_insight_conversations_conversation_id_conversations'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['responder_user_id'], ['staff_users.id'],
                                name=op.f('fk_insight_conversations_responder_user_id_staff_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('conversation_id', name=op.f('pk_insight_conversations')),
    )
    with op.batch_alter_table('insight_conversations', schema=None) as batch_op:
        batch_op.create_index('ix_insight_conversations_started', ['account_id', 'started_ms'], unique=False,
                              postgresql_include=['started_day', 'source', 'post_media_id', 'ad_id',
                                                  'conversation_id'])
        batch_op.create_index('ix_insight_conversations_first_customer', ['account_id', 'first_customer_ms'],
                              unique=False,
                              postgresql_include=['first_customer_day', 'response_seconds', 'responder_user_id'])
    op.create_table(
        'insight_slots',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('slot', sa.BigInteger(), nullable=False),
        sa.Column('user_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('customer_messages', sa.Integer(), nullable=False),
        sa.Column('replies', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_insight_slots_account_id_accounts'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('account_id', 'slot', 'user_id', name=op.f('pk_insight_slots')),
    )
    op.create_table(
        'sale_outcomes',
        sa.Column('id', BIGID, nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('conversation_id', sa.Integer(), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('product_id', sa.Integer(), nullable=True),
        sa.Column('quantity', sa.Integer(), nullable=True),
        sa.Column('amount', sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column('currency', sa.String(length=3), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('is_current', sa.Boolean(), nullable=False),
        sa.Column('marked_by_user_id', sa.Integer(), nullable=True),
        sa.Column('marked_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_sale_outcomes_account_id_accounts'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'],
                                name=op.f('fk_sale_outcomes_conversation_id_conversations'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_sale_outcomes_product_id_products'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['marked_by_user_id'], ['staff_users.id'],
                                name=op.f('fk_sale_outcomes_marked_by_user_id_staff_users'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sale_outcomes')),
    )
    with op.batch_alter_table('sale_outcomes', schema=None) as batch_op:
        batch_op.create_index('ix_sale_outcomes_conversation', ['conversation_id', 'id'], unique=False)
        batch_op.create_index('ix_sale_outcomes_current', ['account_id', 'is_current', 'marked_at'], unique=False)
    # Plain create_index (not batch): a batch on messages would recreate the table and drop
    # the FTS triggers of 0002.
    op.create_index('ix_messages_account_updated', 'messages', ['account_id', 'updated_at'], unique=False)
    op.create_index('ix_messages_account_time', 'messages', ['account_id', 'meta_timestamp'], unique=False)


def downgrade():
    op.drop_index('ix_messages_account_time', table_name='messages')
    op.drop_index('ix_messages_account_updated', table_name='messages')
    with op.batch_alter_table('sale_outcomes', schema=None) as batch_op:
        batch_op.drop_index('ix_sale_outcomes_current')
        batch_op.drop_index('ix_sale_outcomes_conversation')
    op.drop_table('sale_outcomes')
    op.drop_table('insight_slots')
    with op.batch_alter_table('insight_conversations', schema=None) as batch_op:
        batch_op.drop_index('ix_insight_conversations_first_customer')
        batch_op.drop_index('ix_insight_conversations_started')
    op.drop_table('insight_conversations')
    op.drop_table('insight_settings')
