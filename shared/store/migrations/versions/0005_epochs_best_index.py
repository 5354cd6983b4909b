"""epochs: an index in the order the leaderboard reads each run's best epoch

Revision ID: 0005_epochs_best_index
Revises: 0004_outbox
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_epochs_best_index"
down_revision = "0004_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("epochs", schema=None) as batch_op:
        batch_op.create_index("ix_epochs_best", ["job_id", sa.text("val_acc DESC"), "epoch"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("epochs", schema=None) as batch_op:
        batch_op.drop_index("ix_epochs_best")
