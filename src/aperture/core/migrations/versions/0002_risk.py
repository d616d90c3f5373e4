"""Risk assessment: suite runs with checkpointed chunks, evidence items and versioned risk profiles.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "risk_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("model_version_id", sa.String(36), nullable=False),
        sa.Column("suite", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("items_total", sa.Integer(), nullable=False),
        sa.Column("items_done", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("evidence_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_risk_runs"),
    )
    op.create_index("ix_risk_runs_model_version_id", "risk_runs", ["model_version_id"])
    op.create_table(
        "risk_run_chunks",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("chunk", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("results", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["risk_runs.id"], name="fk_risk_run_chunks_run_id_risk_runs"),
        sa.PrimaryKeyConstraint("run_id", "chunk", name="pk_risk_run_chunks"),
    )
    op.create_table(
        "risk_evidence",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("model_version_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("suite", sa.String(64), nullable=True),
        sa.Column("domain", sa.String(32), nullable=True),
        sa.Column("safeguard", sa.String(32), nullable=True),
        sa.Column("headline", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("provenance", sa.Text(), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_risk_evidence"),
    )
    op.create_index("ix_risk_evidence_model_version_id", "risk_evidence", ["model_version_id"])
    op.create_table(
        "risk_profiles",
        sa.Column("model_version_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model_version_id", "version", name="pk_risk_profiles"),
    )


def downgrade() -> None:
    op.drop_table("risk_profiles")
    op.drop_index("ix_risk_evidence_model_version_id", table_name="risk_evidence")
    op.drop_table("risk_evidence")
    op.drop_table("risk_run_chunks")
    op.drop_index("ix_risk_runs_model_version_id", table_name="risk_runs")
    op.drop_table("risk_runs")
