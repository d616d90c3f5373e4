"""The outbox's sender: SMTP delivery with retries and backoff; nothing lost if the process dies.

A batch is claimed for a lease in one transaction; each message is handed to the SMTP server and
marked sent (with its audit event) in its own transaction only after the server accepted it. A
sender killed midway leaves unclaimed or leased messages behind; once the lease runs out, the next
sender takes them. A message accepted but not yet marked when the sender died is sent again (at
least once), under the same Message-ID.
"""

from __future__ import annotations

import os
import secrets
import smtplib
import socket
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from aperture.access.domain import Action, Caller
from aperture.core.errors import Unavailable
from aperture.raid import store
from aperture.raid._context import Context
from aperture.raid.config import SmtpConfig
from aperture.raid.messages import Message, MessageStatus, backoff


@dataclass(frozen=True)
class DeliveryReport:
    sent: int
    retried: int
    dead: int


def _domain(sender: str) -> str:
    return sender.rsplit("@", 1)[-1] or "localhost"


class Outbox:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _smtp(self) -> SmtpConfig:
        smtp = self.ctx.config.smtp
        if smtp is None:
            raise Unavailable(
                "no SMTP server is configured: messages wait in the outbox",
                hint="set APERTURE_SMTP_HOST (and APERTURE_SMTP_PORT, APERTURE_SMTP_FROM)",
            )
        return smtp

    def deliver(self, caller: Caller, *, limit: int = 100) -> DeliveryReport:
        """Send what is due, once; `aperture raid deliver --watch` calls it in a loop."""
        self.ctx.access.require_instance(caller, Action.RAID_MANAGE)
        smtp = self._smtp()
        worker = f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(4)}"
        now = self.ctx.clock.now()
        lease = timedelta(seconds=self.ctx.config.outbox_lease_s)
        with self.ctx.database.transaction() as connection:
            claimed = store.claim(connection, worker, now, now + lease, max(1, min(limit, 1000)))
        if not claimed:
            return DeliveryReport(0, 0, 0)
        sent = retried = dead = 0
        try:
            client = self._connect(smtp)
        except (OSError, smtplib.SMTPException) as error:
            for message in claimed:
                dead += self._failed(message, f"cannot reach the SMTP server: {error}")
            return DeliveryReport(0, len(claimed) - dead, dead)
        try:
            for message in claimed:
                try:
                    refused = client.send_message(self._email(message, smtp))
                except (OSError, smtplib.SMTPException) as error:
                    gone = self._failed(message, f"{type(error).__name__}: {error}")
                    dead += gone
                    retried += 1 - gone
                    if isinstance(error, smtplib.SMTPServerDisconnected | OSError):
                        client = self._reconnect(client, smtp)
                    continue
                if refused:
                    gone = self._failed(message, f"recipient refused: {next(iter(refused.values()))!r}")
                    dead += gone
                    retried += 1 - gone
                    continue
                self._sent(message)
                sent += 1
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()
        return DeliveryReport(sent, retried, dead)

    def _connect(self, smtp: SmtpConfig) -> smtplib.SMTP:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s)
        if smtp.starttls:
            client.starttls()
        if smtp.username:
            client.login(smtp.username, smtp.password or "")
        return client

    def _reconnect(self, client: smtplib.SMTP, smtp: SmtpConfig) -> smtplib.SMTP:
        client.close()
        try:
            return self._connect(smtp)
        except (OSError, smtplib.SMTPException):
            return client

    @staticmethod
    def _email(message: Message, smtp: SmtpConfig) -> EmailMessage:
        email = EmailMessage()
        email["From"] = smtp.sender
        email["To"] = message.recipient
        email["Subject"] = message.subject
        email["Date"] = format_datetime(message.created_at)
        email["Message-ID"] = f"<{message.id}@{_domain(smtp.sender)}>"
        email["X-Aperture-Outbox"] = message.id
        email.set_content(message.body)
        return email

    def _sent(self, message: Message) -> None:
        with self.ctx.database.transaction() as connection:
            if store.mark_sent(connection, message.id, self.ctx.clock.now()):
                self.ctx.audit.append(
                    connection,
                    actor="raid-outbox",
                    action="raid.message.sent",
                    resource=f"raid-message:{message.id}",
                    details={
                        "kind": message.kind.value,
                        "incident": message.incident_id,
                        "attempts": message.attempts + 1,
                    },
                )

    def _failed(self, message: Message, error: str) -> int:
        """Schedule the next attempt, or give up after the last; 1 when the message is dead."""
        attempts = message.attempts + 1
        give_up = attempts >= self.ctx.config.outbox_max_attempts
        now = self.ctx.clock.now()
        with self.ctx.database.transaction() as connection:
            store.mark_failed(
                connection,
                message.id,
                next_at=now + backoff(attempts, self.ctx.config.outbox_backoff_s, self.ctx.rng),
                error=error,
                dead=give_up,
            )
            if give_up:
                self.ctx.audit.append(
                    connection,
                    actor="raid-outbox",
                    action="raid.message.failed",
                    resource=f"raid-message:{message.id}",
                    details={"kind": message.kind.value, "incident": message.incident_id, "attempts": attempts},
                )
        return 1 if give_up else 0

    def messages(self, caller: Caller, *, status: MessageStatus | None = None, limit: int = 200) -> list[Message]:
        self.ctx.access.require_instance(caller, Action.RAID_MANAGE)
        with self.ctx.database.read() as connection:
            return store.list_messages(connection, status=None if status is None else status.value, limit=limit)

    def counts(self, caller: Caller) -> dict[str, int]:
        self.ctx.access.require_instance(caller, Action.RAID_MANAGE)
        with self.ctx.database.read() as connection:
            return store.message_counts(connection)
