"""destinations.image_encoding: how result pictures are sent to each destination

Revision ID: 0010_destination_image_encoding
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_destination_image_encoding"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("destinations") as batch_op:
        batch_op.add_column(
            sa.Column(
                "image_encoding", sa.String(length=16), nullable=False, server_default="jpeg"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("destinations") as batch_op:
        batch_op.drop_column("image_encoding")
