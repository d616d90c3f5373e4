from __future__ import annotations

import stat

import pytest
from sqlalchemy import inspect

from aperture.access.domain import Role
from aperture.bootstrap import build_services, init_instance, require_initialised
from aperture.core import db
from aperture.core.errors import Conflict, NotInitialised, Unauthenticated
from aperture.settings import Settings
from tests.conftest import Instance


def test_init_creates_schema_keys_and_a_working_admin_key(instance: Instance) -> None:
    services = instance.services
    assert db.current_revision(services.database) == db.head_revision() == db.alembic_head_revision()
    caller = services.access.authenticate(instance.admin_key)
    assert caller.has(Role.ADMINISTRATOR)
    for name in ("instance-ed25519.pem", "artifacts-p256.pem"):
        mode = stat.S_IMODE((services.settings.keys_dir / name).stat().st_mode)
        assert mode == 0o600, name


def test_only_the_hash_of_the_admin_key_is_stored(instance: Instance) -> None:
    secret = instance.admin_key.encode()
    db_file = instance.services.settings.home / "aperture.db"
    if db_file.exists():
        for path in instance.services.settings.home.rglob("*"):
            if path.is_file():
                assert secret not in path.read_bytes(), path


def test_second_init_is_refused_and_changes_nothing(instance: Instance) -> None:
    services = instance.services
    key_before = (services.settings.keys_dir / "instance-ed25519.pem").read_bytes()
    with pytest.raises(Conflict) as caught:
        init_instance(services)
    assert "already exists" in caught.value.message
    assert (services.settings.keys_dir / "instance-ed25519.pem").read_bytes() == key_before
    services.access.authenticate(instance.admin_key)  # the first key still works


def test_unknown_and_malformed_keys_are_refused(instance: Instance) -> None:
    services = instance.services
    with pytest.raises(Unauthenticated):
        services.access.authenticate("apk_00000000_" + "A" * 43)
    with pytest.raises(Unauthenticated):
        services.access.authenticate("not a key")


def test_a_revoked_key_stops_working(instance: Instance) -> None:
    from aperture.access.domain import SYSTEM

    services = instance.services
    issued = services.access.issue_key(SYSTEM, name="ci", principal="robot", roles=(Role.RESEARCHER,))
    assert services.access.authenticate(issued.text).principal == "robot"
    services.access.revoke_key(SYSTEM, issued.key.key_id)
    with pytest.raises(Unauthenticated):
        services.access.authenticate(issued.text)


def test_an_uninitialised_home_is_reported(settings: Settings) -> None:
    services = build_services(settings)
    with pytest.raises(NotInitialised) as caught:
        require_initialised(services)
    assert "aperture init" in caught.value.hint


def test_migrations_match_the_declared_tables(instance: Instance) -> None:
    """The Alembic migrations create exactly the tables the stores declare."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import aperture.bootstrap  # noqa: F401  (imports every store, so metadata is complete)

    with instance.services.database.read() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
        tables = set(inspect(connection).get_table_names())
    assert diff == []
    assert {"api_keys", "audit_events"} <= tables
