"""jobs.val_hits: which validation images a training job's best and last epoch got right, so that a
study's report counts the validation images' own sampling error in its comparisons

Revision ID: 0011_val_hits
Revises: 0010_lease_ttl
"""
import sqlalchemy as sa
from alembic import op

revision = "0011_val_hits"
down_revision = "0010_lease_ttl"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("val_hits", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("val_hits")
