"""jobs.lease_ttl: the lease holder's own ORCH_LEASE_TTL, so a sweeper or reader with another TTL judges
the lease by the holder's (a 30 s worker took a 120 s worker's job after 30 s of silence, while that
holder, fencing itself only at 96 s, still ran it)

Revision ID: 0010_lease_ttl
Revises: 0009_holder_process
"""
import sqlalchemy as sa
from alembic import op

revision = "0010_lease_ttl"
down_revision = "0009_holder_process"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_ttl", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("lease_ttl")
