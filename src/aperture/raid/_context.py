"""What every RAID use case shares: the area's dependencies, the caller's view, audit and timeline."""

from __future__ import annotations

import os
import random
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from aperture.access.domain import OPERATOR, UNREGISTERED, Action, AssetKind, AssetRef, Caller
from aperture.access.service import AccessService
from aperture.audit.service import AuditLog
from aperture.core.clock import Clock
from aperture.core.db import Database
from aperture.core.errors import InvalidInput, NotFound, TooLarge
from aperture.core.ids import new_id
from aperture.raid import store
from aperture.raid.config import RaidConfig
from aperture.raid.domain import Incident, TimelineEvent
from aperture.raid.tlp import Tlp, Viewer
from aperture.registry.service import RegistryService

ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DIGEST = re.compile(r"^[0-9a-f]{64}$")


class AttachmentFiles:
    """Attachments by content (SHA-256) under the instance's files; never executed or unpacked.
    A path is built only from a hex digest, so no name a reporter chose ever reaches the filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        if not DIGEST.fullmatch(digest):
            raise InvalidInput("not an attachment digest", hint="attachments are named by their SHA-256")
        return self.root / digest[:2] / digest

    def put(self, digest: str, data: bytes) -> None:
        path = self._path(digest)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            Path(temporary).chmod(0o600)
            Path(temporary).replace(path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def read(self, digest: str, limit: int) -> bytes:
        path = self._path(digest)
        if not path.is_file():
            raise NotFound("no such attachment", hint="list the incident's attachments")
        if path.stat().st_size > limit:
            raise TooLarge("the attachment is larger than allowed", hint="raise APERTURE_RAID_MAX_ATTACHMENT_BYTES")
        return path.read_bytes()


@dataclass(frozen=True)
class Context:
    database: Database
    audit: AuditLog
    clock: Clock
    access: AccessService
    registry: RegistryService
    config: RaidConfig
    files: AttachmentFiles
    rng: random.Random


def resource(incident_id: str) -> str:
    return f"raid-incident:{incident_id}"


def check_id(value: str, what: str = "RAID item") -> str:
    text = value.strip().lower()
    if not ID_PATTERN.fullmatch(text):
        raise InvalidInput(f"{value[:80]!r} is not a {what} id", hint="ids look like 0192f1c2-....")
    return text


def absent(incident_id: str) -> NotFound:
    """The one answer for an item that does not exist and one the caller may not see."""
    return NotFound(f"no RAID item {incident_id}", hint="`aperture raid list` shows the items you may see")


def version_asset(version_id: str) -> AssetRef:
    return AssetRef(AssetKind.MODEL_VERSION, version_id)


def principal_of(caller: Caller) -> str | None:
    """The name a caller is named by on an item (None for the anonymous public)."""
    if caller.principal in (UNREGISTERED, "") and caller.key_id is None and not caller.session:
        return None
    return caller.principal


def organisation_of(ctx: Context, caller: Caller) -> tuple[str | None, str | None]:
    """The caller's organisation and that organisation's parent (whose client it is)."""
    name = principal_of(caller)
    if name is None or name == OPERATOR:
        return None, None
    try:
        organisation = ctx.access.get_principal(name).organisation
    except NotFound:
        return None, None
    if organisation is None:
        return None, None
    parent = next((o.parent for o in ctx.access.list_organisations() if o.name == organisation), None)
    return organisation, parent


def viewer(ctx: Context, caller: Caller) -> Viewer:
    """What the access service says about the caller, in the terms of the TLP rule. Each model
    version items concern is asked about once (Cedar: clearance and need-to-know)."""
    with ctx.database.read() as connection:
        versions = store.bound_versions(connection)
    hidden = frozenset(
        version
        for version in versions
        if not ctx.access.authorize(caller, Action.VIEW, version_asset(version), purpose="list").allowed
    )
    organisation, parent = organisation_of(ctx, caller)
    return Viewer(
        principal=principal_of(caller),
        organisation=organisation,
        client_of=parent,
        desk=ctx.access.decide(caller, Action.RAID_DESK).allowed,
        community=ctx.access.decide(caller, Action.RAID_COMMUNITY).allowed,
        hidden_versions=hidden,
    )


def seen(ctx: Context, caller: Caller, incident_id: str) -> tuple[Incident, Viewer]:
    """The item as the caller may see it, and the caller's view; absent (404) otherwise."""
    key = check_id(incident_id)
    seen_by = viewer(ctx, caller)
    with ctx.database.read() as connection:
        found = store.load_incident(connection, key, seen_by)
    if found is None:
        raise absent(key)
    return found, seen_by


def upper_tier(ctx: Context, incident: Incident) -> bool:
    """A TLP:RED item, or one about an upper-tier version: its log fields are withheld publicly."""
    if incident.tlp is Tlp.RED:
        return True
    for version in incident.versions():
        found = ctx.access.lookup(version_asset(version))
        if found is not None and (found.level.upper_tier or found.canary):
            return True
    return False


def record(
    ctx: Context,
    connection: Connection,
    actor: str,
    incident: Incident,
    action: str,
    details: dict[str, Any],
    *,
    timeline_kind: str | None = None,
    timeline_details: dict[str, Any] | None = None,
) -> None:
    """One audit event and one timeline entry, in the change's own transaction. Details name
    fields and values, never the item's title, text or the reporter's identity."""
    ctx.audit.append(
        connection,
        actor=actor,
        action=action,
        resource=resource(incident.id),
        details=details,
        upper_tier=upper_tier(ctx, incident),
    )
    store.add_events(
        connection,
        [
            TimelineEvent(
                new_id(),
                incident.id,
                ctx.clock.now(),
                actor,
                timeline_kind or action.rsplit(".", 1)[-1],
                details if timeline_details is None else timeline_details,
            )
        ],
    )
