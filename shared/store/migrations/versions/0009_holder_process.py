"""jobs.holder_process: the process that holds a running job's lease (boot, pid namespace, pid, start
time; shared/store/holder.py), so a worker on the same machine takes over the job of a worker killed
with kill -9 at once instead of after the lease's TTL

Revision ID: 0009_holder_process
Revises: 0008_store_id
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_holder_process"
down_revision = "0008_store_id"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder_process", sa.String(length=120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("holder_process")
