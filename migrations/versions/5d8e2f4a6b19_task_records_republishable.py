"""task records: say whether the record alone can publish the task again

Revision ID: 5d8e2f4a6b19
Revises: 7c1e5a9d3f20
Create Date: 2026-12-06 20:25:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5d8e2f4a6b19'
down_revision = '7c1e5a9d3f20'
branch_labels = None
depends_on = None


def upgrade():
    # Records written before this revision are not republished: nothing says they may be.
    with op.batch_alter_table('task_records', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('republishable', sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade():
    with op.batch_alter_table('task_records', schema=None) as batch_op:
        batch_op.drop_column('republishable')
