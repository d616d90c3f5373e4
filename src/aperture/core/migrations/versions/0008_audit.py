"""The transparency log's two halves and its refusal counters: the commitments a version 2 leaf
holds, the private half of each event (withheld values and their salts, the asset it concerns)
and the per-window counters of refusals anyone can cause.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_events", sa.Column("commitments", sa.Text(), nullable=True))
    op.add_column("audit_events", sa.Column("withheld", sa.Text(), nullable=True))
    op.create_table(
        "audit_refusals",
        sa.Column("window_start", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("origin", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("window_start", "kind", "reason", "origin", "subject", name="pk_audit_refusals"),
    )


def downgrade() -> None:
    op.drop_table("audit_refusals")
    op.drop_column("audit_events", "withheld")
    op.drop_column("audit_events", "commitments")
