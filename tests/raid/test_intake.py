"""Intake: the public with a receipt, partners, the platform's alerts (batched, idempotent)."""

from __future__ import annotations

import io
import pickle
import stat
import zipfile
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from aperture.access.domain import ANONYMOUS, SYSTEM, Caller, Role
from aperture.core.errors import Forbidden, InvalidInput, NotFound, TooLarge, Unauthenticated, UnsafeInput
from aperture.raid import store
from aperture.raid.checks import receipt_hash
from aperture.raid.domain import Consent, SourceKind, Status
from aperture.raid.service import Attachment, Submission
from aperture.raid.tlp import Tlp
from tests.raid.world import World

SCRIPT = '<script>alert("raid")</script><img src=x onerror=alert(1)>'


def rows(world: World, table: object) -> int:
    with world.services.database.read() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_a_public_report_gets_a_receipt_to_follow_up_and_add_information(world: World) -> None:
    raid = world.services.raid
    receipt = raid.intake.report(
        ANONYMOUS,
        Submission(
            title=f"Jailbreak {SCRIPT}",
            description=f"Steps: {SCRIPT}",
            models=(world.open_version.reference,),
            contact="reporter@example.org",
            attachments=(Attachment("transcript.txt", b"user: ...\nassistant: ...\n"),),
        ),
    )
    assert receipt.receipt.startswith("rct_") and len(receipt.receipt) == 47
    view = raid.intake.follow_up(receipt.receipt)
    assert view.title == f"Jailbreak {SCRIPT}" and view.status is Status.NEW and view.tlp is Tlp.AMBER_STRICT
    assert view.models == (world.open_version.id,)
    (attached,) = view.attachments
    assert attached.name == "transcript.txt" and attached.media_type == "text/plain"
    path = world.services.settings.home / "raid" / "attachments" / attached.sha256[:2] / attached.sha256
    assert path.read_bytes() == b"user: ...\nassistant: ...\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
    after = raid.intake.add_information(receipt.receipt, "It also works in French.")
    assert [a["text"] for a in after.additions] == ["It also works in French."]
    with world.services.database.read() as connection:
        stored = store.load_by_receipt(connection, receipt_hash(receipt.receipt))
        raw = connection.execute(select(store.raid_incidents.c.receipt_hash)).scalars().all()
    assert stored is not None and stored.reporter.contact == "reporter@example.org"
    assert receipt.receipt.encode() not in b"".join(raw)  # only the hash is kept
    events = world.services.audit.list_events(limit=500)
    received = [e for e in events if e.action == "raid.report.received"]
    assert received and received[0].actor == "public"
    assert "Jailbreak" not in str(events) and "reporter@example.org" not in str(events)


def test_a_wrong_receipt_and_a_honeypot_read_the_same(world: World) -> None:
    raid = world.services.raid
    fake = raid.intake.report(ANONYMOUS, Submission(title="buy pills", description="spam"), honeypot="http://spam")
    assert fake.receipt.startswith("rct_") and rows(world, store.raid_incidents) == 0
    with pytest.raises(NotFound) as first:
        raid.intake.follow_up(fake.receipt)
    with pytest.raises(NotFound) as second:
        raid.intake.follow_up("rct_" + "B" * 43)
    assert first.value.message == second.value.message
    with pytest.raises(InvalidInput, match="receipt"):
        raid.intake.follow_up("not-a-receipt")


def test_a_report_bound_to_a_version_the_reporter_cannot_see_is_accepted_and_leaks_nothing(world: World) -> None:
    raid = world.services.raid
    sealed = raid.intake.report(
        ANONYMOUS, Submission(title="about the frontier model", description="x", models=(world.sealed.reference,))
    )
    unknown = raid.intake.report(
        ANONYMOUS, Submission(title="about the frontier model", description="x", models=("frontier-7b:9.9",))
    )
    by_id = raid.intake.report(ANONYMOUS, Submission(title="about it", description="x", models=(world.sealed.id,)))
    for receipt in (sealed, unknown, by_id):
        view = raid.intake.follow_up(receipt.receipt)
        assert view.models == () and world.sealed.id not in repr(view) and "frontier" not in repr(view.models)
    desk = world.caller("ana")
    assert raid.desk.get(desk, sealed.incident_id).versions() == (world.sealed.id,)
    assert raid.desk.get(desk, unknown.incident_id).evidence == {"unresolved_models": ["frontier-7b:9.9"]}
    # ben is an analyst without clearance for the sealed version: the item is invisible to him
    with pytest.raises(NotFound):
        raid.desk.get(world.caller("ben"), sealed.incident_id)


def test_oversized_reports_and_bad_attachments_are_refused_and_nothing_is_written(world: World) -> None:
    raid = world.services.raid
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.txt", "x")
    cases = [
        (TooLarge, Submission(title="t" * 201, description="d")),
        (TooLarge, Submission(title="t", description="d" * 20_001)),
        (TooLarge, Submission(title="t", description="d", attachments=(Attachment("a.txt", b"a"),) * 6)),
        (TooLarge, Submission(title="t", description="d", attachments=(Attachment("a.txt", b"a" * (10 * 2**20 + 1)),))),
        (
            UnsafeInput,
            Submission(title="t", description="d", attachments=(Attachment("notes.txt", buffer.getvalue()),)),
        ),
        (
            UnsafeInput,
            Submission(title="t", description="d", attachments=(Attachment("run.pdf", b"\x7fELF" + b"\0" * 60),)),
        ),
        (UnsafeInput, Submission(title="t", description="d", attachments=(Attachment("m.json", pickle.dumps([1])),))),
        (InvalidInput, Submission(title="t", description="d", tlp=Tlp.RED)),
        (InvalidInput, Submission(title="t\x00", description="d")),
    ]
    for error, submission in cases:
        with pytest.raises(error):
            raid.intake.report(ANONYMOUS, submission)
    assert rows(world, store.raid_incidents) == 0 and rows(world, store.raid_attachments) == 0
    assert not (world.services.settings.home / "raid" / "attachments").exists()


def test_a_partner_reports_as_its_organisation_and_red_names_its_recipients(world: World) -> None:
    raid = world.services.raid
    pia = world.caller("pia")
    receipt = raid.intake.report(pia, Submission(title="Leak suspicion", description="d", tlp=Tlp.AMBER))
    found = raid.desk.get(world.caller("ana"), receipt.incident_id)
    assert found.source.kind is SourceKind.PARTNER and found.reporter.principal == "pia"
    assert found.audience.organisations == {"northlab"}
    assert raid.desk.get(world.caller("carl"), receipt.incident_id).reporter.principal is None  # a colleague: redacted
    red = raid.intake.report(pia, Submission(title="Red", description="d", tlp=Tlp.RED, recipients=("ana",)))
    assert raid.desk.get(world.caller("ana"), red.incident_id).audience.principals == {"ana", "pia"}
    with pytest.raises(NotFound):
        raid.desk.get(world.caller("carl"), red.incident_id)
    unregistered = Caller(principal="stranger", roles=(Role.RESEARCHER,), key_id="deadbeef")
    with pytest.raises(Forbidden):
        raid.intake.report(unregistered, Submission(title="t", description="d"))


def test_the_desk_records_reports_itself(world: World) -> None:
    raid = world.services.raid
    receipt = raid.intake.record(
        world.caller("ana"), Submission(title="Press report", description="d", consent=Consent.FULL)
    )
    assert raid.desk.get(SYSTEM, receipt.incident_id).source.kind is SourceKind.DESK
    with pytest.raises(Forbidden):
        raid.intake.record(world.caller("carl"), Submission(title="t", description="d"))
    with pytest.raises(Unauthenticated):
        raid.intake.record(ANONYMOUS, Submission(title="t", description="d"))


def test_a_second_intake_of_the_same_alert_is_a_safe_no_op(world: World) -> None:
    raid = world.services.raid
    first = world.alert(source_id="gw-1", versions=[world.open_version.id])
    result = raid.intake.take_alerts(SYSTEM, [first, world.alert(source_id="gw-2"), first])
    assert len(result.taken) == 2 and result.skipped == 1
    again = raid.intake.take_alerts(SYSTEM, [first, world.alert(source_id="gw-2"), world.alert(source_id="gw-3")])
    assert len(again.taken) == 1 and again.skipped == 2
    assert rows(world, store.raid_incidents) == 3 and rows(world, store.raid_bindings) == 1
    assert rows(world, store.raid_timeline) == 3
    taken = [e for e in world.services.audit.list_events(limit=500) if e.action == "raid.alerts.taken"]
    assert [e.details["taken"] for e in taken] == [1, 2]
    assert raid.intake.take_alerts(SYSTEM, [first]).taken == ()


def test_a_batch_with_one_bad_alert_writes_nothing(world: World) -> None:
    raid = world.services.raid
    with pytest.raises(InvalidInput, match="alert 1"):
        raid.intake.take_alerts(SYSTEM, [world.alert(), world.alert(title="")])
    with pytest.raises(InvalidInput, match="not an automatic source"):
        raid.intake.take_alerts(SYSTEM, [world.alert(kind=SourceKind.PUBLIC)])
    assert rows(world, store.raid_incidents) == 0
    with pytest.raises(Forbidden):
        raid.intake.take_alerts(world.caller("carl"), [world.alert()])


def test_aware_at_is_kept_apart_from_the_events_own_dates(world: World) -> None:
    raid = world.services.raid
    item = world.alert()
    (taken,) = world.take(item)
    found = raid.desk.get(SYSTEM, taken)
    assert found.aware_at == item.aware_at and found.created_at > found.aware_at  # type: ignore[operator]
    later = world.clock.now() + timedelta(days=1)
    with pytest.raises(InvalidInput, match="future"):
        raid.desk.set_aware(SYSTEM, taken, later)
