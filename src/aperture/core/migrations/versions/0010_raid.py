"""The RAID desk: incidents with their audience, bindings, timeline and attachments; routes,
obligations, adopted routing tables, contacts, the outbox and advisories.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _moment(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "raid_incidents",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("source_kind", sa.String(32), nullable=False),
        sa.Column("source_id", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tlp", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(24), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        _moment("created_at"),
        _moment("updated_at"),
        _moment("aware_at", True),
        sa.Column("reporter_principal", sa.String(63), nullable=True),
        sa.Column("reporter_organisation", sa.String(63), nullable=True),
        sa.Column("reporter_contact", sa.String(320), nullable=True),
        sa.Column("receipt_hash", sa.LargeBinary(32), nullable=True),
        sa.Column("assignee", sa.String(63), nullable=True),
        sa.Column("merged_into", sa.String(36), nullable=True),
        sa.Column("risk_domain", sa.String(32), nullable=True),
        sa.Column("sector", sa.String(32), nullable=True),
        sa.Column("member_state", sa.String(2), nullable=True),
        sa.Column("dual_use", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_raid_incidents"),
        sa.UniqueConstraint("source_kind", "source_id", name="uq_raid_incidents_source_kind_source_id"),
        sa.UniqueConstraint("receipt_hash", name="uq_raid_incidents_receipt_hash"),
    )
    op.create_index("ix_raid_incidents_status_created_at", "raid_incidents", ["status", "created_at"])
    op.create_index("ix_raid_incidents_created_at", "raid_incidents", ["created_at"])
    op.create_table(
        "raid_audience",
        sa.Column("incident_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "kind", "name", name="pk_raid_audience"),
    )
    op.create_index("ix_raid_audience_kind_name", "raid_audience", ["kind", "name"])
    op.create_table(
        "raid_bindings",
        sa.Column("incident_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(63), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "kind", "ref", name="pk_raid_bindings"),
    )
    op.create_index("ix_raid_bindings_kind_ref", "raid_bindings", ["kind", "ref"])
    op.create_table(
        "raid_versions",
        sa.Column("version_id", sa.String(63), nullable=False),
        sa.PrimaryKeyConstraint("version_id", name="pk_raid_versions"),
    )
    op.create_table(
        "raid_timeline",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("incident_id", sa.String(36), nullable=False),
        _moment("at"),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_raid_timeline"),
    )
    op.create_index("ix_raid_timeline_incident_id_at", "raid_timeline", ["incident_id", "at"])
    op.create_table(
        "raid_attachments",
        sa.Column("incident_id", sa.String(36), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("media_type", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        _moment("added_at"),
        sa.Column("added_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "sha256", name="pk_raid_attachments"),
    )
    op.create_table(
        "raid_routes",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("incident_id", sa.String(36), nullable=False),
        sa.Column("table_version", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(63), nullable=False),
        sa.Column("body", sa.String(300), nullable=False),
        sa.Column("required_by_law", sa.Boolean(), nullable=False),
        sa.Column("raid_owned", sa.Boolean(), nullable=False),
        _moment("created_at"),
        _moment("forwarded_at", True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_raid_routes"),
    )
    op.create_index("ix_raid_routes_incident_id", "raid_routes", ["incident_id"])
    op.create_table(
        "raid_obligations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("incident_id", sa.String(36), nullable=False),
        sa.Column("route_id", sa.String(36), nullable=True),
        sa.Column("clock", sa.String(24), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("party", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(300), nullable=False),
        sa.Column("legal_basis", sa.String(400), nullable=False),
        sa.Column("counts_from", sa.String(40), nullable=False),
        _moment("due_at"),
        _moment("met_at", True),
        _moment("reminded_at", True),
        _moment("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_raid_obligations"),
    )
    op.create_index("ix_raid_obligations_incident_id", "raid_obligations", ["incident_id"])
    op.create_index("ix_raid_obligations_met_at_due_at", "raid_obligations", ["met_at", "due_at"])
    op.create_table(
        "raid_routing_tables",
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        _moment("adopted_at"),
        sa.Column("adopted_by", sa.String(200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("number", name="pk_raid_routing_tables"),
    )
    op.create_table(
        "raid_contacts",
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        _moment("updated_at"),
        sa.PrimaryKeyConstraint("name", name="pk_raid_contacts"),
    )
    op.create_table(
        "raid_outbox",
        sa.Column("id", sa.String(36), nullable=False),
        _moment("created_at"),
        sa.Column("incident_id", sa.String(36), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _moment("next_attempt_at"),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        _moment("claimed_until", True),
        sa.Column("last_error", sa.String(500), nullable=True),
        _moment("sent_at", True),
        sa.PrimaryKeyConstraint("id", name="pk_raid_outbox"),
    )
    op.create_index("ix_raid_outbox_incident_id", "raid_outbox", ["incident_id"])
    op.create_index("ix_raid_outbox_status_next_attempt_at", "raid_outbox", ["status", "next_attempt_at"])
    op.create_table(
        "raid_advisories",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("incident_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _moment("created_at"),
        _moment("updated_at"),
        _moment("embargo_until", True),
        _moment("published_at", True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("csaf", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_raid_advisories"),
    )
    op.create_index("ix_raid_advisories_incident_id", "raid_advisories", ["incident_id"])


def downgrade() -> None:
    for table in (
        "raid_advisories",
        "raid_outbox",
        "raid_contacts",
        "raid_routing_tables",
        "raid_obligations",
        "raid_routes",
        "raid_attachments",
        "raid_timeline",
        "raid_versions",
        "raid_bindings",
        "raid_audience",
        "raid_incidents",
    ):
        op.drop_table(table)
