"""scores.hits: which test images a training job's test score got right, so that a study's report
counts the test images' own sampling error in its test_acc comparisons

Revision ID: 0012_test_hits
Revises: 0011_val_hits
"""
import sqlalchemy as sa
from alembic import op

revision = "0012_test_hits"
down_revision = "0011_val_hits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hits", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scores", schema=None) as batch_op:
        batch_op.drop_column("hits")
