"""jobs.retried_at_attempt: the attempts a job had when it was last retried by hand, so that
ORCH_MAX_ATTEMPTS counts the attempts since (a cancel and a retry used up a crash's turn);
scores.is_test: whether a scoring run is its training job's test accuracy (earlier runs: yes)

Revision ID: 0006_retry_budget
Revises: 0005_epochs_best_index
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_retry_budget"
down_revision = "0005_epochs_best_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retried_at_attempt", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("scores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("is_test", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("scores", schema=None) as batch_op:
        batch_op.drop_column("is_test")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("retried_at_attempt")
