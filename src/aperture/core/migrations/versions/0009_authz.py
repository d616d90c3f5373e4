"""One authorization path: who issued each key, two-administrator key requests, server-side UI
sessions (ended by signing out), and the keys behind each grant's requester and approver.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("issued_by", sa.Text(), nullable=True))
    op.create_table(
        "access_key_requests",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("roles", sa.String(500), nullable=False),
        sa.Column("scopes", sa.String(500), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("requested_with", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("approved_by", sa.String(200), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("key_id", sa.String(8), nullable=True),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_access_key_requests"),
    )
    op.create_table(
        "access_sessions",
        sa.Column("id_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("principal", sa.String(63), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name="pk_access_sessions"),
    )
    op.create_index("ix_access_sessions_principal", "access_sessions", ["principal"])
    with op.batch_alter_table("security_grants") as batch:
        batch.add_column(sa.Column("requester_issuers", sa.Text(), nullable=True))
        batch.add_column(sa.Column("approver_issuers", sa.Text(), nullable=True))
        batch.add_column(sa.Column("officer_issuers", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("security_grants") as batch:
        batch.drop_column("officer_issuers")
        batch.drop_column("approver_issuers")
        batch.drop_column("requester_issuers")
    op.drop_index("ix_access_sessions_principal", table_name="access_sessions")
    op.drop_table("access_sessions")
    op.drop_table("access_key_requests")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("issued_by")
