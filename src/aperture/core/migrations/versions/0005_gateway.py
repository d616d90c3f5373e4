"""The inference gateway: keys, backends, grants, limits, prices, safety policies, daily usage,
the write-ahead log's marks, blocks and alerts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _moment(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "gateway_keys",
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("organisation", sa.String(63), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),
        _moment("created_at"),
        sa.Column("created_by", sa.String(200), nullable=False),
        _moment("expires_at", True),
        _moment("revoked_at", True),
        sa.PrimaryKeyConstraint("key_id", name="pk_gateway_keys"),
    )
    op.create_index("ix_gateway_keys_organisation", "gateway_keys", ["organisation"])
    op.create_table(
        "gateway_backends",
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("version_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.String(500), nullable=True),
        sa.Column("remote_model", sa.String(300), nullable=True),
        sa.Column("timeout_s", sa.Float, nullable=False),
        _moment("bound_at"),
        sa.Column("bound_by", sa.String(200), nullable=False),
        sa.Column("api_key", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("model", name="pk_gateway_backends"),
    )
    op.create_table(
        "gateway_grants",
        sa.Column("organisation", sa.String(63), nullable=False),
        sa.Column("model", sa.String(300), nullable=False),
        _moment("granted_at"),
        sa.Column("granted_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("organisation", "model", name="pk_gateway_grants"),
    )
    op.create_table(
        "gateway_limits",
        sa.Column("scope_kind", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(63), nullable=False),
        sa.Column("requests_per_minute", sa.BigInteger, nullable=True),
        sa.Column("tokens_per_minute", sa.BigInteger, nullable=True),
        sa.Column("monthly_tokens", sa.BigInteger, nullable=True),
        sa.Column("max_tokens", sa.BigInteger, nullable=True),
        _moment("updated_at"),
        sa.PrimaryKeyConstraint("scope_kind", "scope", name="pk_gateway_limits"),
    )
    op.create_table(
        "gateway_prices",
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("input_eur_per_mtok", sa.Float, nullable=False),
        sa.Column("output_eur_per_mtok", sa.Float, nullable=False),
        _moment("updated_at"),
        sa.PrimaryKeyConstraint("model", name="pk_gateway_prices"),
    )
    op.create_table(
        "gateway_policies",
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        _moment("updated_at"),
        sa.PrimaryKeyConstraint("model", name="pk_gateway_policies"),
    )
    op.create_table(
        "gateway_usage",
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("organisation", sa.String(63), nullable=False),
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("blocked", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_eur", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("day", "organisation", "key_id", "model", name="pk_gateway_usage"),
    )
    op.create_table(
        "gateway_log_marks",
        sa.Column("log", sa.String(100), nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        _moment("updated_at"),
        sa.PrimaryKeyConstraint("log", name="pk_gateway_log_marks"),
    )
    op.create_table(
        "gateway_blocks",
        sa.Column("id", sa.String(36), nullable=False),
        _moment("at"),
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("organisation", sa.String(63), nullable=False),
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(600), nullable=False),
        sa.Column("excerpt", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gateway_blocks"),
    )
    op.create_index("ix_gateway_blocks_key_id", "gateway_blocks", ["key_id"])
    op.create_table(
        "gateway_alerts",
        sa.Column("id", sa.String(36), nullable=False),
        _moment("raised_at"),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("organisation", sa.String(63), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        _moment("picked_up_at", True),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gateway_alerts"),
    )
    op.create_index("ix_gateway_alerts_key_id", "gateway_alerts", ["key_id"])


def downgrade() -> None:
    for table in (
        "gateway_alerts",
        "gateway_blocks",
        "gateway_log_marks",
        "gateway_usage",
        "gateway_policies",
        "gateway_prices",
        "gateway_limits",
        "gateway_grants",
        "gateway_backends",
        "gateway_keys",
    ):
        op.drop_table(table)
