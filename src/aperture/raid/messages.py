"""Outbox messages and their retry schedule. Pure.

A message is written to the outbox in the same transaction as the change that causes it, so a change
is never committed without its notification, nor a notification sent for a change that rolled back.
A sender claims a batch for a lease, hands each message to the SMTP server, and marks it sent only
after the server accepted it (`250` after `DATA`). A sender that dies mid-batch leaves its claims to
expire; the next sender takes them again. Delivery is therefore at least once: each message carries
a stable `Message-ID` (`<outbox id@domain>`), so a receiver can recognise the rare repeat.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from aperture.core.errors import InvalidInput

MAX_SUBJECT = 300
MAX_BODY = 200_000
# A deliberately plain address check: one @, no spaces or angle brackets, a dotted or local domain.
ADDRESS = re.compile(r"^[^\s@<>()\",;:]{1,64}@[A-Za-z0-9.-]{1,253}$")


class MessageStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"  # gave up after the last attempt


class MessageKind(StrEnum):
    FORWARD = "forward"  # a report forwarded to a competent body
    REMINDER = "reminder"  # a reporter's own deadline approaches
    ADVISORY = "advisory"  # an affected party told privately
    RECEIPT = "receipt"  # an acknowledgement to a reporter who left a contact


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    created_at: datetime
    incident_id: str | None
    kind: MessageKind
    recipient: str  # personal data: never in the log
    subject: str
    body: str
    status: MessageStatus = MessageStatus.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    sent_at: datetime | None = None


def check_address(address: str) -> str:
    value = address.strip()
    if not ADDRESS.fullmatch(value):
        raise InvalidInput(f"{address!r} is not an e-mail address", hint="e.g. desk@agency.europa.eu")
    return value


def new_message(
    *, id: str, now: datetime, incident_id: str | None, kind: MessageKind, recipient: str, subject: str, body: str
) -> Message:
    clean_subject = " ".join(subject.split())[:MAX_SUBJECT]
    if len(body) > MAX_BODY:
        raise InvalidInput(f"a message body has at most {MAX_BODY} characters", hint="attach less text")
    return Message(
        id=id,
        created_at=now,
        incident_id=incident_id,
        kind=kind,
        recipient=check_address(recipient),
        subject=clean_subject,
        body=body,
        next_attempt_at=now,
    )


def backoff(attempts: int, base_s: float, rng: random.Random, cap_s: float = 6 * 3600) -> timedelta:
    """Exponential backoff with full jitter: up to base * 2^(attempts-1), capped."""
    ceiling = min(cap_s, base_s * 2 ** max(0, attempts - 1))
    return timedelta(seconds=base_s / 2 + rng.uniform(0, max(0.0, ceiling - base_s / 2)))
