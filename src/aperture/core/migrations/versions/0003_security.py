"""Security tiers: principals, classification, sealed storage, grants, canaries and alerts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # --- access: principals, programmes, classification, scoped keys ----------------------
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("scopes", sa.String(500), nullable=True))
    op.create_table(
        "access_states",
        sa.Column("code", sa.String(2), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("eu", sa.Boolean(), nullable=False),
        sa.Column("cyber_assurance", sa.Integer(), nullable=False),
        sa.Column("rule_of_law", sa.String(20), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_access_states"),
    )
    op.create_table(
        "access_organisations",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("state", sa.String(2), nullable=False),
        sa.Column("parent", sa.String(300), nullable=True),
        sa.Column("foreign_control", sa.String(2), nullable=True),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["state"], ["access_states.code"], name="fk_access_organisations_state_access_states"),
        sa.PrimaryKeyConstraint("name", name="pk_access_organisations"),
    )
    op.create_table(
        "access_programmes",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_access_programmes"),
    )
    op.create_table(
        "access_principals",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("display_name", sa.String(300), nullable=False),
        sa.Column("organisation", sa.String(63), nullable=True),
        sa.Column("clearance", sa.Integer(), nullable=False),
        sa.Column("vetting", sa.String(20), nullable=False),
        sa.Column("roles", sa.String(500), nullable=False),
        sa.Column("programmes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("session_epoch", sa.Integer(), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation"],
            ["access_organisations.name"],
            name="fk_access_principals_organisation_access_organisations",
        ),
        sa.PrimaryKeyConstraint("name", name="pk_access_principals"),
    )
    classifications = op.create_table(
        "access_classifications",
        sa.Column("asset_kind", sa.String(20), nullable=False),
        sa.Column("asset_id", sa.String(64), nullable=False),
        sa.Column("label", sa.String(300), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("programme", sa.String(63), nullable=True),
        sa.Column("canary", sa.Boolean(), nullable=False),
        sa.Column("classified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("classified_by", sa.String(200), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["programme"], ["access_programmes.name"], name="fk_access_classifications_programme_access_programmes"
        ),
        sa.PrimaryKeyConstraint("asset_kind", "asset_id", name="pk_access_classifications"),
    )
    op.create_table(
        "access_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_access_generation"),
    )
    # Versions registered before classification existed are lower tier, public (SL1).
    models = sa.table("registry_models", sa.column("id"), sa.column("name"))
    versions = sa.table(
        "registry_versions", sa.column("id"), sa.column("model_id"), sa.column("version"), sa.column("registered_at")
    )
    op.execute(
        classifications.insert().from_select(
            [
                "asset_kind",
                "asset_id",
                "label",
                "level",
                "programme",
                "canary",
                "classified_at",
                "classified_by",
                "schema_version",
            ],
            sa.select(
                sa.literal("model_version"),
                versions.c.id,
                models.c.name + sa.literal(":") + versions.c.version,
                sa.literal(1),
                sa.null(),
                sa.false(),
                versions.c.registered_at,
                sa.literal("migration 0002"),
                sa.literal(1),
            ).select_from(versions.join(models, models.c.id == versions.c.model_id)),
        )
    )
    op.execute(sa.text("INSERT INTO access_generation (id, generation) VALUES (1, 1)"))
    # --- vault: the upper tier's key custody and sealed artifacts -------------------------
    op.create_table(
        "vault_keyrings",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("shares", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_vault_keyrings"),
        sa.UniqueConstraint("tier", name="uq_vault_keyrings_tier"),
    )
    op.create_table(
        "vault_key_shares",
        sa.Column("keyring_id", sa.String(16), nullable=False),
        sa.Column("share_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("custodian", sa.String(63), nullable=False),
        sa.Column("share_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["keyring_id"], ["vault_keyrings.id"], name="fk_vault_key_shares_keyring_id_vault_keyrings"
        ),
        sa.PrimaryKeyConstraint("keyring_id", "share_index", name="pk_vault_key_shares"),
    )
    op.create_table(
        "vault_sealed_blobs",
        sa.Column("artifact_id", sa.String(36), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("keyring_id", sa.String(16), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["keyring_id"], ["vault_keyrings.id"], name="fk_vault_sealed_blobs_keyring_id_vault_keyrings"
        ),
        sa.PrimaryKeyConstraint("artifact_id", name="pk_vault_sealed_blobs"),
    )
    op.create_index("ix_vault_sealed_blobs_owner", "vault_sealed_blobs", ["owner"])
    # --- security: grants, single-use download tokens, downloads, alerts -------------------
    op.create_table(
        "security_grants",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("asset_kind", sa.String(20), nullable=False),
        sa.Column("asset_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("requester", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("hub", sa.String(200), nullable=True),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("approver", sa.String(200), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("officer", sa.String(200), nullable=True),
        sa.Column("officer_approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(200), nullable=True),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_security_grants"),
    )
    op.create_index("ix_security_grants_requester", "security_grants", ["requester"])
    op.create_table(
        "security_tokens",
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("grant_id", sa.String(36), nullable=False),
        sa.Column("path", sa.String(1000), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["security_grants.id"], name="fk_security_tokens_grant_id_security_grants"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_security_tokens"),
    )
    op.create_table(
        "security_downloads",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("asset_kind", sa.String(20), nullable=False),
        sa.Column("asset_id", sa.String(64), nullable=False),
        sa.Column("grant_id", sa.String(36), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_security_downloads"),
    )
    op.create_index("ix_security_downloads_principal_at", "security_downloads", ["principal", "at"])
    op.create_table(
        "security_alerts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("asset_kind", sa.String(20), nullable=True),
        sa.Column("asset_id", sa.String(64), nullable=True),
        sa.Column("origin", sa.String(200), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(200), nullable=True),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_security_alerts"),
    )
    op.create_index("ix_security_alerts_raised_at", "security_alerts", ["raised_at"])


def downgrade() -> None:
    op.drop_index("ix_security_alerts_raised_at", table_name="security_alerts")
    op.drop_table("security_alerts")
    op.drop_index("ix_security_downloads_principal_at", table_name="security_downloads")
    op.drop_table("security_downloads")
    op.drop_table("security_tokens")
    op.drop_index("ix_security_grants_requester", table_name="security_grants")
    op.drop_table("security_grants")
    op.drop_index("ix_vault_sealed_blobs_owner", table_name="vault_sealed_blobs")
    op.drop_table("vault_sealed_blobs")
    op.drop_table("vault_key_shares")
    op.drop_table("vault_keyrings")
    op.drop_table("access_generation")
    op.drop_table("access_classifications")
    op.drop_table("access_principals")
    op.drop_table("access_programmes")
    op.drop_table("access_organisations")
    op.drop_table("access_states")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("scopes")
