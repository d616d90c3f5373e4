"""Use cases of release governance."""

from __future__ import annotations

from aperture.access.domain import SYSTEM, Caller
from aperture.audit.service import AuditLog
from aperture.core.clock import Clock
from aperture.core.db import Database
from aperture.registry.domain import ModelVersion
from aperture.registry.service import RegistryService
from aperture.release import store
from aperture.release.domain import Tier


class ReleaseService:
    def __init__(self, database: Database, audit: AuditLog, clock: Clock, registry: RegistryService) -> None:
        self._database = database
        self._audit = audit
        self._clock = clock
        self._registry = registry

    def tier_of(self, name: str, version: str, caller: Caller = SYSTEM) -> Tier | None:
        """The tier a version is released under now; None while no decision has taken effect
        (callers must then fail closed: not hosted, not licensed, not open)."""
        record = self._registry.get_version(name, version, caller)
        with self._database.read() as connection:
            return store.effective_tier(connection, record.id)

    def take_effect(self, version: ModelVersion, tier: Tier, decision_id: str, *, actor: str) -> None:
        """Carry out a decision: the version is released under `tier` from now on (audited)."""
        with self._database.transaction() as connection:
            store.put_tier(connection, version.id, tier, decision_id, self._clock.now())
            self._audit.append(
                connection,
                actor=actor,
                action="release.take_effect",
                resource=f"model:{version.reference}",
                details={"tier": tier.value, "decision_id": decision_id},
            )
