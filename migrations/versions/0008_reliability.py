"""reliability: periodic checks' next runs in the database (periodic_tasks)

Revision ID: reliability
Revises: insights
Create Date: 2026-12-03

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'reliability'
down_revision = 'insights'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'periodic_tasks',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('next_run_at', sa.DateTime(), nullable=False),
        sa.Column('last_started_at', sa.DateTime(), nullable=True),
        sa.Column('last_finished_at', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_periodic_tasks')),
    )


def downgrade():
    op.drop_table('periodic_tasks')
