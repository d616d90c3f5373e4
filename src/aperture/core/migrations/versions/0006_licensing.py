"""Licensing: applications, licences, receivables, traceable copies, download tokens, the sealed
master secret of the marks, trace reports and diffusion records.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "licensing_applications",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("organisation", sa.String(63), nullable=False),
        sa.Column("applicant", sa.String(63), nullable=False),
        sa.Column("model_version_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_licensing_applications"),
    )
    op.create_index("ix_licensing_applications_organisation", "licensing_applications", ["organisation"])
    op.create_table(
        "licensing_licences",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("application_id", sa.String(36), nullable=True),
        sa.Column("organisation", sa.String(63), nullable=False),
        sa.Column("model_version_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_licensing_licences"),
    )
    op.create_index("ix_licensing_licences_organisation", "licensing_licences", ["organisation"])
    op.create_index("ix_licensing_licences_model_version_id", "licensing_licences", ["model_version_id"])
    op.create_table(
        "licensing_receivables",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("licence_id", sa.String(36), nullable=False),
        sa.Column("organisation", sa.String(63), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_licensing_receivables"),
    )
    op.create_index("ix_licensing_receivables_licence_id", "licensing_receivables", ["licence_id"])
    op.create_table(
        "licensing_copies",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("licence_id", sa.String(36), nullable=False),
        sa.Column("organisation", sa.String(63), nullable=False),
        sa.Column("model_version_id", sa.String(36), nullable=False),
        sa.Column("commitment", sa.String(64), nullable=False),
        sa.Column("self_test_z", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_licensing_copies"),
    )
    op.create_index("ix_licensing_copies_licence_id", "licensing_copies", ["licence_id"])
    op.create_index("ix_licensing_copies_model_version_id", "licensing_copies", ["model_version_id"])
    op.create_table(
        "licensing_tokens",
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("copy_id", sa.String(36), nullable=False),
        sa.Column("principal", sa.String(63), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_licensing_tokens"),
    )
    op.create_index("ix_licensing_tokens_copy_id", "licensing_tokens", ["copy_id"])
    op.create_table(
        "licensing_secrets",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("keyring_id", sa.String(32), nullable=False),
        sa.Column("artifact_id", sa.String(36), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_licensing_secrets"),
    )
    op.create_table(
        "licensing_traces",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("signature", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_licensing_traces"),
    )
    op.create_table(
        "licensing_diffusions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("model_version_id", sa.String(36), nullable=False),
        sa.Column("target", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_licensing_diffusions"),
    )
    op.create_index("ix_licensing_diffusions_model_version_id", "licensing_diffusions", ["model_version_id"])


def downgrade() -> None:
    for table in (
        "licensing_diffusions",
        "licensing_traces",
        "licensing_secrets",
        "licensing_tokens",
        "licensing_copies",
        "licensing_receivables",
        "licensing_licences",
        "licensing_applications",
    ):
        op.drop_table(table)
