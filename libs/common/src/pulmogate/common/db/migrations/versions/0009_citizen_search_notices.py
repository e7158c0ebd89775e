"""citizen: folded patient names for search, failure notices per rule

Revision ID: 0009_citizen_search_notices
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from pulmogate.common.text_search import fold

revision = "0009_citizen_search_notices"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("series") as batch_op:
        batch_op.add_column(
            sa.Column("patient_name_search", sa.String(length=200), nullable=False, server_default="")
        )
    with op.batch_alter_table("routing_rules") as batch_op:
        batch_op.add_column(
            sa.Column("failure_notices", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    series = sa.table(
        "series",
        sa.column("id", sa.Integer),
        sa.column("patient_name", sa.String),
        sa.column("patient_name_search", sa.String),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(series.c.id, series.c.patient_name)).all()
    for series_id, name in rows:
        bind.execute(
            series.update()
            .where(series.c.id == series_id)
            .values(patient_name_search=fold(name or "")[:200])
        )


def downgrade() -> None:
    with op.batch_alter_table("routing_rules") as batch_op:
        batch_op.drop_column("failure_notices")
    with op.batch_alter_table("series") as batch_op:
        batch_op.drop_column("patient_name_search")
