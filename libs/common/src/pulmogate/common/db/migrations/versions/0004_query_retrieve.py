"""query/retrieve: series and output attributes a DICOM query returns, and their indexes

Revision ID: 0004_query_retrieve
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_query_retrieve"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("series") as batch_op:
        batch_op.add_column(sa.Column("series_number", sa.Integer(), nullable=True))
        for name, length in (
            ("study_time", 16),
            ("study_id", 16),
            ("patient_birth_date", 8),
            ("patient_sex", 16),
        ):
            batch_op.add_column(
                sa.Column(name, sa.String(length=length), nullable=False, server_default="")
            )
        batch_op.create_index("ix_series_study_date", ["study_date"], unique=False)
        batch_op.create_index("ix_series_accession_number", ["accession_number"], unique=False)
    with op.batch_alter_table("output_objects") as batch_op:
        batch_op.add_column(sa.Column("modality", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("series_number", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("series_description", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("instance_number", sa.Integer(), nullable=True))
        batch_op.create_index("ix_output_objects_series_uid", ["series_uid"], unique=False)
        batch_op.create_index("ix_output_objects_modality", ["modality"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("output_objects") as batch_op:
        batch_op.drop_index("ix_output_objects_modality")
        batch_op.drop_index("ix_output_objects_series_uid")
        for name in ("instance_number", "series_description", "series_number", "modality"):
            batch_op.drop_column(name)
    with op.batch_alter_table("series") as batch_op:
        batch_op.drop_index("ix_series_accession_number")
        batch_op.drop_index("ix_series_study_date")
        for name in ("patient_sex", "patient_birth_date", "study_id", "study_time"):
            batch_op.drop_column(name)
        batch_op.drop_column("series_number")
