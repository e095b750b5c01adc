"""ops: erasures (the audit of data erased, and Meta's data-deletion requests), accounts'
app-scoped id and retention

Revision ID: ops
Revises: 0003
Create Date: 2026-12-03

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = 'ops'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('app_user_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('retention_days', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_accounts_app_user_id'), ['app_user_id'], unique=False)

    op.create_table(
        'erasures',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('confirmation_code', sa.String(length=64), nullable=True),
        sa.Column('requested_by', sa.String(length=16), nullable=False),
        sa.Column('actor_user_id', sa.Integer(), nullable=True),
        sa.Column('counts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_erasures_account_id_accounts'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['actor_user_id'], ['staff_users.id'],
                                name=op.f('fk_erasures_actor_user_id_staff_users'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_erasures')),
        sa.UniqueConstraint('confirmation_code', name=op.f('uq_erasures_confirmation_code')),
    )
    with op.batch_alter_table('erasures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_erasures_account_id'), ['account_id'], unique=False)


def downgrade():
    with op.batch_alter_table('erasures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_erasures_account_id'))
    op.drop_table('erasures')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_app_user_id'))
        batch_op.drop_column('retention_days')
        batch_op.drop_column('app_user_id')
