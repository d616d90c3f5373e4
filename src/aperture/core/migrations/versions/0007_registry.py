"""Registry: each version's signed facts document and the audit leaf that recorded its digest.

Versions registered before this revision keep NULL in both: `aperture models verify` reports their
facts as unsigned, and `aperture models sign-facts NAME:VERSION` signs them after review.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registry_versions") as batch:
        batch.add_column(sa.Column("signed_facts", sa.Text(), nullable=True))
        batch.add_column(sa.Column("facts_event", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registry_versions") as batch:
        batch.drop_column("facts_event")
        batch.drop_column("signed_facts")
