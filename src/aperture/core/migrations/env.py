"""Alembic environment: runs on the connection handed over by `aperture.core.db.upgrade`."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - migrations run only through aperture.core.db
    raise RuntimeError("run migrations with `aperture init` / aperture.core.db.upgrade")

context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
