"""store_info: the store's identity (a uuid4, made here once), which a worker writes into the artifacts
folder it uses so that a second store pointed at the same folder is refused

Revision ID: 0008_store_id
Revises: 0007_progress
"""
import uuid

import sqlalchemy as sa
from alembic import op

revision = "0008_store_id"
down_revision = "0007_progress"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "store_info",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(table, [{"id": 1, "store_id": str(uuid.uuid4())}])


def downgrade() -> None:
    op.drop_table("store_info")
