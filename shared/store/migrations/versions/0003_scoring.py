"""scoring: the parent job's assembly state, in place of heartbeat_at doubling as "sent"

Revision ID: 0003_scoring
Revises: 0002_lease
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_scoring"
down_revision = "0002_lease"
branch_labels = None
depends_on = None

# what each score parent's old columns meant, as the new state (shared/store/schema.py Assembly)
BACKFILL = """
UPDATE jobs SET assembly = CASE
    WHEN status = 'succeeded' THEN 'done'
    WHEN status IN ('failed', 'cancelled') THEN 'failed'
    WHEN status = 'running' THEN 'assembling'
    WHEN heartbeat_at IS NOT NULL THEN 'sent'
    ELSE 'waiting' END
WHERE kind = 'score'
"""


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assembly", sa.String(length=20), nullable=True))
    op.execute(BACKFILL)


def downgrade() -> None:
    # the old reading of "sent for assembly": a queued score job with a heartbeat
    op.execute("UPDATE jobs SET heartbeat_at = 0 WHERE kind = 'score' AND status = 'queued' "
               "AND assembly IN ('sent', 'assembling')")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("assembly")
