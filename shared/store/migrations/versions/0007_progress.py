"""jobs.progress: a running training job's place inside its epoch (epoch, step, steps, images/s,
when), written by its process every few seconds, for `--wait` and `orch status` on long epochs

Revision ID: 0007_progress
Revises: 0006_retry_budget
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_progress"
down_revision = "0006_retry_budget"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progress", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("progress")
