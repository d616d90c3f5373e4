"""The first schema: access keys, the transparency log, the model registry and artifacts.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # --- access -------------------------------------------------------------------------
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("roles", sa.String(500), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_api_keys"),
    )
    # --- audit --------------------------------------------------------------------------
    op.create_table(
        "audit_events",
        # INTEGER on SQLite makes the key the rowid itself (one B-tree fewer per append).
        sa.Column(
            "leaf_index", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("occurred_at", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("resource", sa.String(500), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index", name="pk_audit_events"),
    )
    op.create_table(
        "audit_tree_heads",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("issued_at", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(4), nullable=False),
        sa.Column("signature", sa.LargeBinary(64), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name="pk_audit_tree_heads"),
    )
    op.create_table(
        "audit_tree_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("node_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("level", "node_index", name="pk_audit_tree_nodes"),
    )
    # --- registry and vault -------------------------------------------------------------
    op.create_table(
        "vault_blobs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_vault_blobs"),
    )
    op.create_table(
        "vault_blob_refs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["sha256"], ["vault_blobs.sha256"], name="fk_vault_blob_refs_sha256_vault_blobs"),
        sa.PrimaryKeyConstraint("owner", "sha256", name="pk_vault_blob_refs"),
    )
    op.create_index("ix_vault_blob_refs_sha256", "vault_blob_refs", ["sha256"])
    op.create_table(
        "registry_models",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_models"),
        sa.UniqueConstraint("name", name="uq_registry_models_name"),
    )
    op.create_table(
        "registry_versions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("model_id", sa.String(36), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_by", sa.String(200), nullable=False),
        sa.Column("format", sa.String(20), nullable=False),
        sa.Column("architecture", sa.String(200), nullable=True),
        sa.Column("model_type", sa.String(200), nullable=True),
        sa.Column("parameter_count", sa.BigInteger(), nullable=False),
        sa.Column("tensor_count", sa.BigInteger(), nullable=False),
        sa.Column("dtypes", sa.String(500), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("licence", sa.String(500), nullable=True),
        sa.Column("base_model", sa.String(300), nullable=True),
        sa.Column("base_external", sa.Boolean(), nullable=False),
        sa.Column("base_version_id", sa.String(36), nullable=True),
        sa.Column("base_licence", sa.String(500), nullable=True),
        sa.Column("training_flop", sa.String(48), nullable=True),
        sa.Column("modalities", sa.String(200), nullable=False),
        sa.Column("intended_use", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("data_summary", sa.Text(), nullable=True),
        sa.Column("manifest_digest", sa.String(64), nullable=False),
        sa.Column("signing_key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["registry_models.id"], name="fk_registry_versions_model_id_registry_models"
        ),
        sa.ForeignKeyConstraint(
            ["base_version_id"], ["registry_versions.id"], name="fk_registry_versions_base_version_id_registry_versions"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_registry_versions"),
        sa.UniqueConstraint("model_id", "version", name="uq_registry_versions_model_id_version"),
    )
    op.create_table(
        "registry_version_files",
        sa.Column("version_id", sa.String(36), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"], ["registry_versions.id"], name="fk_registry_version_files_version_id_registry_versions"
        ),
        sa.PrimaryKeyConstraint("version_id", "path", name="pk_registry_version_files"),
    )
    op.create_index("ix_registry_version_files_sha256", "registry_version_files", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_registry_version_files_sha256", table_name="registry_version_files")
    op.drop_table("registry_version_files")
    op.drop_table("registry_versions")
    op.drop_table("registry_models")
    op.drop_index("ix_vault_blob_refs_sha256", table_name="vault_blob_refs")
    op.drop_table("vault_blob_refs")
    op.drop_table("vault_blobs")
    op.drop_table("audit_tree_nodes")
    op.drop_table("audit_tree_heads")
    op.drop_table("audit_events")
    op.drop_table("api_keys")
