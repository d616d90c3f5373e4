"""The two views of the transparency log, per caller: the public view (exactly what each leaf
holds: public fields in clear, withheld ones as commitments) and the private view (the withheld
values with their salts, each provable against its commitment).

Who may read the private view is decided by the access service: `view_audit_internal`
(access/policies/audit.cedar) for withheld fields, and, for a field withheld because the event
concerns an upper-tier asset, `view` on that asset as well (its tier rules: clearance,
programme). Those clearance checks are audited like every decision on an upper-tier asset.
This module sits above both `AuditLog` and `AccessService` (access appends events to the log,
so the log itself cannot ask access).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aperture.access.domain import OPERATOR, Action, AssetKind, AssetRef, Caller
from aperture.access.service import AccessService
from aperture.audit.domain import (
    Discloser,
    EventRecord,
    InclusionProof,
    Visibility,
    disclose_all,
    disclose_none,
)
from aperture.audit.service import AuditLog

# The asset an event's resource names (e.g. `model:NAME:VERSION` -> its version's uid), for
# events whose emitter did not store it; None when the resource names no asset.
AssetResolver = Callable[[str], str | None]


def _asset(uid: str) -> AssetRef | None:
    kind, _, identifier = uid.partition(":")
    try:
        return AssetRef(AssetKind(kind), identifier)
    except ValueError:
        return None


class LogViews:
    def __init__(self, log: AuditLog, access: AccessService, resolve_asset: AssetResolver | None = None) -> None:
        self.log = log
        self.access = access
        self._resolve = resolve_asset or (lambda resource: None)

    def may_read_private(self, caller: Caller) -> bool:
        """Whether the caller reads the private view at all (a decision only: not audited, so an
        anonymous visitor's page views leave nothing in the log)."""
        return self.access.decide(caller, Action.VIEW_AUDIT_INTERNAL).allowed

    def discloser(self, caller: Caller) -> Discloser:
        """What this caller may read of the withheld fields, event by event."""
        if caller.principal == OPERATOR and caller.key_id is None and not caller.session:
            return disclose_all  # the local operator (the CLI)
        if not self.may_read_private(caller):
            return disclose_none
        cleared: dict[str, bool] = {}

        def disclose(record: EventRecord, label: str) -> bool:
            if label != Visibility.UPPER_TIER.value:
                return True
            uid = record.asset
            resource = record.secrets[label][1].get("resource") if label in record.secrets else None
            if uid is None and isinstance(resource, str):
                uid = self._resolve(resource)
            asset = None if uid is None else _asset(uid)
            if asset is None:
                return False  # nothing says which asset: only the operator reads it
            if asset.uid not in cleared:
                decision = self.access.authorize(caller, Action.VIEW, asset, purpose="audit")
                cleared[asset.uid] = decision.allowed
            return cleared[asset.uid]

        return disclose

    def events(
        self,
        caller: Caller,
        *,
        limit: int = 50,
        before: int | None = None,
        action: str | None = None,
        resource: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first, each as this caller may see it."""
        disclose = self.discloser(caller)
        records = self.log.list_records(limit=limit, before=before, action=action, resource=resource)
        return [self.log.event_json(record, disclose) for record in records]

    def event(self, caller: Caller, leaf_index: int) -> dict[str, Any]:
        return self.log.event_json(self.log.get_record(leaf_index), self.discloser(caller))

    def inclusion_proof(self, caller: Caller, leaf_index: int, tree_size: int | None = None) -> InclusionProof:
        return self.log.inclusion_proof(leaf_index, tree_size, disclose=self.discloser(caller))

    def newest_inclusion_proof(self, caller: Caller, leaf_index: int) -> InclusionProof:
        return self.log.newest_inclusion_proof(leaf_index, disclose=self.discloser(caller))
