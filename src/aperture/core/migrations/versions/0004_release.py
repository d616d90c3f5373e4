"""Release governance: tiers in effect, policies, decisions, board votes, release plans.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "release_tiers",
        sa.Column("model_version_id", sa.String(36), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("decision_id", sa.String(36), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_version_id", name="pk_release_tiers"),
    )


def downgrade() -> None:
    op.drop_table("release_tiers")
