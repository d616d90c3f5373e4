"""The RAID desk's use cases, one facade over its use-case modules.

`RaidService` holds the area's dependencies in one small context and hands out the desk's parts:
`intake` (D1: the public, partners, the desk, the platform's alerts), `desk` (D2: the queue, triage,
the lifecycle, assignment), `routing` (D3: routes, clocks, drafts, forwarding, reminders), `sharing`
(D4: TLP, STIX), `disclosure` (D5: advisories, embargoes) and `outbox` (the SMTP sender).
Every use case that is not open to everyone takes the caller first and asks the access service.
"""

from __future__ import annotations

import random

from aperture.access.service import AccessService
from aperture.audit.service import AuditLog
from aperture.core.clock import Clock
from aperture.core.db import Database
from aperture.raid._context import AttachmentFiles, Context
from aperture.raid._delivery import DeliveryReport, Outbox
from aperture.raid._desk import MAX_PAGE, Desk, Page
from aperture.raid._disclosure import Disclosure
from aperture.raid._intake import (
    Attachment,
    AttachmentInfo,
    Intake,
    IntakeResult,
    Receipt,
    ReporterView,
    Submission,
)
from aperture.raid._routing import DueItem, Routing, shipped_table_text
from aperture.raid._sharing import Sharing
from aperture.raid.config import RaidConfig
from aperture.raid.store import Filter
from aperture.registry.service import RegistryService

__all__ = [
    "MAX_PAGE",
    "Attachment",
    "AttachmentInfo",
    "DeliveryReport",
    "DueItem",
    "Filter",
    "IntakeResult",
    "Page",
    "RaidService",
    "Receipt",
    "ReporterView",
    "Submission",
    "shipped_table_text",
]


class RaidService:
    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        clock: Clock,
        access: AccessService,
        registry: RegistryService,
        config: RaidConfig,
        rng: random.Random | None = None,
    ) -> None:
        self.context = Context(
            database=database,
            audit=audit,
            clock=clock,
            access=access,
            registry=registry,
            config=config,
            files=AttachmentFiles(config.files_dir),
            rng=rng or random.SystemRandom(),
        )
        self.routing = Routing(self.context)
        self.intake = Intake(self.context)
        self.desk = Desk(self.context, after_change=self.routing.refresh)
        self.sharing = Sharing(self.context, default_tlp=lambda: self.routing.table().default_tlp)
        self.disclosure = Disclosure(self.context)
        self.outbox = Outbox(self.context)
