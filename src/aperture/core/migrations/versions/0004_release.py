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
    op.create_table(
        "release_policies",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("adopted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("adopted_by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_release_policies"),
    )
    op.create_table(
        "release_proposals",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("model_version_id", sa.String(36), nullable=False),
        sa.Column("reference", sa.String(300), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("rationale", sa.Text(), nullable=False),
        sa.Column("proposer", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("quorum", sa.Integer(), nullable=False),
        sa.Column("policy_digest", sa.String(64), nullable=False),
        sa.Column("profile_version", sa.Integer(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("stage_id", sa.String(36), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cooling_off_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("record", sa.Text(), nullable=True),
        sa.Column("signature", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_release_proposals"),
    )
    op.create_index("ix_release_proposals_model_version_id", "release_proposals", ["model_version_id"])
    op.create_table(
        "release_votes",
        sa.Column("proposal_id", sa.String(36), nullable=False),
        sa.Column("member", sa.String(200), nullable=False),
        sa.Column("approve", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("proposal_id", "member", name="pk_release_votes"),
        sa.ForeignKeyConstraint(
            ["proposal_id"], ["release_proposals.id"], name="fk_release_votes_proposal_id_release_proposals"
        ),
    )
    op.create_table(
        "release_conflicts",
        sa.Column("proposal_id", sa.String(36), nullable=False),
        sa.Column("member", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("proposal_id", "member", name="pk_release_conflicts"),
        sa.ForeignKeyConstraint(
            ["proposal_id"], ["release_proposals.id"], name="fk_release_conflicts_proposal_id_release_proposals"
        ),
    )
    op.create_table(
        "release_challenges",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("proposal_id", sa.String(36), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_release_challenges"),
        sa.ForeignKeyConstraint(
            ["proposal_id"], ["release_proposals.id"], name="fk_release_challenges_proposal_id_release_proposals"
        ),
    )
    op.create_index("ix_release_challenges_proposal_id", "release_challenges", ["proposal_id"])
    op.create_table(
        "release_stages",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("model_version_id", sa.String(36), nullable=False),
        sa.Column("plan_proposal_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("condition", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("proposal_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_release_stages"),
        sa.ForeignKeyConstraint(
            ["plan_proposal_id"], ["release_proposals.id"], name="fk_release_stages_plan_proposal_id_release_proposals"
        ),
    )
    op.create_index("ix_release_stages_model_version_id", "release_stages", ["model_version_id"])
    op.create_table(
        "release_triggers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("model_version_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_release_triggers"),
    )
    op.create_index("ix_release_triggers_model_version_id", "release_triggers", ["model_version_id"])


def downgrade() -> None:
    op.drop_table("release_triggers")
    op.drop_table("release_stages")
    op.drop_table("release_challenges")
    op.drop_table("release_conflicts")
    op.drop_table("release_votes")
    op.drop_table("release_proposals")
    op.drop_table("release_policies")
    op.drop_table("release_tiers")
