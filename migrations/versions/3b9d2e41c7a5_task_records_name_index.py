"""task records: index (name, seq) for GET /tasks/?name=

Revision ID: 3b9d2e41c7a5
Revises: ff68cf9077e3
Create Date: 2026-12-02 17:40:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '3b9d2e41c7a5'
down_revision = 'ff68cf9077e3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('task_records', schema=None) as batch_op:
        batch_op.create_index('ix_task_records_name_seq', ['name', 'seq'], unique=False)


def downgrade():
    with op.batch_alter_table('task_records', schema=None) as batch_op:
        batch_op.drop_index('ix_task_records_name_seq')
