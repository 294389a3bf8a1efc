"""task records: index finished_at for purge_tasks

Revision ID: 7c1e5a9d3f20
Revises: 294eb00800d7
Create Date: 2026-12-03 07:10:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '7c1e5a9d3f20'
down_revision = '294eb00800d7'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('task_records', schema=None) as batch_op:
        batch_op.create_index('ix_task_records_finished_at', ['finished_at'], unique=False)


def downgrade():
    with op.batch_alter_table('task_records', schema=None) as batch_op:
        batch_op.drop_index('ix_task_records_finished_at')
