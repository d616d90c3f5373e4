"""The durable outbox: messages written with the change that causes them, claimed by a sender for a
lease, marked sent only after the SMTP server accepted them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, or_, select, update

from aperture.raid.messages import Message, MessageKind, MessageStatus
from aperture.raid.store._tables import raid_outbox


def enqueue(connection: Connection, messages: Sequence[Message]) -> None:
    if not messages:
        return
    connection.execute(
        raid_outbox.insert(),
        [
            {
                "id": m.id,
                "created_at": m.created_at,
                "incident_id": m.incident_id,
                "kind": m.kind.value,
                "recipient": m.recipient,
                "subject": m.subject,
                "body": m.body,
                "status": m.status.value,
                "attempts": m.attempts,
                "next_attempt_at": m.next_attempt_at or m.created_at,
                "claimed_by": None,
                "claimed_until": None,
                "last_error": m.last_error,
                "sent_at": m.sent_at,
            }
            for m in messages
        ],
    )


def _message(row: Any) -> Message:
    return Message(
        id=row.id,
        created_at=row.created_at,
        incident_id=row.incident_id,
        kind=MessageKind(row.kind),
        recipient=row.recipient,
        subject=row.subject,
        body=row.body,
        status=MessageStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        sent_at=row.sent_at,
    )


def claim(connection: Connection, worker: str, now: datetime, lease_until: datetime, limit: int) -> list[Message]:
    """Take up to `limit` due messages nobody holds (or whose holder's lease ran out)."""
    table = raid_outbox
    free = or_(table.c.claimed_until.is_(None), table.c.claimed_until < now)
    candidates = (
        select(table.c.id)
        .where(table.c.status == MessageStatus.PENDING.value, table.c.next_attempt_at <= now, free)
        .order_by(table.c.next_attempt_at, table.c.id)
        .limit(limit)
    )
    if connection.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    ids = [row[0] for row in connection.execute(candidates)]
    if not ids:
        return []
    connection.execute(
        update(table)
        .where(table.c.id.in_(ids), table.c.status == MessageStatus.PENDING.value, free)
        .values(claimed_by=worker, claimed_until=lease_until)
    )
    query = select(table).where(table.c.id.in_(ids), table.c.claimed_by == worker).order_by(table.c.next_attempt_at)
    return [_message(row) for row in connection.execute(query)]


def mark_sent(connection: Connection, message_id: str, now: datetime) -> bool:
    result = connection.execute(
        update(raid_outbox)
        .where(raid_outbox.c.id == message_id, raid_outbox.c.status == MessageStatus.PENDING.value)
        .values(
            status=MessageStatus.SENT.value,
            sent_at=now,
            attempts=raid_outbox.c.attempts + 1,
            claimed_by=None,
            claimed_until=None,
            last_error=None,
        )
    )
    return result.rowcount == 1


def mark_failed(connection: Connection, message_id: str, *, next_at: datetime, error: str, dead: bool) -> None:
    connection.execute(
        update(raid_outbox)
        .where(raid_outbox.c.id == message_id, raid_outbox.c.status == MessageStatus.PENDING.value)
        .values(
            status=(MessageStatus.DEAD if dead else MessageStatus.PENDING).value,
            attempts=raid_outbox.c.attempts + 1,
            next_attempt_at=next_at,
            last_error=error[:500],
            claimed_by=None,
            claimed_until=None,
        )
    )


def load_message(connection: Connection, message_id: str) -> Message | None:
    row = connection.execute(select(raid_outbox).where(raid_outbox.c.id == message_id)).first()
    return None if row is None else _message(row)


def list_messages(connection: Connection, *, status: str | None = None, limit: int = 200) -> list[Message]:
    query = select(raid_outbox).order_by(raid_outbox.c.created_at.desc(), raid_outbox.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(raid_outbox.c.status == status)
    return [_message(row) for row in connection.execute(query)]


def message_counts(connection: Connection) -> dict[str, int]:
    query = select(raid_outbox.c.status, func.count()).group_by(raid_outbox.c.status)
    return {row[0]: int(row[1]) for row in connection.execute(query)}
