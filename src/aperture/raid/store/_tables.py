"""The RAID desk's tables (migration 0010)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from aperture.core.db import UtcDateTime, metadata

raid_incidents = Table(
    "raid_incidents",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("source_kind", String(32), nullable=False),
    Column("source_id", String(200), nullable=True),
    Column("status", String(16), nullable=False),
    Column("tlp", String(16), nullable=False),
    Column("severity", String(24), nullable=False),
    Column("title", String(200), nullable=False),
    Column("summary", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("aware_at", UtcDateTime, nullable=True),
    Column("reporter_principal", String(63), nullable=True),
    Column("reporter_organisation", String(63), nullable=True),
    Column("reporter_contact", String(320), nullable=True),
    Column("receipt_hash", LargeBinary(32), nullable=True, unique=True),
    Column("assignee", String(63), nullable=True),
    Column("merged_into", String(36), nullable=True),
    Column("risk_domain", String(32), nullable=True),
    Column("sector", String(32), nullable=True),
    Column("member_state", String(2), nullable=True),
    Column("dual_use", Boolean, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("body", Text, nullable=False),
    UniqueConstraint("source_kind", "source_id"),
)
Index("ix_raid_incidents_status_created_at", raid_incidents.c.status, raid_incidents.c.created_at)
Index("ix_raid_incidents_created_at", raid_incidents.c.created_at)

# Named principals and recipient organisations of each item (who it is shared with).
raid_audience = Table(
    "raid_audience",
    metadata,
    Column("incident_id", String(36), primary_key=True),
    Column("kind", String(16), primary_key=True),  # principal | organisation
    Column("name", String(63), primary_key=True),
)
Index("ix_raid_audience_kind_name", raid_audience.c.kind, raid_audience.c.name)

raid_bindings = Table(
    "raid_bindings",
    metadata,
    Column("incident_id", String(36), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("ref", String(63), primary_key=True),
)
Index("ix_raid_bindings_kind_ref", raid_bindings.c.kind, raid_bindings.c.ref)

# Every model version any item concerns, once: the set whose visibility a listing asks the access service about.
raid_versions = Table("raid_versions", metadata, Column("version_id", String(63), primary_key=True))

raid_timeline = Table(
    "raid_timeline",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("incident_id", String(36), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("details", Text, nullable=False),
)
Index("ix_raid_timeline_incident_id_at", raid_timeline.c.incident_id, raid_timeline.c.at)

raid_attachments = Table(
    "raid_attachments",
    metadata,
    Column("incident_id", String(36), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("media_type", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("added_at", UtcDateTime, nullable=False),
    Column("added_by", String(200), nullable=False),
)

raid_routes = Table(
    "raid_routes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("incident_id", String(36), nullable=False, index=True),
    Column("table_version", Integer, nullable=False),
    Column("rule_id", String(63), nullable=False),
    Column("body", String(300), nullable=False),
    Column("required_by_law", Boolean, nullable=False),
    Column("raid_owned", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("forwarded_at", UtcDateTime, nullable=True),
    Column("details", Text, nullable=False),
)

raid_obligations = Table(
    "raid_obligations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("incident_id", String(36), nullable=False, index=True),
    Column("route_id", String(36), nullable=True),
    Column("clock", String(24), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("party", String(16), nullable=False),
    Column("recipient", String(300), nullable=False),
    Column("legal_basis", String(400), nullable=False),
    Column("counts_from", String(40), nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    Column("met_at", UtcDateTime, nullable=True),
    Column("reminded_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
)
Index("ix_raid_obligations_met_at_due_at", raid_obligations.c.met_at, raid_obligations.c.due_at)

raid_routing_tables = Table(
    "raid_routing_tables",
    metadata,
    Column("number", Integer, primary_key=True),  # adoption order
    Column("version", Integer, nullable=False),  # the table's own version field
    Column("digest", String(64), nullable=False),
    Column("adopted_at", UtcDateTime, nullable=False),
    Column("adopted_by", String(200), nullable=False),
    Column("text", Text, nullable=False),
)

raid_contacts = Table(
    "raid_contacts",
    metadata,
    Column("name", String(300), primary_key=True),  # a body or an organisation
    Column("address", String(320), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

raid_outbox = Table(
    "raid_outbox",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("incident_id", String(36), nullable=True, index=True),
    Column("kind", String(32), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | sent | dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until", UtcDateTime, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("sent_at", UtcDateTime, nullable=True),
)
Index("ix_raid_outbox_status_next_attempt_at", raid_outbox.c.status, raid_outbox.c.next_attempt_at)

raid_advisories = Table(
    "raid_advisories",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("incident_id", String(36), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("embargo_until", UtcDateTime, nullable=True),
    Column("published_at", UtcDateTime, nullable=True),
    Column("revision", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("csaf", Text, nullable=True),
)
