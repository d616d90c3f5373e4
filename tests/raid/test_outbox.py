"""The outbox delivered by a real SMTP server on loopback (aiosmtpd): sent only once accepted,
retried with backoff, given up and audited after the last attempt, and nothing lost when the sender
is killed midway."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from aperture.access.domain import SYSTEM
from aperture.bootstrap import build_services, init_instance
from aperture.core.errors import Unavailable
from aperture.raid.messages import MessageStatus
from aperture.settings import Settings
from tests.raid.world import SteppingClock, World, build_world


@dataclass
class Inbox:
    """What the SMTP server accepted; `delay` holds each DATA before answering 250."""

    messages: list[Any] = field(default_factory=list)
    delay: float = 0.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(message_from_bytes(envelope.content))
        if self.delay:
            await asyncio.sleep(self.delay)
        return "250 OK"

    def ids(self) -> list[str]:
        return [str(m["X-Aperture-Outbox"]) for m in self.messages]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, Controller]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller
    finally:
        with contextlib.suppress(AssertionError, RuntimeError):  # already stopped by the test
            controller.stop()


@pytest.fixture
def mail_world(settings: Settings, smtp: tuple[Inbox, Controller], tmp_path: Path) -> Iterator[World]:
    configured = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp[1].port,
            "smtp_from": "raid@aperture.example",
            "smtp_timeout_s": 10.0,
            "raid_outbox_max_attempts": 3,
        }
    )
    clock = SteppingClock()
    services = build_services(configured, clock=clock)
    init_instance(services)
    try:
        yield build_world(services, clock, tmp_path)
    finally:
        services.close()


def advisory_to(world: World, parties: int) -> list[str]:
    """An advisory told privately to `parties` organisations: one outbox message each."""
    raid = world.services.raid
    ana = world.caller("ana")
    names = [f"org-{index:02d}" for index in range(parties)]
    for name in names:
        raid.routing.save_contact(ana, name, f"security@{name}.example")
    (item,) = world.take(world.alert())
    advisory = raid.disclosure.draft(ana, item, title="Bypass <b>found</b>", summary="Details.", parties=names)
    raid.disclosure.notify(ana, advisory.id)
    return [m.id for m in raid.outbox.messages(SYSTEM)]


def test_messages_are_sent_then_marked_and_audited(mail_world: World, smtp: tuple[Inbox, Controller]) -> None:
    inbox, _ = smtp
    ids = advisory_to(mail_world, 3)
    report = mail_world.services.raid.outbox.deliver(SYSTEM)
    assert (report.sent, report.retried, report.dead) == (3, 0, 0)
    assert sorted(inbox.ids()) == sorted(ids)
    first = inbox.messages[0]
    assert first["Subject"].startswith("[TLP:AMBER+STRICT]") and first["From"] == "raid@aperture.example"
    assert first["Message-ID"] == f"<{first['X-Aperture-Outbox']}@aperture.example>"
    assert first.get_payload(decode=True).decode().startswith("TLP:AMBER+STRICT\r\n")  # SMTP line ends
    assert all(m.status is MessageStatus.SENT for m in mail_world.services.raid.outbox.messages(SYSTEM))
    assert mail_world.services.raid.outbox.deliver(SYSTEM).sent == 0  # nothing twice
    sent = [e for e in mail_world.services.audit.list_events(limit=500) if e.action == "raid.message.sent"]
    assert sorted(e.resource.removeprefix("raid-message:") for e in sent) == sorted(ids)
    assert "example" not in repr(sent)  # no addresses in the log


def test_an_unreachable_server_is_retried_with_backoff_then_given_up(
    mail_world: World, smtp: tuple[Inbox, Controller]
) -> None:
    _, controller = smtp
    outbox = mail_world.services.raid.outbox
    (message_id,) = advisory_to(mail_world, 1)
    controller.stop()
    first = outbox.deliver(SYSTEM)
    assert (first.sent, first.retried, first.dead) == (0, 1, 0)
    (pending,) = outbox.messages(SYSTEM)
    assert pending.attempts == 1 and pending.next_attempt_at > mail_world.clock.now() and pending.last_error  # type: ignore[operator]
    assert outbox.deliver(SYSTEM).retried == 0  # not due yet: backing off
    for _ in range(2):
        mail_world.clock.advance(timedelta(hours=7))
        outbox.deliver(SYSTEM)
    (dead,) = outbox.messages(SYSTEM)
    assert dead.status is MessageStatus.DEAD and dead.attempts == 3
    (failed,) = [e for e in mail_world.services.audit.list_events(limit=500) if e.action == "raid.message.failed"]
    assert failed.resource == f"raid-message:{message_id}" and failed.details["attempts"] == 3


def test_without_smtp_messages_wait_in_the_outbox(world: World) -> None:
    advisory_to(world, 2)
    with pytest.raises(Unavailable, match="no SMTP server"):
        world.services.raid.outbox.deliver(SYSTEM)
    assert world.services.raid.outbox.counts(SYSTEM) == {"pending": 2}


SENDER = """
import time
from aperture.access.domain import SYSTEM
from aperture.bootstrap import build_services
from aperture.settings import load_settings
services = build_services(load_settings())
while True:
    services.raid.outbox.deliver(SYSTEM, limit=100)
    time.sleep(0.05)
"""


def test_a_sender_killed_midway_loses_nothing(mail_world: World, smtp: tuple[Inbox, Controller]) -> None:
    inbox, controller = smtp
    ids = advisory_to(mail_world, 30)
    inbox.delay = 0.1
    settings = mail_world.services.settings
    environment = {
        **os.environ,
        "APERTURE_HOME": str(settings.home),
        "APERTURE_SMTP_HOST": "127.0.0.1",
        "APERTURE_SMTP_PORT": str(controller.port),
        "APERTURE_SMTP_FROM": "raid@aperture.example",
    }
    if settings.database_url:
        environment["APERTURE_DATABASE_URL"] = settings.database_url
    sender = subprocess.Popen([sys.executable, "-c", SENDER], env=environment)
    try:
        last, seen_at = 0, time.monotonic()
        while len(inbox.messages) < 10:  # wait on progress, not on the clock
            if len(inbox.messages) != last:
                last, seen_at = len(inbox.messages), time.monotonic()
            assert time.monotonic() - seen_at < 120, "the sender stopped making progress"
            assert sender.poll() is None, "the sender died on its own"
            time.sleep(0.02)
    finally:
        sender.send_signal(signal.SIGKILL)
        sender.wait()
    outbox = mail_world.services.raid.outbox
    statuses = {m.id: m.status for m in outbox.messages(SYSTEM)}
    # the 10th reached the server: the nine before it were accepted and marked before it was sent
    assert 9 <= sum(s is MessageStatus.SENT for s in statuses.values()) < 30  # killed midway
    inbox.delay = 0.0
    mail_world.clock.advance(timedelta(seconds=settings.raid_outbox_lease_s + 1))  # the dead sender's lease runs out
    while outbox.counts(SYSTEM).get("pending"):
        outbox.deliver(SYSTEM)
    assert all(m.status is MessageStatus.SENT for m in outbox.messages(SYSTEM))
    received = inbox.ids()
    assert set(received) == set(ids)  # none lost
    assert len(received) - len(set(received)) <= 1  # at most the one in flight when killed, under its Message-ID
    sent = [e for e in mail_world.services.audit.list_events(limit=500) if e.action == "raid.message.sent"]
    assert len(sent) == 30
