"""recovery and resends: who analyses a job, what it was analysed on, resends of a series

Revision ID: 0007_recovery_resends
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_recovery_resends"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("series") as batch_op:
        batch_op.add_column(
            sa.Column("resent_instances", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("interrupted_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("analysed_instance_count", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("worker", sa.String(length=160), nullable=True))
        batch_op.add_column(sa.Column("worker_seen_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("resend_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("resent_at", sa.DateTime(timezone=True), nullable=True))
    # Jobs decided before this revision count as decided on every instance their series
    # holds: an upgrade must not re-analyse the whole history.
    op.execute(
        "UPDATE jobs SET analysed_instance_count = "
        "(SELECT instance_count FROM series WHERE series.id = jobs.series_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        for name in (
            "resent_at",
            "resend_count",
            "worker_seen_at",
            "worker",
            "analysed_instance_count",
        ):
            batch_op.drop_column(name)
    with op.batch_alter_table("series") as batch_op:
        batch_op.drop_column("interrupted_at")
        batch_op.drop_column("resent_instances")
