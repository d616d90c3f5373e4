"""The RAID desk's configuration: one frozen object, built from Settings by the composition root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aperture.raid.disclosure import EmbargoPolicy, SharingPolicy


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    starttls: bool
    username: str | None
    password: str | None
    timeout_s: float


@dataclass(frozen=True, slots=True)
class RaidConfig:
    files_dir: Path  # attachments, content-addressed
    max_attachment_bytes: int
    max_attachments: int
    embargo_policy: EmbargoPolicy
    embargo_days: int
    sharing_policy: SharingPolicy
    reminder_hours: int  # remind reporters this long before their own deadlines
    publisher_name: str  # CSAF publisher and STIX identity
    publisher_namespace: str
    max_batch: int  # alerts one automatic intake takes in one transaction
    stix_max_bytes: int
    outbox_max_attempts: int
    outbox_backoff_s: float
    outbox_lease_s: float
    smtp: SmtpConfig | None  # None: messages wait in the outbox until SMTP is configured

    @property
    def report_body_bytes(self) -> int:
        """The largest body a report (or its follow-up) can need: its attachments in base64
        inside JSON, and a mebibyte for its text; larger is refused before it is read."""
        per_attachment = 4 * ((self.max_attachment_bytes + 2) // 3) + 1024
        return self.max_attachments * per_attachment + 1024**2
