"""comments: Instagram comments, keyword automations and their runs; private replies and comment evidence

messages.comment_id is added without rebuilding the table on SQLite (batch mode would copy
`messages` and lose the search triggers of 0002): SQLite adds a column with its REFERENCES
clause in place, and uniqueness is a unique index on both databases.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('automations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('keywords', sa.Text(), nullable=False),
    sa.Column('all_posts', sa.Boolean(), nullable=False),
    sa.Column('media_ids', sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('private_template', sa.Text(), nullable=False),
    sa.Column('public_replies', sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('created_by_user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_automations_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['staff_users.id'], name=op.f('fk_automations_created_by_user_id_staff_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_automations')),
    sa.UniqueConstraint('account_id', 'name', name=op.f('uq_automations_account_id_name'))
    )
    with op.batch_alter_table('automations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_automations_account_id'), ['account_id'], unique=False)

    op.create_table('comments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('comment_id', sa.String(length=64), nullable=True),
    sa.Column('field', sa.String(length=16), nullable=False),
    sa.Column('media_id', sa.String(length=64), nullable=True),
    sa.Column('post_id', sa.Integer(), nullable=True),
    sa.Column('parent_comment_id', sa.String(length=64), nullable=True),
    sa.Column('author_igsid', sa.String(length=64), nullable=True),
    sa.Column('author_username', sa.String(length=255), nullable=True),
    sa.Column('is_own', sa.Boolean(), nullable=False),
    sa.Column('sender_kind', sa.String(length=16), nullable=True),
    sa.Column('sent_by_user_id', sa.Integer(), nullable=True),
    sa.Column('automation_id', sa.Integer(), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('previous_texts', sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('edit_count', sa.Integer(), nullable=False),
    sa.Column('media_product_type', sa.String(length=32), nullable=True),
    sa.Column('ad_id', sa.String(length=64), nullable=True),
    sa.Column('ad_title', sa.Text(), nullable=True),
    sa.Column('hidden', sa.Boolean(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('deleted_at', sa.DateTime(), nullable=True),
    sa.Column('is_read', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=True),
    sa.Column('action_error', sa.Text(), nullable=True),
    sa.Column('meta_timestamp', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_comments_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['automation_id'], ['automations.id'], name=op.f('fk_comments_automation_id_automations'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['post_id'], ['posts.id'], name=op.f('fk_comments_post_id_posts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['sent_by_user_id'], ['staff_users.id'], name=op.f('fk_comments_sent_by_user_id_staff_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_comments')),
    sa.UniqueConstraint('account_id', 'comment_id', name=op.f('uq_comments_account_id_comment_id'))
    )
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.create_index('ix_comments_post', ['account_id', 'post_id', 'meta_timestamp'], unique=False)

    op.create_table('automation_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('automation_id', sa.Integer(), nullable=False),
    sa.Column('comment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reply_comment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('details', sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_automation_runs_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['automation_id'], ['automations.id'], name=op.f('fk_automation_runs_automation_id_automations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['comment_id'], ['comments.id'], name=op.f('fk_automation_runs_comment_id_comments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_automation_runs_message_id_messages'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['reply_comment_id'], ['comments.id'], name=op.f('fk_automation_runs_reply_comment_id_comments'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_automation_runs')),
    sa.UniqueConstraint('automation_id', 'comment_id', name=op.f('uq_automation_runs_automation_id_comment_id'))
    )
    with op.batch_alter_table('automation_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_automation_runs_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_automation_runs_comment_id'), ['comment_id'], unique=False)

    with op.batch_alter_table('assignment_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('comment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_assignment_events_comment_id_comments'), 'comments', ['comment_id'], ['id'], ondelete='SET NULL')

    if op.get_bind().dialect.name == 'sqlite':
        op.execute("ALTER TABLE messages ADD COLUMN comment_id INTEGER "
                   "CONSTRAINT fk_messages_comment_id_comments REFERENCES comments (id)")
    else:
        op.add_column('messages', sa.Column('comment_id', sa.BigInteger(), nullable=True))
        op.create_foreign_key(op.f('fk_messages_comment_id_comments'), 'messages', 'comments', ['comment_id'], ['id'])
    op.create_index('uq_messages_comment_id', 'messages', ['comment_id'], unique=True)



def downgrade():
    op.drop_index('uq_messages_comment_id', table_name='messages')
    if op.get_bind().dialect.name == 'sqlite':
        op.execute("ALTER TABLE messages DROP COLUMN comment_id")  # SQLite 3.35+
    else:
        op.drop_constraint(op.f('fk_messages_comment_id_comments'), 'messages', type_='foreignkey')
        op.drop_column('messages', 'comment_id')

    with op.batch_alter_table('assignment_events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_assignment_events_comment_id_comments'), type_='foreignkey')
        batch_op.drop_column('comment_id')

    with op.batch_alter_table('automation_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_automation_runs_comment_id'))
        batch_op.drop_index(batch_op.f('ix_automation_runs_account_id'))

    op.drop_table('automation_runs')
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.drop_index('ix_comments_post')

    op.drop_table('comments')
    with op.batch_alter_table('automations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_automations_account_id'))

    op.drop_table('automations')
